"""Webhooks: Lago's envelope and signatures (JWT RS256 and HMAC), sent in the background."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from tests.fixtures.sandbox import SandboxHandle


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A tiny webhook endpoint; the first `failures` posts get a 500."""

    def __init__(self, failures: int = 0) -> None:
        self.posts: queue.Queue[Received] = queue.Queue()
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(500)
                else:
                    receiver.posts.put(Received(dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self) -> Received:
        return self.posts.get(timeout=10)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def overdue_ids(sandbox: SandboxHandle) -> list[str]:
    return [
        row["lago_id"]
        for row in sandbox.invoices()
        if row["customer"]["external_id"] == "cus_00001" and row["payment_overdue"]
    ]


def create_request(sandbox: SandboxHandle, invoice_ids: list[str]) -> dict[str, Any]:
    with sandbox.api_client() as client:
        response = client.post(
            "/api/v1/payment_requests",
            json={
                "payment_request": {
                    "external_customer_id": "cus_00001",
                    "lago_invoice_ids": invoice_ids,
                }
            },
        )
    assert response.status_code == 200
    created: dict[str, Any] = response.json()["payment_request"]
    return created


def public_key(sandbox: SandboxHandle) -> bytes:
    with sandbox.api_client() as client:
        encoded = client.get("/api/v1/webhooks/json_public_key").json()["webhook"]["public_key"]
    return base64.b64decode(encoded)


def test_jwt_signed_payment_request_created(sandbox: SandboxHandle, receiver: Receiver) -> None:
    sandbox.set_webhooks(url=receiver.url, algorithm="jwt")
    created = create_request(sandbox, overdue_ids(sandbox)[:2])
    post = receiver.next()
    envelope = post.json()
    assert envelope["webhook_type"] == "payment_request.created"
    assert envelope["object_type"] == "payment_request"
    assert envelope["organization_id"]
    assert envelope["payment_request"]["lago_id"] == created["lago_id"]
    assert post.headers["X-Lago-Signature-Algorithm"] == "jwt"
    assert post.headers["X-Lago-Unique-Key"]
    claims = jwt.decode(
        post.headers["X-Lago-Signature"],
        public_key(sandbox),
        algorithms=["RS256"],
        issuer=sandbox.url,
    )
    assert claims["data"] == post.body.decode()


def test_jwt_signature_fails_with_a_tampered_body(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    sandbox.set_webhooks(url=receiver.url)
    create_request(sandbox, overdue_ids(sandbox)[:1])
    post = receiver.next()
    claims = jwt.decode(post.headers["X-Lago-Signature"], public_key(sandbox), algorithms=["RS256"])
    assert claims["data"] != post.body.decode().replace("cus_00001", "cus_99999")


def test_hmac_signed_manual_payment_webhooks(sandbox: SandboxHandle, receiver: Receiver) -> None:
    key = "org-hmac-key-123"
    sandbox.set_webhooks(url=receiver.url, algorithm="hmac", hmac_key=key)
    invoice_id = overdue_ids(sandbox)[0]
    sandbox.pay_invoice(invoice_id)
    posts = [receiver.next(), receiver.next()]
    assert [p.json()["webhook_type"] for p in posts] == [
        "invoice.payment_status_updated",
        "payment_receipt.created",
    ]
    assert posts[0].json()["invoice"]["payment_status"] == "succeeded"
    assert posts[1].json()["payment_receipt"]["payment"]["invoice_ids"] == [invoice_id]
    for post in posts:
        expected = base64.b64encode(hmac.new(key.encode(), post.body, hashlib.sha256).digest())
        assert post.headers["X-Lago-Signature-Algorithm"] == "hmac"
        assert hmac.compare_digest(post.headers["X-Lago-Signature"].encode(), expected)
        wrong = base64.b64encode(hmac.new(b"other", post.body, hashlib.sha256).digest())
        assert post.headers["X-Lago-Signature"].encode() != wrong


def test_marking_an_invoice_overdue_sends_payment_overdue(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    not_overdue = next(row for row in sandbox.invoices() if not row["payment_overdue"])
    sandbox.set_webhooks(url=receiver.url)
    sandbox.patch_invoice(not_overdue["lago_id"], payment_overdue=True)
    post = receiver.next()
    assert post.json()["webhook_type"] == "invoice.payment_overdue"
    assert post.json()["invoice"]["lago_id"] == not_overdue["lago_id"]


def test_failed_deliveries_are_retried_with_the_same_unique_key(sandbox: SandboxHandle) -> None:
    flaky = Receiver(failures=2)
    try:
        sandbox.set_webhooks(url=flaky.url, max_attempts=3, retry_delay_seconds=0.01)
        create_request(sandbox, overdue_ids(sandbox)[:1])
        post = flaky.next()
    finally:
        flaky.close()
    deliveries = sandbox.webhook_deliveries()
    assert len(deliveries) == 1
    assert deliveries[0]["attempts"] == 3
    assert deliveries[0]["delivered"] is True
    assert deliveries[0]["unique_key"] == post.headers["X-Lago-Unique-Key"]


def test_no_url_means_no_webhooks(sandbox: SandboxHandle) -> None:
    create_request(sandbox, overdue_ids(sandbox)[:1])
    assert sandbox.webhook_deliveries() == []


def test_webhook_settings_hide_the_hmac_key(sandbox: SandboxHandle) -> None:
    shown = sandbox.set_webhooks(url="http://127.0.0.1:9/x", algorithm="hmac", hmac_key="s3cret")
    assert shown["hmac_key_set"] is True
    assert "s3cret" not in json.dumps(shown)
