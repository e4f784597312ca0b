"""A lean HTTP/1.1 transport for the Lago client: stdlib `http.client` connections, pooled.

httpx's own transport (httpcore and h11, both pure Python) costs about three times the CPU of
`http.client`, whose response parsing is partly in C, and the send phase of a sweep is bound
by CPU. The client still speaks httpx (`httpx.Request` in, `httpx.Response` out), and this
transport raises the httpx exception the default transport raises for the same failure, so
the client's mapping of failures (what certainly never reached Lago, what may have) is one
mapping for both:

    could not connect (refused, no route, name unknown, TLS handshake)   ConnectError
    no connection in time                                                ConnectTimeout
    a header value http.client refuses (never written)                   LocalProtocolError
    the request could not be written whole                               WriteError, WriteTimeout
    no answer in time                                                    ReadTimeout
    the connection closed before or during the answer, or a bad answer   RemoteProtocolError
    the connection failed while reading                                  ReadError

Idle connections are kept (at most `max_idle`) for `keepalive_s` and checked before reuse: a
connection the server has closed (its socket reads as ready) is dropped, never written to.
TLS uses httpx's own context (`httpx.create_ssl_context`: certifi, or SSL_CERT_FILE and
SSL_CERT_DIR), so verification is what the default transport would do. Proxies are not
spoken here: the client keeps httpx's transport when the environment names one
(`proxy_configured`).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any

# Public in urllib.request (its NO_PROXY matching), though typeshed does not list it.
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import httpx

#: How long an idle connection is kept (httpcore's default).
KEEPALIVE_S = 5.0


def proxy_configured(url: str) -> bool:
    """Whether the environment's proxy settings (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, less
    NO_PROXY) apply to `url`: then the client leaves requests to httpx's transport."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not bool(proxy_bypass_environment(parsed.host, proxies))


class _Connection:
    __slots__ = ("conn", "idle_since")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Still open and quiet: an idle HTTP/1.1 connection that reads as ready has been
        closed by the server (or sent something unasked for): never write to it."""
        sock = self.conn.sock
        if sock is None or now - self.idle_since > KEEPALIVE_S:
            return False
        try:
            return not _readable(sock)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.conn.close()


class LeanTransport(httpx.BaseTransport):
    """HTTP/1.1 over `http.client`, one connection per request in flight, kept alive."""

    def __init__(self, *, max_idle: int = 16, ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- the pool ---------------------------------------------------------------------------

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        now = time.monotonic()
        stale: list[_Connection] = []
        found: _Connection | None = None
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                candidate = idle.pop()
                if candidate.usable(now):
                    found = candidate
                    break
                stale.append(candidate)
        for connection in stale:
            connection.close()
        return found

    def _checkin(self, key: tuple[str, str, int], connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(connection)
                    return
        connection.close()

    def _open(self, key: tuple[str, str, int], connect_s: float | None) -> _Connection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            conn = http.client.HTTPSConnection(
                host, port, timeout=connect_s, context=self._ssl_context
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_s)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(_text(exc)) from exc
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.ConnectError(_text(exc)) from exc
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [connection for pool in self._idle.values() for connection in pool]
            self._idle.clear()
        for connection in idle:
            connection.close()

    # -- one request ------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL scheme {url.scheme!r} is not http(s)")
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = request.read()
        connection = self._checkout(key) or self._open(key, timeouts.get("connect"))
        conn = connection.conn
        try:
            status, reason, headers, content, will_close = self._exchange(
                conn, request, body, timeouts
            )
        except BaseException:
            connection.close()
            raise
        if will_close:
            connection.close()
        else:
            self._checkin(key, connection)
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.encode("latin-1")},
        )

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        timeouts: dict[str, float | None],
    ) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
        sock: Any = conn.sock
        target = request.url.raw_path.decode("ascii")
        try:
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        except (ValueError, http.client.HTTPException):
            # http.client's text quotes the refused value (it may be the API key): never
            # repeat it. Nothing was written yet.
            raise httpx.LocalProtocolError("a header name or value is not valid HTTP") from None
        try:
            sock.settimeout(timeouts.get("write"))
            conn.endheaders(body or None)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(_text(exc)) from exc
        except OSError as exc:
            raise httpx.WriteError(_text(exc)) from exc
        try:
            sock.settimeout(timeouts.get("read"))
            response = conn.getresponse()
            content = response.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(_text(exc)) from exc
        except http.client.RemoteDisconnected as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response."
            ) from exc
        except (http.client.HTTPException, ConnectionResetError, BrokenPipeError) as exc:
            raise httpx.RemoteProtocolError(_text(exc)) from exc
        except OSError as exc:
            raise httpx.ReadError(_text(exc)) from exc
        return (
            response.status,
            response.reason,
            response.getheaders(),
            content,
            bool(response.will_close),
        )


def _readable(sock: socket.socket) -> bool:
    """Whether `sock` has something to read (or is closed), without waiting. `poll` where
    there is one: `select` cannot watch a descriptor above 1023, which a busy process has."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
