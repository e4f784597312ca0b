"""`dunning serve` over real HTTP: signatures, replays, limits, and the ledger updates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.fixtures.sandbox import SandboxHandle
from tests.web.keys import forged_jwt, lago_hmac, lago_jwt, public_pem
from tests.web.ledger import (
    T0,
    group_row,
    intent_row,
    make_runtime,
    overdue_invoices,
    sent_intent,
)
from tests.web.server import serving
from worker.services.runtime import Runtime
from worker.store.db import read_session, write_tx
from worker.store.intents import add_intent
from worker.store.migrate import upgrade
from worker.store.models import PaymentRequestIntent, WebhookEvent
from worker.store.outcome_checks import IntentOutcomeCheck
from worker.web.app import create_app
from worker.web.signatures import PublicKeyCache

HMAC_KEY = "org-hmac-key-for-tests"
MAX_BODY = 65_536


@pytest.fixture
def rt(db_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Runtime]:
    """On both engines: for the tests that change the ledger."""
    yield from _runtime(db_url, sandbox, tmp_path)


@pytest.fixture
def sqlite_rt(sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Runtime]:
    """SQLite only: for the HTTP protocol tests (the engine plays no part in them)."""
    upgrade(sqlite_url)
    yield from _runtime(sqlite_url, sandbox, tmp_path)


def _runtime(db_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(
        db_url,
        sandbox,
        tmp_path,
        webhook_hmac_key=HMAC_KEY,
        webhook_max_body_bytes=MAX_BODY,
    )
    try:
        yield runtime
    finally:
        runtime.close()


def _serve(runtime: Runtime) -> Iterator[httpx.Client]:
    """Our app with a test RSA key standing in for Lago's (the e2e test uses the sandbox's)."""
    app = create_app(runtime, public_keys=PublicKeyCache(public_pem))
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture
def server(rt: Runtime) -> Iterator[httpx.Client]:
    yield from _serve(rt)


@pytest.fixture
def protocol_server(sqlite_rt: Runtime) -> Iterator[httpx.Client]:
    yield from _serve(sqlite_rt)


def envelope(webhook_type: str, key: str, obj: Any) -> bytes:
    return json.dumps({"webhook_type": webhook_type, "object_type": key, key: obj}).encode()


def post(
    client: httpx.Client,
    body: bytes,
    *,
    algorithm: str | None = "hmac",
    signature: str | None = None,
    unique_key: str | None = "evt-1",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if algorithm is not None:
        headers["X-Lago-Signature-Algorithm"] = algorithm
    if signature is None and algorithm == "hmac":
        signature = lago_hmac(body, HMAC_KEY)
    if signature is not None:
        headers["X-Lago-Signature"] = signature
    if unique_key is not None:
        headers["X-Lago-Unique-Key"] = unique_key
    return client.post("/webhooks/lago", content=body, headers=headers)


def events(rt: Runtime) -> int:
    with read_session(rt.engine) as session:
        return int(session.execute(select(func.count()).select_from(WebhookEvent)).scalar_one())


UNKNOWN = envelope("customer.created", "customer", {"external_id": "cus_x"})


def test_valid_hmac_and_jwt_are_accepted(protocol_server: httpx.Client, sqlite_rt: Runtime) -> None:
    assert post(protocol_server, UNKNOWN).json() == {"result": "ignored"}
    issuer = sqlite_rt.client.base_url
    response = post(
        protocol_server,
        UNKNOWN,
        algorithm="jwt",
        signature=lago_jwt(UNKNOWN, issuer),
        unique_key="evt-2",
    )
    assert (response.status_code, response.json()) == (200, {"result": "ignored"})
    assert events(sqlite_rt) == 2


def test_forged_unsigned_and_wrong_algorithm_get_401(
    protocol_server: httpx.Client, sqlite_rt: Runtime
) -> None:
    cases: list[tuple[str | None, str]] = [
        ("hmac", lago_hmac(UNKNOWN, "not-the-key")),
        ("hmac", ""),  # algorithm given, signature empty
        ("jwt", "eyJhbGciOiJub25lIn0.eyJkYXRhIjoiIn0."),  # alg none
        ("jwt", "garbage"),
        (None, lago_hmac(UNKNOWN, HMAC_KEY)),  # no algorithm header
        ("md5", "abc"),
    ]
    for algorithm, signature in cases:
        response = post(protocol_server, UNKNOWN, algorithm=algorithm, signature=signature)
        assert response.status_code == 401, (algorithm, signature)
        assert response.json() == {"result": "rejected", "error": "invalid signature"}
    unsigned = protocol_server.post(
        "/webhooks/lago", content=UNKNOWN, headers={"X-Lago-Unique-Key": "evt-9"}
    )
    assert unsigned.status_code == 401
    assert events(sqlite_rt) == 0


def test_jwt_from_another_key_or_issuer_gets_401(
    protocol_server: httpx.Client, sqlite_rt: Runtime
) -> None:
    issuer = sqlite_rt.client.base_url
    assert (
        post(
            protocol_server, UNKNOWN, algorithm="jwt", signature=forged_jwt(UNKNOWN, issuer)
        ).status_code
        == 401
    )
    wrong_issuer = lago_jwt(UNKNOWN, "https://elsewhere.example.com")
    assert (
        post(protocol_server, UNKNOWN, algorithm="jwt", signature=wrong_issuer).status_code == 401
    )
    other_body = lago_jwt(b'{"webhook_type":"x"}', issuer)
    assert post(protocol_server, UNKNOWN, algorithm="jwt", signature=other_body).status_code == 401


def test_malformed_json_gets_400(protocol_server: httpx.Client) -> None:
    for body in (b"{not json", b"[1, 2]", b'{"object_type": "invoice"}'):
        response = post(protocol_server, body)
        assert response.status_code == 400, body


def test_missing_unique_key_gets_400(protocol_server: httpx.Client, sqlite_rt: Runtime) -> None:
    assert post(protocol_server, UNKNOWN, unique_key=None).status_code == 400
    assert events(sqlite_rt) == 0


def test_malformed_object_gets_400(protocol_server: httpx.Client) -> None:
    # Values we do not know are kept (tolerant parsing); an invoice without an id is unusable.
    body = envelope("invoice.payment_status_updated", "invoice", {"number": "x"})
    response = post(protocol_server, body)
    assert response.status_code == 400
    assert "invoice" in response.json()["error"]


def test_oversized_bodies_get_413_with_or_without_content_length(
    protocol_server: httpx.Client,
) -> None:
    big = b'{"webhook_type": "x", "pad": "' + b"a" * MAX_BODY + b'"}'
    assert post(protocol_server, big).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"a" * (MAX_BODY // 5)

    response = protocol_server.post(
        "/webhooks/lago",
        content=chunks(),
        headers={"X-Lago-Signature-Algorithm": "hmac", "X-Lago-Signature": "x"},
    )
    assert response.status_code == 413


def test_replay_answers_200_and_changes_nothing(
    server: httpx.Client, rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:1]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    sandbox.pay_invoice(invoices[0]["lago_id"])
    paid = sandbox.invoice(invoices[0]["lago_id"])
    body = envelope("invoice.payment_status_updated", "invoice", paid)

    first = post(server, body, unique_key="evt-paid")
    assert (first.status_code, first.json()) == (200, {"result": "processed"})
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.recovered_cents) == ("paid", invoices[0]["total_due_amount_cents"])
    assert group_row(rt, "cus_00001", "USD").attempts_used == 0
    resolved_at = row.resolved_at

    # Dun again in between, then replay: the replay must not touch the ledger.
    sent_intent(rt, "cus_00001", overdue_invoices(sandbox, "cus_00001", "USD")[:1], attempt=1)
    replay = post(server, body, unique_key="evt-paid")
    assert (replay.status_code, replay.json()) == (200, {"result": "duplicate"})
    assert events(rt) == 1
    assert group_row(rt, "cus_00001", "USD").attempts_used == 1
    assert intent_row(rt, intent_id).resolved_at == resolved_at


def test_payment_cancels_a_pending_intent_so_the_next_tick_does_not_dun(
    server: httpx.Client, rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    with write_tx(rt.engine) as session:
        pending = add_intent(
            session,
            run_id=None,
            external_customer_id="cus_00001",
            currency="USD",
            billing_entity_code="acme_us",
            invoice_ids=[item["lago_id"] for item in invoices],
            amount_cents=1,
            email=None,
            policy="default",
            attempt_number=1,
            now=T0,
        )
    assert pending is not None
    sandbox.pay_invoice(invoices[0]["lago_id"])
    body = envelope(
        "invoice.payment_status_updated", "invoice", sandbox.invoice(invoices[0]["lago_id"])
    )
    assert post(server, body).json() == {"result": "processed"}
    with read_session(rt.engine) as session:
        row = session.get(PaymentRequestIntent, pending)
        assert row is not None
        assert row.status == "cancelled"


def test_payment_request_failure_marks_the_intent_failed(
    server: httpx.Client, rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:1]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    request_id = intent_row(rt, intent_id).lago_payment_request_id
    body = envelope(
        "payment_request.payment_failure",
        "payment_provider_payment_request_payment_error",
        {
            "lago_payment_request_id": request_id,
            "lago_invoice_ids": [invoices[0]["lago_id"]],
            "external_customer_id": "cus_00001",
            "provider_error": {"message": "card declined", "error_code": "card_declined"},
        },
    )
    assert post(server, body).json() == {"result": "processed"}
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.resolved_at) == ("failed", None)
    assert group_row(rt, "cus_00001", "USD").attempts_used == 1


def test_payment_request_succeeded_marks_the_intent_paid(
    server: httpx.Client, rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    request = next(
        item
        for item in sandbox.payment_requests()
        if item["lago_id"] == intent_row(rt, intent_id).lago_payment_request_id
    )
    request = {**request, "payment_status": "succeeded"}
    body = envelope("payment_request.payment_status_updated", "payment_request", request)
    assert post(server, body).json() == {"result": "processed"}
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.recovered_cents) == ("paid", request["amount_cents"])
    assert group_row(rt, "cus_00001", "USD").attempts_used == 0


def test_metrics_and_health(protocol_server: httpx.Client) -> None:
    post(protocol_server, UNKNOWN, unique_key="evt-metrics")
    post(protocol_server, UNKNOWN, algorithm="hmac", signature="forged", unique_key="evt-forged")
    text = protocol_server.get("/metrics").text
    assert 'dunning_webhooks_total{result="ignored",webhook_type="other"}' in text
    assert 'dunning_webhooks_total{result="rejected",webhook_type="unverified"}' in text
    assert 'dunning_intents{status="pending"}' in text
    health = protocol_server.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok"})


def test_get_on_the_webhook_path_is_not_allowed(protocol_server: httpx.Client) -> None:
    assert protocol_server.get("/webhooks/lago").status_code == 405


def test_receipt_alone_settles_the_intent_after_confirming_with_lago(
    protocol_server: httpx.Client, sqlite_rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(sqlite_rt, "cus_00001", invoices)
    for item in invoices:
        sandbox.pay_invoice(item["lago_id"])
    receipt = next(sqlite_rt.client.iter_payment_receipts(invoice_id=invoices[0]["lago_id"]))
    body = envelope("payment_receipt.created", "payment_receipt", receipt.model_dump(mode="json"))
    sandbox.reset_stats()

    assert post(protocol_server, body, unique_key="evt-receipt").json() == {"result": "processed"}

    row = intent_row(sqlite_rt, intent_id)
    asked = sum(item["total_due_amount_cents"] for item in invoices)
    assert (row.outcome, row.recovered_cents) == ("paid", asked)
    # The receipt's invoice and the group's other invoice were both confirmed with a GET.
    assert sandbox.request_count("GET /api/v1/invoices/{lago_id}") == 2


def test_overdue_notice_postpones_the_next_check(
    protocol_server: httpx.Client, sqlite_rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:1]
    intent_id = sent_intent(sqlite_rt, "cus_00001", invoices)
    body = envelope("invoice.payment_overdue", "invoice", sandbox.invoice(invoices[0]["lago_id"]))

    received = datetime.now(UTC)
    assert post(protocol_server, body, unique_key="evt-overdue").json() == {"result": "processed"}

    # Never checked before, the intent was due at once; now it waits about an hour.
    with read_session(sqlite_rt.engine) as session:
        check = session.get(IntentOutcomeCheck, intent_id)
        assert check is not None
        assert check.next_check_at is not None
        assert check.next_check_at >= received + timedelta(minutes=59)
    assert intent_row(sqlite_rt, intent_id).outcome is None
