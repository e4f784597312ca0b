"""The sandbox's data: customers, invoices, payment requests, payments and receipts.

Listing is cheap at 200k invoices: invoices are kept in Lago's list order (issuing_date DESC,
created_at DESC, id ASC); each filter set's matching ids are cached (LRU) and kept up to date
incrementally when one invoice changes; each invoice's JSON is cached as bytes. Everything
runs on the server's event loop thread, so no locks are needed.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.careless import careless_invoice
from sandbox.model import (
    Customer,
    Dataset,
    Invoice,
    JsonObject,
    Payment,
    PaymentReceipt,
    PaymentRequest,
    dump_json,
    iso_to_ns,
    utc_now_iso,
)
from sandbox.queries import InvoiceFilters, invoice_matches

SORT_FIELDS = frozenset({"issuing_date", "created_at", "lago_id"})
_MAX_CACHED_QUERIES = 256


@dataclass(slots=True)
class _CachedCount:
    value: int
    expires_at: float


class Store:
    def __init__(self, dataset: Dataset) -> None:
        self.customers: dict[str, Customer] = dataset.customers
        self.invoices: dict[str, Invoice] = dataset.invoices
        self.payment_requests: dict[str, PaymentRequest] = dict(dataset.payment_requests)
        self.payments: dict[str, Payment] = dict(dataset.payments)
        self.receipts: dict[str, PaymentReceipt] = {}
        self.billing_entity_codes: set[str] = {
            c.data["billing_entity_code"] for c in self.customers.values()
        } | {i.data["billing_entity_code"] for i in self.invoices.values()}
        self.version = 0
        self._invoice_json: dict[str, bytes] = {}
        self._careless_json: dict[str, bytes] = {}
        self._queries: OrderedDict[InvoiceFilters, list[str]] = OrderedDict()
        self._counts: dict[tuple[InvoiceFilters, int], _CachedCount] = {}
        self._receipt_sequence = 0
        self._reorder()

    # -- ordering and caches -------------------------------------------------------------

    def _reorder(self) -> None:
        ordered = sorted(self.invoices.values(), key=lambda inv: inv.lago_id)
        ordered.sort(
            key=lambda inv: (inv.data["issuing_date"], inv.data["created_at"]), reverse=True
        )
        self.ordered_ids = [inv.lago_id for inv in ordered]
        self.rank = {lago_id: position for position, lago_id in enumerate(self.ordered_ids)}
        self.by_customer: dict[str, list[str]] = {cid: [] for cid in self.customers}
        for lago_id in self.ordered_ids:
            self.by_customer[self.invoices[lago_id].customer_external_id].append(lago_id)
        self._queries.clear()
        self.version += 1

    def matching_invoice_ids(self, filters: InvoiceFilters) -> list[str]:
        """Ids matching `filters`, in Lago's order. The returned list must not be mutated."""
        cached = self._queries.get(filters)
        if cached is not None:
            self._queries.move_to_end(filters)
            return cached
        candidates: Iterable[str] = (
            self.by_customer.get(filters.customer_external_id, [])
            if filters.customer_external_id is not None
            else self.ordered_ids
        )
        invoices, customers = self.invoices, self.customers
        result = [
            lago_id
            for lago_id in candidates
            if invoice_matches(invoices[lago_id], customers, filters)
        ]
        self._queries[filters] = result
        if len(self._queries) > _MAX_CACHED_QUERIES:
            self._queries.popitem(last=False)
        return result

    def reported_total(self, filters: InvoiceFilters, per_page: int, page: int, ttl: float) -> int:
        """The invoices `total_count`, cached per filter set like lago-api when `ttl` > 0.

        Lago reuses a cached count while it is greater than `per_page * page`, so the count
        (and `total_pages`, `next_page`) can be stale after invoices leave the result set.
        """
        real = len(self.matching_invoice_ids(filters))
        if ttl <= 0:
            return real
        key = (filters, per_page)
        now = time.monotonic()
        cached = self._counts.get(key)
        if cached is not None and cached.expires_at > now and cached.value > per_page * page:
            return cached.value
        self._counts[key] = _CachedCount(real, now + ttl)
        return real

    def invoice_json(self, invoice: Invoice) -> bytes:
        cached = self._invoice_json.get(invoice.lago_id)
        if cached is None:
            customer = self.customers[invoice.customer_external_id]
            body = dump_json(invoice.data)
            cached = body[:-1] + b',"customer":' + customer.json_bytes + b"}"
            self._invoice_json[invoice.lago_id] = cached
        return cached

    def careless_invoice_json(self, invoice: Invoice) -> bytes:
        """The invoice as a careless Lago shows it (`sandbox.careless`), with its customer."""
        cached = self._careless_json.get(invoice.lago_id)
        if cached is None:
            customer = self.customers[invoice.customer_external_id]
            shown = careless_invoice(
                invoice.data, ready_for_payment_processing=invoice.ready_for_payment_processing
            )
            cached = dump_json(shown)[:-1] + b',"customer":' + customer.json_bytes + b"}"
            self._careless_json[invoice.lago_id] = cached
        return cached

    def invoice_object(self, invoice: Invoice) -> JsonObject:
        return {**invoice.data, "customer": self.customers[invoice.customer_external_id].data}

    # -- mutations ---------------------------------------------------------------------

    def update_invoice(self, invoice: Invoice, changes: dict[str, Any]) -> None:
        """Apply field changes to one invoice, keeping every cache consistent."""
        before = {
            filters: invoice_matches(invoice, self.customers, filters) for filters in self._queries
        }
        ready = changes.pop("ready_for_payment_processing", None)
        if ready is not None:
            invoice.ready_for_payment_processing = bool(ready)
        invoice.data.update(changes)
        invoice.data["updated_at"] = utc_now_iso()
        invoice.refresh_derived()
        self._invoice_json.pop(invoice.lago_id, None)
        self._careless_json.pop(invoice.lago_id, None)
        if SORT_FIELDS & changes.keys():
            self._reorder()
            return
        self.version += 1
        rank = self.rank
        for filters, was_member in before.items():
            is_member = invoice_matches(invoice, self.customers, filters)
            if was_member == is_member:
                continue
            ids = self._queries[filters]
            if is_member:
                bisect.insort(ids, invoice.lago_id, key=rank.__getitem__)
            else:
                ids.remove(invoice.lago_id)

    def add_payment_request(
        self,
        customer: Customer,
        invoices: list[Invoice],
        email: str | None,
        *,
        origin: str,
        dunning_campaign_code: str | None = None,
    ) -> PaymentRequest:
        amount = sum(
            inv.data["total_amount_cents"]
            - inv.data["total_paid_amount_cents"]
            - inv.data["total_offsetted_credit_note_amount_cents"]
            for inv in invoices
        )
        request = PaymentRequest(
            ineligible_invoice_ids=[inv.lago_id for inv in invoices if not inv.dunnable],
            lago_id=str(uuid.uuid4()),
            customer_external_id=customer.external_id,
            email=email,
            amount_cents=amount,
            amount_currency=invoices[0].data["currency"],
            invoice_ids=[inv.lago_id for inv in invoices],
            created_at=utc_now_iso(),
            created_at_ns=time.time_ns(),
            origin=origin,
            dunning_campaign_code=dunning_campaign_code,
        )
        self.payment_requests[request.lago_id] = request
        return request

    def add_manual_payment(
        self, invoice: Invoice, amount_cents: int, reference: str, paid_at: str | None
    ) -> tuple[Payment, PaymentReceipt, bool]:
        """Record a manual payment; returns the payment, its receipt, and whether the
        invoice's payment_status changed."""
        customer = self.customers[invoice.customer_external_id]
        now_iso, now_ns = utc_now_iso(), time.time_ns()
        # Lago stores a manual payment's `paid_at` as its `created_at` (ManualCreateService).
        paid_iso = _paid_at_iso(paid_at) or now_iso
        payment = Payment(
            lago_id=str(uuid.uuid4()),
            customer_external_id=customer.external_id,
            lago_customer_id=customer.data["lago_id"],
            invoice_id=invoice.lago_id,
            invoice_number=invoice.data["number"],
            amount_cents=amount_cents,
            amount_currency=invoice.data["currency"],
            reference=reference,
            created_at=paid_iso,
            created_at_ns=iso_to_ns(paid_iso) if paid_iso != now_iso else now_ns,
            paid_at=paid_at,
        )
        self.payments[payment.lago_id] = payment
        self._receipt_sequence += 1
        receipt = PaymentReceipt(
            lago_id=str(uuid.uuid4()),
            number=f"{invoice.data['number']}-RCPT-{self._receipt_sequence:03d}",
            payment_id=payment.lago_id,
            created_at=now_iso,
            created_at_ns=now_ns,
        )
        self.receipts[receipt.lago_id] = receipt
        paid = invoice.data["total_paid_amount_cents"] + amount_cents
        changes: dict[str, Any] = {"total_paid_amount_cents": paid}
        remaining = (
            invoice.data["total_amount_cents"]
            - paid
            - invoice.data["total_offsetted_credit_note_amount_cents"]
        )
        status_changed = False
        if remaining <= 0:
            status_changed = invoice.data["payment_status"] != "succeeded"
            changes.update(
                payment_status="succeeded",
                payment_overdue=False,
                ready_for_payment_processing=False,
            )
        self.update_invoice(invoice, changes)
        return payment, receipt, status_changed


def _paid_at_iso(paid_at: str | None) -> str | None:
    """`paid_at` (a date or an ISO time, as Lago's `Time.zone.parse` takes it) as `...Z`."""
    if not paid_at:
        return None
    try:
        moment = datetime.fromisoformat(paid_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
