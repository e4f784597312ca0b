"""`judge_invoice`: every listed invoice judged from its own fields, the clock passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from worker.policy.eligibility import (
    INVOICE_REASONS,
    ListedInvoice,
    amount_due_cents,
    judge_invoice,
)
from worker.policy.types import Reason

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

GOOD = ListedInvoice(
    lago_id="inv-1",
    number="INV-1",
    external_customer_id="cust-1",
    currency="USD",
    status="finalized",
    payment_status="pending",
    payment_overdue=True,
    payment_due_date=date(2026, 11, 1),
    self_billed=False,
    total_amount_cents=10_000,
    total_due_amount_cents=7_000,
    total_paid_amount_cents=3_000,
    total_offsetted_credit_note_amount_cents=0,
)


def test_a_finalized_overdue_unpaid_invoice_is_eligible_with_its_amount_due() -> None:
    verdict = judge_invoice(GOOD, NOW)
    assert verdict.eligible
    assert verdict.reason is Reason.ELIGIBLE
    assert verdict.due_cents == 7_000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"external_customer_id": None}, Reason.NO_CUSTOMER),
        ({"currency": None}, Reason.NO_CURRENCY),
        ({"currency": "usd"}, Reason.NO_CURRENCY),
        ({"status": "draft"}, Reason.NOT_FINALIZED),
        ({"status": "voided"}, Reason.NOT_FINALIZED),
        ({"status": "deleted"}, Reason.NOT_FINALIZED),
        ({"status": "a_status_from_the_future"}, Reason.NOT_FINALIZED),
        ({"status": None}, Reason.NOT_FINALIZED),
        ({"voided_at": NOW}, Reason.NOT_FINALIZED),
        ({"payment_dispute_lost_at": NOW}, Reason.DISPUTE_LOST),
        ({"self_billed": True}, Reason.SELF_BILLED),
        ({"payment_status": "succeeded"}, Reason.ALREADY_PAID),
        ({"payment_status": "processing"}, Reason.PAYMENT_IN_FLIGHT),
        ({"payment_status": "refunded"}, Reason.PAYMENT_STATUS_UNKNOWN),
        ({"payment_status": None}, Reason.PAYMENT_STATUS_UNKNOWN),
        ({"payment_overdue": False}, Reason.NOT_OVERDUE),
        ({"payment_overdue": None, "payment_due_date": date(2026, 12, 1)}, Reason.NOT_OVERDUE),
        ({"payment_overdue": None, "payment_due_date": None}, Reason.NOT_OVERDUE),
        ({"total_due_amount_cents": 0}, Reason.NOTHING_DUE),
        ({"total_due_amount_cents": -5}, Reason.NOTHING_DUE),
        (
            {"total_due_amount_cents": None, "total_offsetted_credit_note_amount_cents": None},
            Reason.AMOUNT_UNKNOWN,
        ),
        ({"total_due_amount_cents": None, "total_paid_amount_cents": None}, Reason.AMOUNT_UNKNOWN),
    ],
)
def test_each_failed_check_is_a_reason_coded_skip(
    change: dict[str, object], reason: Reason
) -> None:
    verdict = judge_invoice(replace(GOOD, **change), NOW)  # type: ignore[arg-type]
    assert verdict.reason is reason
    assert not verdict.eligible
    assert verdict.detail.startswith("invoice INV-1")


def test_without_the_overdue_flag_the_due_date_decides_in_utc() -> None:
    unflagged = replace(GOOD, payment_overdue=None, payment_due_date=date(2026, 11, 30))
    assert judge_invoice(unflagged, NOW).eligible
    # The same invoice judged on its due date is not overdue yet.
    assert judge_invoice(unflagged, datetime(2026, 11, 30, 23, 0, tzinfo=UTC)).reason is (
        Reason.NOT_OVERDUE
    )


def test_a_one_customer_sweep_skips_other_customers_invoices() -> None:
    verdict = judge_invoice(GOOD, NOW, only_customer="cust-2")
    assert verdict.reason is Reason.OTHER_CUSTOMER
    assert judge_invoice(GOOD, NOW, only_customer="cust-1").eligible


def test_the_first_failed_check_names_the_skip() -> None:
    # A draft that is also paid and self-billed is reported as not finalized (check order).
    messy = replace(GOOD, status="draft", payment_status="succeeded", self_billed=True)
    assert judge_invoice(messy, NOW).reason is Reason.NOT_FINALIZED
    assert INVOICE_REASONS[-1] is Reason.ELIGIBLE


def test_the_amount_due_is_derived_the_way_lago_computes_it() -> None:
    # Lago: total - paid - finalized credit-note offsets; 0 when voided.
    older = replace(
        GOOD,
        total_due_amount_cents=None,
        total_amount_cents=10_000,
        total_paid_amount_cents=2_500,
        total_offsetted_credit_note_amount_cents=1_000,
    )
    assert amount_due_cents(older) == 6_500
    assert amount_due_cents(replace(older, status="voided")) == 0
    assert amount_due_cents(replace(older, total_paid_amount_cents=None)) is None
    assert judge_invoice(older, NOW).due_cents == 6_500


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        judge_invoice(GOOD, datetime(2026, 12, 1))
