"""The recovery loop end to end: sweep -> the customer pays (POST /api/v1/payments) ->
Lago's signed webhook and/or reconciliation -> the group's counter is reset -> no more
dunning of that group. Lago is the sandbox (a real HTTP server that signs and delivers real
webhooks); our receiver runs on a loopback port; the ledger is a real database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sweep_support import (
    Clock,
    load_data,
    requests_by_customer,
    sweep_runtime,
    test_settings,
    write_policy,
)
from tests.fixtures.sandbox import SandboxHandle
from tests.web.ledger import group_row, intent_row
from tests.web.server import serving
from worker.services.reconcile_outcomes import reconcile_outcomes
from worker.services.runtime import Runtime
from worker.services.sweep import run_sweep
from worker.store.db import read_session
from worker.store.models import PaymentRequestIntent
from worker.web.app import create_app

SOLO_INVOICES = [f"5e1f0000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3)]
SOLO_DUE = 25_000 + 35_000 + 45_000
HMAC_KEY = "org-hmac-token-for-the-loop"


@pytest.fixture
def loop(db_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    sandbox.reset(data=load_data("one_customer"))
    policy = write_policy(tmp_path, max_attempts=3)
    settings = test_settings(db_url, sandbox, policy, webhook_hmac_key=HMAC_KEY)
    clock = Clock()
    with sweep_runtime(settings, clock=clock) as rt:
        yield rt, clock


def solo_intent(rt: Runtime) -> PaymentRequestIntent:
    with read_session(rt.engine) as session:
        rows = (
            session.query(PaymentRequestIntent)
            .filter(PaymentRequestIntent.external_customer_id == "cus_solo")
            .all()
        )
    assert len(rows) == 1
    return rows[0]


def wait_for(condition: object, what: str, deadline_s: float = 20.0) -> None:
    """Webhooks arrive asynchronously: wait (bounded) for their effect, then fail clearly."""
    assert callable(condition)
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def delivered(sandbox: SandboxHandle) -> int:
    """Deliveries that got an answer (a payment and a receipt webhook per invoice)."""
    return sum(1 for d in sandbox.webhook_deliveries() if d["last_status"] is not None)


def pay_everything(sandbox: SandboxHandle) -> None:
    for lago_id in SOLO_INVOICES:
        sandbox.pay_invoice(lago_id)


@pytest.mark.parametrize("algorithm", ["jwt", "hmac"])
def test_a_paying_customer_is_settled_by_webhook_and_never_dunned_again(
    loop: tuple[Runtime, Clock], sandbox: SandboxHandle, algorithm: str
) -> None:
    rt, clock = loop
    first = run_sweep(rt, trigger="cli")
    assert first.requests_created == 2  # cus_solo and cus_other
    intent = solo_intent(rt)
    assert intent.status == "sent"
    assert group_row(rt, "cus_solo", "USD").attempts_used == 1

    with serving(create_app(rt)) as url:
        sandbox.set_webhooks(
            url=f"{url}/webhooks/lago", algorithm=algorithm, hmac_key=HMAC_KEY, max_attempts=1
        )
        pay_everything(sandbox)
        wait_for(lambda: intent_row(rt, intent.id).outcome == "paid", "the paid outcome")
        wait_for(lambda: delivered(sandbox) >= 2 * len(SOLO_INVOICES), "every delivery")
        sandbox.set_webhooks(url=None)

    deliveries = sandbox.webhook_deliveries()
    assert {d["last_status"] for d in deliveries} == {200}, deliveries
    settled = intent_row(rt, intent.id)
    assert settled.recovered_cents == SOLO_DUE
    assert settled.resolved_at is not None
    assert group_row(rt, "cus_solo", "USD").attempts_used == 0

    # Days later the next sweep duns cus_other again, and leaves cus_solo alone.
    clock.advance(days=4)
    sandbox.reset_stats()
    second = run_sweep(rt, trigger="cli")
    requests = requests_by_customer(sandbox)
    assert len(requests["cus_solo"]) == 1
    assert len(requests["cus_other"]) == 2
    assert second.requests_created == 1
    # The webhook already settled cus_solo: the sweep's reconciliation spent no call on it.
    assert sandbox.request_count("GET /api/v1/invoices/{lago_id}") == 0


def test_without_webhooks_reconciliation_confirms_the_payment(
    loop: tuple[Runtime, Clock], sandbox: SandboxHandle
) -> None:
    rt, clock = loop
    run_sweep(rt, trigger="cli")
    intent = solo_intent(rt)
    pay_everything(sandbox)  # no webhook endpoint configured: nobody tells us

    clock.advance(days=4)
    second = run_sweep(rt, trigger="cli")

    # cus_solo's invoices left the overdue listing; the sweep confirmed each with a GET
    # before recording the payment, and did not dun the group again.
    settled = intent_row(rt, intent.id)
    assert (settled.outcome, settled.recovered_cents) == ("paid", SOLO_DUE)
    assert group_row(rt, "cus_solo", "USD").attempts_used == 0
    assert len(requests_by_customer(sandbox)["cus_solo"]) == 1
    assert second.requests_created == 1  # cus_other only
    assert sandbox.request_count("GET /api/v1/invoices/{lago_id}") == len(SOLO_INVOICES)

    # Settled intents cost nothing afterwards.
    sandbox.reset_stats()
    clock.advance(days=2)
    assert reconcile_outcomes(rt, now=clock()).examined <= 1  # cus_other's latest attempt
    assert sandbox.request_count("GET /api/v1/invoices/{lago_id}") <= 1
