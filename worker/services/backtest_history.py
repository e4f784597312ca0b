"""Lago's billing history for backtests, read through the Lago client once and cached.

Three listings: finalized and voided invoices (all payment statuses), payments, payment
requests. They are kept as Lago sent them (payment requests without their embedded invoices)
in one JSON file under the data dir, per Lago URL, and read from there until `refresh`.

Converted for the replay: each invoice's payments in time order (a payment of a payment
request is spread over its invoices in order), the instant it was paid in full (the payment
that completed it; Lago's `updated_at` when it is paid with no payment on record), and the
instant it was voided. Customer facts are those Lago has today.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.lago.client import LagoClient
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice, MalformedRecord, Payment
from worker.policy.backtest import HistoricalInvoice, Touch
from worker.policy.types import group_key
from worker.services.collect_groups import customer_facts
from worker.services.invoice_facts import due_cents

CACHE_VERSION = 1


class HistoryError(Exception):
    """The cached history cannot be used (one line)."""


@dataclass(frozen=True, slots=True)
class History:
    invoices: dict[str, HistoricalInvoice]
    recorded: list[Touch]  # the payment requests Lago holds, as touches
    fetched_at: datetime
    source: str  # "Lago" or the cache file
    api_calls: int
    skipped: int  # invoices left out (malformed, self-billed, no due date)


def cache_path(data_dir: Path, base_url: str) -> Path:
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:12]
    return data_dir / "backtest" / f"history-{digest}.json"


def _fetch(client: LagoClient) -> dict[str, Any]:
    filters = InvoiceFilters(statuses=("finalized", "voided"))
    invoices = [
        item.model_dump(mode="json")
        for item in client.iter_invoices(filters)
        if not isinstance(item, MalformedRecord)
    ]
    payments = [payment.model_dump(mode="json") for payment in client.iter_payments()]
    requests = [
        {
            "lago_id": request.lago_id,
            "created_at": request.created_at.isoformat() if request.created_at else None,
            "amount_cents": request.amount_cents,
            "amount_currency": request.amount_currency,
            "external_customer_id": request.customer.external_id if request.customer else None,
            "billing_entity_code": next(
                (invoice.billing_entity_code for invoice in request.invoices), None
            ),
            "invoice_ids": sorted(request.invoice_ids),
        }
        for request in client.iter_payment_requests()
    ]
    return {"invoices": invoices, "payments": payments, "payment_requests": requests}


def load_history(
    client: LagoClient, *, data_dir: Path, base_url: str, now: datetime, refresh: bool = False
) -> History:
    path = cache_path(data_dir, base_url)
    if path.exists() and not refresh:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("version") != CACHE_VERSION:
                raise HistoryError(f"{path} is from another release; add --refresh")
            fetched_at = datetime.fromisoformat(cached["fetched_at"])
            return _convert(cached["data"], fetched_at, source=str(path), api_calls=0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HistoryError(
                f"cannot read the cached history {path} ({type(exc).__name__}); add --refresh"
            ) from None
    before = client.calls_total()
    data = _fetch(client)
    calls = client.calls_total() - before
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": CACHE_VERSION, "fetched_at": now.isoformat(), "data": data}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document), encoding="utf-8")
    temporary.replace(path)
    return _convert(data, now, source="Lago", api_calls=calls)


def _convert(data: dict[str, Any], fetched_at: datetime, *, source: str, api_calls: int) -> History:
    invoices = [Invoice.model_validate(item) for item in data["invoices"]]
    payments = [Payment.model_validate(item) for item in data["payments"]]
    paid_by_invoice = _spread_payments(payments, {invoice.lago_id: invoice for invoice in invoices})
    converted: dict[str, HistoricalInvoice] = {}
    skipped = 0
    for invoice in invoices:
        if (
            invoice.customer is None
            or invoice.payment_due_date is None
            or invoice.self_billed
            or invoice.created_at is None
            or invoice.currency is None
            or invoice.total_amount_cents is None
            or due_cents(invoice) is None
        ):
            skipped += 1  # not readable as history (an older Lago's shape, or odd data)
            continue
        converted[invoice.lago_id] = _historical(invoice, paid_by_invoice.get(invoice.lago_id, []))
    recorded = [
        Touch(
            at=datetime.fromisoformat(item["created_at"]).astimezone(UTC),
            group_key=group_key(
                item["external_customer_id"], item["amount_currency"], item["billing_entity_code"]
            ),
            external_customer_id=item["external_customer_id"],
            currency=item["amount_currency"],
            invoice_ids=tuple(item["invoice_ids"]),
            amount_cents=int(item["amount_cents"]),
            attempt_number=1,
        )
        for item in data["payment_requests"]
        if item.get("external_customer_id")
        and item.get("created_at")
        and item.get("amount_currency")
        and item.get("amount_cents") is not None
    ]
    return History(converted, recorded, fetched_at, source, api_calls, skipped)


def _spread_payments(
    payments: list[Payment], invoices: dict[str, Invoice]
) -> dict[str, list[tuple[datetime, int]]]:
    """Succeeded payments per invoice; one covering several invoices is spread in order."""
    spread: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for payment in sorted(payments, key=lambda p: p.created_at):
        if (payment.payment_status or payment.status) != "succeeded":
            continue
        left = payment.amount_cents
        for invoice_id in payment.invoice_ids:
            invoice = invoices.get(invoice_id)
            if invoice is None or invoice.total_amount_cents is None or left <= 0:
                continue
            share = left if len(payment.invoice_ids) == 1 else min(left, invoice.total_amount_cents)
            spread[invoice_id].append((payment.created_at.astimezone(UTC), share))
            left -= share
    return spread


def _historical(invoice: Invoice, payments: list[tuple[datetime, int]]) -> HistoricalInvoice:
    assert invoice.customer is not None
    assert invoice.payment_due_date is not None
    assert invoice.created_at is not None
    assert invoice.currency is not None
    assert invoice.total_amount_cents is not None
    due = due_cents(invoice)
    assert due is not None
    voided = invoice.status == "voided" or invoice.voided_at is not None
    # What was owed before any payment: the total net of credit notes.
    owed = invoice.total_amount_cents if voided else due + (invoice.total_paid_amount_cents or 0)
    paid_at: datetime | None = None
    if invoice.payment_status == "succeeded" and not voided:
        running = 0
        for at, cents in payments:
            running += cents
            if running >= owed:
                paid_at = at
                break
        if paid_at is None:
            paid_at = (invoice.updated_at or invoice.created_at).astimezone(UTC)
    voided_at = None
    if voided:
        voided_at = (invoice.voided_at or invoice.updated_at or invoice.created_at).astimezone(UTC)
    return HistoricalInvoice(
        lago_id=invoice.lago_id,
        number=invoice.number,
        customer=customer_facts(invoice.customer),
        currency=invoice.currency,
        billing_entity_code=invoice.billing_entity_code,
        payment_due_date=invoice.payment_due_date,
        issued_at=invoice.created_at.astimezone(UTC),
        due_cents=owed,
        payments=tuple(payments),
        paid_at=paid_at,
        voided_at=voided_at,
    )
