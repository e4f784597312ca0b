"""Outcome reconciliation against the sandbox (a real HTTP server) and real databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.web.ledger import (
    group_row,
    intent_row,
    later,
    make_runtime,
    overdue_invoices,
    sent_intent,
)
from worker.lago.models import Invoice
from worker.services.reconcile_outcomes import assess_outcome, reconcile_outcomes
from worker.services.runtime import Runtime
from worker.store.db import read_session
from worker.store.outcome_checks import IntentOutcomeCheck

GET_INVOICE = "GET /api/v1/invoices/{lago_id}"


def invoice(lago_id: str, total: int, paid: int = 0, **fields: object) -> Invoice:
    data: dict[str, object] = {
        "lago_id": lago_id,
        "status": "finalized",
        "payment_status": "succeeded" if paid >= total else "pending",
        "currency": "USD",
        "total_amount_cents": total,
        "total_paid_amount_cents": paid,
        "total_due_amount_cents": total - paid,
    }
    data.update(fields)
    return Invoice.model_validate(data)


# -- the pure outcome rule -------------------------------------------------------------------


def test_all_invoices_paid_is_paid_with_what_was_asked() -> None:
    result = assess_outcome(1500, [invoice("a", 1000, 1000), invoice("b", 500, 500)])
    assert (result.outcome, result.recovered_cents, result.final) == ("paid", 1500, True)


def test_money_paid_before_the_request_is_not_counted_as_recovered() -> None:
    # Invoice a had 200 paid before we asked for 800 + 500 = 1300.
    result = assess_outcome(1300, [invoice("a", 1000, 1000), invoice("b", 500, 500)])
    assert result.recovered_cents == 1300
    partial = assess_outcome(1300, [invoice("a", 1000, 600), invoice("b", 500, 0)])
    # still due 400 + 500 = 900 of the 1300 asked: 400 recovered, after the request.
    assert (partial.outcome, partial.recovered_cents, partial.final) == (
        "partially_paid",
        400,
        False,
    )


def test_voided_and_dispute_lost_invoices_are_not_recovered_money() -> None:
    voided = invoice("a", 1000, 0, status="voided", total_due_amount_cents=0)
    assert assess_outcome(1000, [voided]).outcome == "voided"
    assert assess_outcome(1000, [voided]).recovered_cents == 0
    lost = invoice("b", 700, 0, payment_dispute_lost_at="2026-11-03T00:00:00Z")
    assert (assess_outcome(700, [lost]).outcome, assess_outcome(700, [lost]).final) == (
        "disputed",
        True,
    )
    mixed = assess_outcome(1700, [voided, invoice("c", 700, 700)])
    assert (mixed.outcome, mixed.recovered_cents, mixed.final) == ("paid", 700, True)


def test_unpaid_invoices_stay_open_or_failed() -> None:
    assert assess_outcome(1000, [invoice("a", 1000)]).outcome == "open"
    assert assess_outcome(1000, [invoice("a", 1000)], request_status="failed").outcome == "failed"
    assert assess_outcome(1000, [invoice("a", 1000)], request_failed=True).final is False
    succeeded = assess_outcome(1000, [invoice("a", 1000)], request_status="succeeded")
    assert (succeeded.outcome, succeeded.recovered_cents) == ("paid", 1000)


# -- against the sandbox ---------------------------------------------------------------------


@pytest.fixture
def rt(db_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, sandbox, tmp_path)
    try:
        yield runtime
    finally:
        runtime.close()


def test_paid_invoices_settle_the_intent_and_reset_the_group(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    assert group_row(rt, "cus_00001", "USD").attempts_used == 1
    for item in invoices:
        sandbox.pay_invoice(item["lago_id"])
    sandbox.reset_stats()

    summary = reconcile_outcomes(rt, now=later(hours=5), limit=10)

    asked = sum(item["total_due_amount_cents"] for item in invoices)
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.recovered_cents) == ("paid", asked)
    assert row.resolved_at == later(hours=5)
    assert summary.paid == 1
    assert summary.recovered_cents == {"USD": asked}
    assert group_row(rt, "cus_00001", "USD").attempts_used == 0
    # One GET per invoice, nothing else.
    assert sandbox.request_count(GET_INVOICE) == 2
    assert sandbox.stats()["total"] == 2
    # Settled: never looked at again.
    sandbox.reset_stats()
    again = reconcile_outcomes(rt, now=later(days=3), limit=10)
    assert again.examined == 0
    assert sandbox.stats()["total"] == 0


def test_invoices_still_in_the_overdue_listing_cost_no_call(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    sandbox.reset_stats()

    summary = reconcile_outcomes(
        rt, now=later(hours=1), still_overdue={item["lago_id"] for item in invoices}
    )

    assert (summary.still_overdue, summary.confirmed_by_get) == (1, 0)
    assert sandbox.stats()["total"] == 0
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.resolved_at) == ("open", None)
    with read_session(rt.engine) as session:
        check = session.get(IntentOutcomeCheck, intent_id)
        assert check is not None
        assert check.next_check_at is not None
        assert check.next_check_at > later(hours=1)
    # Not due again before its next check.
    assert reconcile_outcomes(rt, now=later(hours=1, minutes=1)).examined == 0


def test_an_invoice_missing_from_the_listing_is_confirmed_not_assumed_paid(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    sandbox.reset_stats()
    # The sweep's listing skipped the second invoice (offset paging), but it is unpaid.
    summary = reconcile_outcomes(rt, now=later(hours=1), still_overdue={invoices[0]["lago_id"]})
    assert summary.confirmed_by_get == 1
    assert sandbox.request_count(GET_INVOICE) == 2
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.resolved_at, row.recovered_cents) == ("open", None, None)
    assert group_row(rt, "cus_00001", "USD").attempts_used == 1


def test_partial_payment_is_recorded_and_checked_again(rt: Runtime, sandbox: SandboxHandle) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:2]
    intent_id = sent_intent(rt, "cus_00001", invoices)
    sandbox.pay_invoice(invoices[0]["lago_id"], amount_cents=10_000)

    reconcile_outcomes(rt, now=later(hours=1))
    row = intent_row(rt, intent_id)
    assert (row.outcome, row.recovered_cents, row.resolved_at) == ("partially_paid", 10_000, None)
    assert group_row(rt, "cus_00001", "USD").attempts_used == 1

    sandbox.pay_invoice(invoices[0]["lago_id"])
    sandbox.pay_invoice(invoices[1]["lago_id"])
    reconcile_outcomes(rt, now=later(days=2))
    row = intent_row(rt, intent_id)
    asked = sum(item["total_due_amount_cents"] for item in invoices)
    assert (row.outcome, row.recovered_cents) == ("paid", asked)
    assert group_row(rt, "cus_00001", "USD").attempts_used == 0


def test_limit_bounds_the_calls_of_one_pass(rt: Runtime, sandbox: SandboxHandle) -> None:
    customers = ["cus_00001", "cus_00002"]
    ids = [
        sent_intent(rt, customer, overdue_invoices(sandbox, customer, "USD")[:1])
        for customer in customers
    ]
    sandbox.reset_stats()
    first = reconcile_outcomes(rt, now=later(hours=1), limit=1)
    assert (first.confirmed_by_get, sandbox.request_count(GET_INVOICE)) == (1, 1)
    second = reconcile_outcomes(rt, now=later(hours=1), limit=1)
    assert second.confirmed_by_get == 1
    assert {intent_row(rt, intent_id).outcome for intent_id in ids} == {"open"}


def test_a_newer_attempt_takes_over_the_credit(rt: Runtime, sandbox: SandboxHandle) -> None:
    invoices = overdue_invoices(sandbox, "cus_00001", "USD")[:1]
    first = sent_intent(rt, "cus_00001", invoices, create_in_lago=False)
    second = sent_intent(
        rt, "cus_00001", invoices, attempt=2, at=later(days=3), create_in_lago=False
    )
    sandbox.pay_invoice(invoices[0]["lago_id"])

    summary = reconcile_outcomes(rt, now=later(days=4))

    assert summary.superseded == 1
    assert intent_row(rt, first).outcome == "open"
    assert intent_row(rt, first).recovered_cents is None
    assert intent_row(rt, second).outcome == "paid"


def test_reconcile_rejects_a_zero_limit(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="limit"):
        reconcile_outcomes(rt, now=datetime(2026, 11, 3, tzinfo=UTC), limit=0)
