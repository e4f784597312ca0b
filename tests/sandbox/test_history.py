"""Generated billing history: monthly invoices, payments dated when paid, past requests."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from sandbox.dataset import build_dataset
from sandbox.generator import GeneratorSpec, generate_document

TODAY = date(2026, 12, 1)


def test_history_is_deterministic_and_spans_the_period() -> None:
    spec = GeneratorSpec(customers=60, seed=3, history_days=120)
    first, again = generate_document(spec, TODAY), generate_document(spec, TODAY)
    assert first == again
    issued = sorted(date.fromisoformat(i["issuing_date"]) for i in first["invoices"])
    assert issued[0] >= TODAY - timedelta(days=120)
    assert issued[-1] < TODAY
    per_customer = defaultdict(int)
    for invoice in first["invoices"]:
        per_customer[invoice["customer"]["external_id"]] += 1
    assert set(per_customer.values()) <= {3, 4}


def test_paid_invoices_have_payments_dated_after_issue_that_add_up() -> None:
    document = generate_document(GeneratorSpec(customers=200, seed=5, history_days=150), TODAY)
    invoices = {i["lago_id"]: i for i in document["invoices"]}
    paid: dict[str, int] = defaultdict(int)
    lateness = []
    for payment in document["payments"]:
        invoice = invoices[payment["invoice_id"]]
        paid[invoice["lago_id"]] += payment["amount_cents"]
        at = datetime.fromisoformat(payment["created_at"].replace("Z", "+00:00")).date()
        assert date.fromisoformat(invoice["issuing_date"]) < at < TODAY
        lateness.append((at - date.fromisoformat(invoice["payment_due_date"])).days)
    for lago_id, invoice in invoices.items():
        if invoice["payment_status"] == "succeeded":
            assert paid[lago_id] == invoice["total_amount_cents"]
        elif invoice["status"] == "finalized":
            assert (
                paid.get(lago_id, 0)
                == invoice["total_paid_amount_cents"]
                < invoice["total_amount_cents"]
            )
    # Some pay early, many within a month, some much later.
    assert min(lateness) < 0 < max(lateness)
    assert sum(1 for days in lateness if days > 30) > 20


def test_past_payment_requests_come_before_the_payment_and_load_into_the_sandbox() -> None:
    document = generate_document(GeneratorSpec(customers=200, seed=5, history_days=150), TODAY)
    assert document["payment_requests"]
    dataset = build_dataset(document, TODAY)
    assert len(dataset.payments) == len(document["payments"])
    assert len(dataset.payment_requests) == len(document["payment_requests"])
    for request in dataset.payment_requests.values():
        invoice = dataset.invoices[request.invoice_ids[0]]
        assert request.created_at > invoice.data["payment_due_date"]
        assert request.created_at_ns > 0
