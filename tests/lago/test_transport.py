"""The client's own transport (`http.client`, pooled) on real sockets: every way a connection
can fail maps to the same verdict as with httpx's transport (never sent, or maybe sent)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr

from tests.fixtures.raw_http import RawServer, answer, raw_server, read_request
from tests.lago.fakes import API_KEY, customer_json, payment_request_json
from worker.lago import (
    LagoAmbiguousError,
    LagoClient,
    LagoConnectionError,
    LagoTimeoutError,
)
from worker.lago.transport import LeanTransport, proxy_configured

CUSTOMER = {"customer": customer_json("cust-1")}
CREATED = {"payment_request": payment_request_json("pr-1", ("inv-1",))}


def _client(url: str, **kwargs: object) -> LagoClient:
    return LagoClient(url, SecretStr(API_KEY), sleep=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _keep_answering(body: object) -> Callable[[RawServer, socket.socket, int], None]:
    def script(server: RawServer, conn: socket.socket, _: int) -> None:
        while request := read_request(conn):
            server.note(request)
            conn.sendall(answer(200, body))

    return script


def test_connections_are_kept_alive_and_reused() -> None:
    with raw_server(_keep_answering(CUSTOMER)) as server, _client(server.url) as client:
        for _ in range(5):
            assert client.get_customer("cust-1").external_id == "cust-1"
    assert server.connections == 1
    assert len(server.requests) == 5


def test_a_connection_the_server_closed_is_never_written_to() -> None:
    """The server answers one request per connection and closes it without saying so: the
    next POST goes on a new connection and is created once, not reported as maybe-sent."""

    def once_then_close(server: RawServer, conn: socket.socket, _: int) -> None:
        request = read_request(conn)
        server.note(request)
        conn.sendall(answer(200, CREATED))
        conn.shutdown(socket.SHUT_RDWR)

    with raw_server(once_then_close) as server, _client(server.url) as client:
        for _ in range(3):
            created = client.create_payment_request("cust-1", ["inv-1"])
            assert created.lago_id == "pr-1"
            time.sleep(0.05)  # the server's close reaches the client's idle socket
    assert server.connections == 3
    assert len(server.requests) == 3


def test_an_answer_that_closes_the_connection_is_not_reused() -> None:
    def close_after(server: RawServer, conn: socket.socket, _: int) -> None:
        server.note(read_request(conn))
        conn.sendall(answer(200, CUSTOMER, headers={"Connection": "close"}))

    with raw_server(close_after) as server, _client(server.url) as client:
        client.get_customer("cust-1")
        client.get_customer("cust-1")
    assert server.connections == 2


def test_nothing_listening_is_a_connection_error_never_ambiguous() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with (
        _client(f"http://127.0.0.1:{port}", max_retries=0) as client,
        pytest.raises(LagoConnectionError) as caught,
    ):
        client.create_payment_request("cust-1", ["inv-1"])
    assert not isinstance(caught.value, LagoAmbiguousError)
    assert f"127.0.0.1:{port}" in caught.value.message


def test_a_post_the_server_drops_unanswered_is_ambiguous() -> None:
    def drop(server: RawServer, conn: socket.socket, _: int) -> None:
        server.note(read_request(conn))

    with (
        raw_server(drop) as server,
        _client(server.url) as client,
        pytest.raises(LagoAmbiguousError) as caught,
    ):
        client.create_payment_request("cust-1", ["inv-1"])
    assert "failed mid-request" in caught.value.message
    assert len(server.requests) == 1  # a POST is never retried


def test_a_get_the_server_drops_is_retried_on_a_new_connection() -> None:
    def drop_first(server: RawServer, conn: socket.socket, number: int) -> None:
        server.note(read_request(conn))
        if number > 0:
            conn.sendall(answer(200, CUSTOMER))

    with raw_server(drop_first) as server, _client(server.url) as client:
        assert client.get_customer("cust-1").external_id == "cust-1"
    assert server.connections == 2


def test_a_post_without_an_answer_in_time_is_ambiguous() -> None:
    released = threading.Event()

    def hang(server: RawServer, conn: socket.socket, _: int) -> None:
        server.note(read_request(conn))
        released.wait(5)

    with raw_server(hang) as server, _client(server.url, timeout_s=0.3) as client:
        try:
            with pytest.raises(LagoAmbiguousError) as caught:
                client.create_payment_request("cust-1", ["inv-1"])
        finally:
            released.set()
    assert isinstance(caught.value.cause, LagoTimeoutError)


def test_an_answer_cut_short_is_ambiguous() -> None:
    def cut(server: RawServer, conn: socket.socket, _: int) -> None:
        server.note(read_request(conn))
        whole = answer(200, CREATED)
        conn.sendall(whole[: len(whole) - 20])

    with (
        raw_server(cut) as server,
        _client(server.url) as client,
        pytest.raises(LagoAmbiguousError),
    ):
        client.create_payment_request("cust-1", ["inv-1"])


def test_a_garbled_status_line_is_ambiguous_for_a_post() -> None:
    def garble(server: RawServer, conn: socket.socket, _: int) -> None:
        server.note(read_request(conn))
        conn.sendall(b"HTTX/9 what\r\n\r\n")

    with (
        raw_server(garble) as server,
        _client(server.url) as client,
        pytest.raises(LagoAmbiguousError),
    ):
        client.create_payment_request("cust-1", ["inv-1"])


def test_gzip_and_chunked_answers_are_decoded() -> None:
    packed = gzip.compress(json.dumps(CUSTOMER).encode())
    half = len(packed) // 2
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (packed[:half], packed[half:])
    )
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    def chunked(server: RawServer, conn: socket.socket, _: int) -> None:
        while request := read_request(conn):
            server.note(request)
            conn.sendall(head + chunks + b"0\r\n\r\n")

    with raw_server(chunked) as server, _client(server.url) as client:
        assert client.get_customer("cust-1").external_id == "cust-1"
        assert client.get_customer("cust-1").external_id == "cust-1"
    assert server.connections == 1


def test_requests_carry_the_headers_and_body_httpx_built() -> None:
    with raw_server(_keep_answering(CREATED)) as server, _client(server.url) as client:
        client.create_payment_request("cust-1", ["inv-2", "inv-1"])
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/v1/payment_requests HTTP/1.1"
    fields = {
        name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines[1:])
    }
    assert fields["host"] == server.url.removeprefix("http://")
    assert fields["authorization"] == f"Bearer {API_KEY}"
    assert fields["content-type"] == "application/json"
    assert int(fields["content-length"]) == len(body)
    assert json.loads(body) == {
        "payment_request": {
            "external_customer_id": "cust-1",
            "lago_invoice_ids": ["inv-1", "inv-2"],
        }
    }


def test_https_to_a_server_that_does_not_speak_tls_is_a_connection_error() -> None:
    def plain(server: RawServer, conn: socket.socket, _: int) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with raw_server(plain) as server:
        url = server.url.replace("http://", "https://")
        with _client(url, max_retries=0) as client, pytest.raises(LagoConnectionError) as caught:
            client.create_payment_request("cust-1", ["inv-1"])
    assert not isinstance(caught.value, LagoAmbiguousError)


def test_a_header_http_client_refuses_is_never_sent_nor_quoted() -> None:
    with (
        raw_server(_keep_answering(CUSTOMER)) as server,
        httpx.Client(transport=LeanTransport()) as http,
        pytest.raises(httpx.LocalProtocolError) as caught,
    ):
        http.get(server.url, headers={"X-Secret": "abc\r\nInjected: yes"})
    assert server.requests == []
    assert "abc" not in str(caught.value)


def test_many_threads_share_the_pool() -> None:
    with (
        raw_server(_keep_answering(CUSTOMER)) as server,
        _client(server.url) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        found = list(pool.map(lambda _: client.get_customer("cust-1"), range(200)))
    assert len(found) == 200
    assert 1 <= server.connections <= 8


def test_a_proxy_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set the client keeps httpx's transport, which speaks to the proxy."""
    with raw_server(_keep_answering(CUSTOMER)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with _client("http://lago.example.invalid") as client:
            assert client.get_customer("cust-1").external_id == "cust-1"
    request_line = proxy.requests[0].split(b"\r\n")[0]
    assert request_line == b"GET http://lago.example.invalid/api/v1/customers/cust-1 HTTP/1.1"


def test_which_urls_a_proxy_applies_to(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert not proxy_configured("https://api.getlago.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert proxy_configured("https://api.getlago.com")
    assert not proxy_configured("http://lago.internal")
    monkeypatch.setenv("NO_PROXY", "getlago.com")
    assert not proxy_configured("https://api.getlago.com")
    monkeypatch.setenv("ALL_PROXY", "http://proxy:3128")
    assert proxy_configured("http://lago.internal")


def test_a_connection_with_a_descriptor_above_1023_is_still_reused() -> None:
    """`select` cannot watch such a descriptor; a busy worker process has them."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the descriptor limit is {soft}")
    filler = [open("/dev/null") for _ in range(1100)]  # noqa: SIM115
    try:
        with raw_server(_keep_answering(CUSTOMER)) as server, _client(server.url) as client:
            for _ in range(3):
                client.get_customer("cust-1")
        assert server.connections == 1
    finally:
        for handle in filler:
            handle.close()
