"""Objects generated from Lago's official OpenAPI components, pushed through the real client
(httpx.MockTransport), the parsing, the grouping and the decisions.

Schema-valid data is what any Lago version may send: enum values our sandbox never sends
(invoice status `deleted`, payment status `processing`), fields left out, listing filters not
honoured. Whatever comes: no unhandled exception, every row accounted for, and never a
payment request for an invoice that is not eligible by its own fields.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from config.policies import parse_policies
from tests.fixtures.lago_schema import schema_of
from worker.lago import LagoClient
from worker.lago.errors import LagoMalformedResponseError
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice, MalformedRecord, PaymentRequest
from worker.lago.parsing import unwrap
from worker.policy import decide
from worker.policy.types import DecisionKind, GroupState
from worker.services.answer_checks import check_answer
from worker.services.collect_groups import collect_groups

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CURRENCY = re.compile(r"^[A-Z]{3}$")
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Dun everything: every group with something due in any currency is an ATTEMPT.
EVERYONE = parse_policies(
    "version: 1\npolicies:\n  - name: everyone\n    min_overdue_cents: {"
    + ", ".join(f"{code}: 0" for code in ("USD", "EUR", "GBP", "AED", "JPY", "CHF", "ZAR"))
    + "}\n",
    source="everyone.yaml",
)


def _client(handler: Any) -> LagoClient:
    return LagoClient(
        "http://lago.test",
        SecretStr("k"),
        max_retries=0,
        transport=httpx.MockTransport(handler),
        sleep=lambda _s: None,
    )


def _listing(key: str, rows: list[Any]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        meta = {"current_page": 1, "next_page": None, "total_pages": 1, "total_count": len(rows)}
        return httpx.Response(200, json={key: rows, "meta": meta})

    return handler


def provably_eligible(raw: dict[str, Any], today: date) -> bool:
    """The oracle, read from the raw JSON (not from our models)."""
    customer = raw.get("customer") or {}
    if not customer.get("external_id") or not CURRENCY.match(str(raw.get("currency") or "")):
        return False
    if raw.get("status") != "finalized" or raw.get("voided_at"):
        return False
    if raw.get("payment_dispute_lost_at") or raw.get("self_billed") is True:
        return False
    if raw.get("payment_status") not in ("pending", "failed"):
        return False
    overdue = raw.get("payment_overdue")
    if overdue is None:
        due_date = raw.get("payment_due_date")
        if not due_date or date.fromisoformat(due_date) >= today:
            return False
    elif overdue is not True:
        return False
    due = raw.get("total_due_amount_cents")
    if due is None:
        parts = [
            raw.get(k)
            for k in (
                "total_amount_cents",
                "total_paid_amount_cents",
                "total_offsetted_credit_note_amount_cents",
            )
        ]
        if any(part is None for part in parts):
            return False
        due = parts[0] - parts[1] - parts[2]
    return bool(due > 0)


@SETTINGS
@given(rows=st.lists(schema_of("InvoiceObject"), min_size=1, max_size=8))
def test_schema_valid_invoices_never_lead_to_a_request_for_an_ineligible_one(
    rows: list[dict[str, Any]],
) -> None:
    with _client(_listing("invoices", rows)) as client:
        items = list(client.iter_invoices(InvoiceFilters.overdue()))
    assert len(items) == len(rows)  # the listing lost no row
    eligible_ids = {str(raw["lago_id"]) for raw in rows if provably_eligible(raw, NOW.date())}
    with collect_groups(items, now=NOW) as collected:
        assert collected.invoices_seen == len(rows)
        assert sum(collected.invoices_by_reason.values()) == len(rows)  # every row accounted for
        for group in collected.iter_groups():
            decision = decide(EVERYONE, group, GroupState(), NOW)
            if decision.kind is DecisionKind.ATTEMPT:
                assert set(group.invoice_ids) <= eligible_ids
        grouped = collected.invoices_by_reason.get("eligible", 0)
        # Schema-valid ids may repeat; the judged-eligible count never exceeds the oracle's.
        assert grouped <= sum(1 for raw in rows if provably_eligible(raw, NOW.date()))


@SETTINGS
@given(rows=st.lists(schema_of("PaymentObject"), min_size=1, max_size=6))
def test_schema_valid_payments_never_lose_a_page(rows: list[dict[str, Any]]) -> None:
    """`payment_status: processing` and other spec values parse: no page is lost for them."""
    with _client(_listing("payments", rows)) as client:
        payments = list(client.iter_payments(external_customer_id="cus_1"))
    assert [payment.lago_id for payment in payments] == [row["lago_id"] for row in rows]


@SETTINGS
@given(rows=st.lists(schema_of("PaymentReceiptObject"), min_size=1, max_size=6))
def test_schema_valid_receipts_never_lose_a_page_nor_a_webhook(rows: list[dict[str, Any]]) -> None:
    with _client(_listing("payment_receipts", rows)) as client:
        receipts = list(client.iter_payment_receipts(invoice_id=str(rows[0]["lago_id"])))
    assert len(receipts) == len(rows)
    # The same model reads `payment_receipt.created` webhooks.
    for row in rows:
        unwrap({"payment_receipt": row}, "payment_receipt", type(receipts[0]), endpoint="webhook")


@SETTINGS
@given(
    answer=schema_of("PaymentRequestObject"),
    sent_extra=st.lists(st.uuids().map(str), max_size=2),
    keep=st.booleans(),
)
def test_an_answer_is_believed_only_when_it_names_what_we_asked(
    answer: dict[str, Any], sent_extra: list[str], keep: bool
) -> None:
    """Whatever a schema-valid answer to our POST holds, it is taken as ours exactly when it
    names our customer, our currency and a non-empty subset of the invoices we sent."""
    named = [str(invoice.get("lago_id")) for invoice in answer["invoices"]]
    ours = (sorted({*named, *sent_extra}) if keep else sent_extra) or ["not-an-invoice"]
    customer = answer["customer"].get("external_id") if keep else "someone-else"
    currency = answer["amount_currency"] if keep else "XXX"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"payment_request": answer})

    with _client(handler) as client:
        try:
            request = client.create_payment_request(str(customer or "c"), ours)
        except LagoMalformedResponseError:
            return  # an unreadable 200 is an unknown outcome: reconciled, never believed
    assert isinstance(request, PaymentRequest)
    verdict = check_answer(
        request, external_customer_id=str(customer), currency=str(currency), invoice_ids=ours
    )
    believed = (
        request.external_customer_id == customer
        and request.amount_currency == currency
        and bool(request.invoice_ids)
        and request.invoice_ids <= set(ours)
    )
    assert (verdict is None) == believed


def test_the_generated_invoices_reach_values_our_sandbox_never_sends() -> None:
    """The strategies really explore beyond the tidy case (else the tests above prove less)."""
    seen_status: set[Any] = set()
    seen_payment: set[Any] = set()
    missing_due = False

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(schema_of("InvoiceObject"), schema_of("PaymentObject"))
    def explore(invoice: dict[str, Any], payment: dict[str, Any]) -> None:
        nonlocal missing_due
        seen_status.add(invoice.get("status"))
        seen_payment.add(payment.get("payment_status"))
        missing_due = missing_due or "total_due_amount_cents" not in invoice

    explore()
    assert "deleted" in seen_status
    assert "processing" in seen_payment
    assert missing_due
    # Parsed models keep such values raw.
    raw = {"lago_id": "i", "status": "deleted", "payment_status": "processing"}
    parsed = Invoice.model_validate(raw)
    assert (parsed.status, parsed.payment_status) == ("deleted", "processing")
    assert not isinstance(parsed, MalformedRecord)
