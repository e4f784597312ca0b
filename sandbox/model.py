"""In-memory records of the sandbox and their Lago JSON shapes.

Invoices keep their public fields (the `V1::InvoiceSerializer` shape, without the embedded
customer) in `data`; `ready_for_payment_processing` is internal in Lago and kept apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

VISIBLE_INVOICE_STATUSES = ("draft", "finalized", "voided", "failed", "pending")
#: Statuses Lago never lists (a careless Lago may): only data files and odd data use them.
HIDDEN_INVOICE_STATUSES = ("deleted", "generating")
PAYMENT_STATUSES = ("pending", "succeeded", "failed")
INVOICE_TYPES = ("subscription", "add_on", "credit", "one_off", "progressive_billing")

JsonObject = dict[str, Any]


def utc_now_iso() -> str:
    """A timestamp the way Lago serializes one: UTC, second precision, `Z` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_to_ns(timestamp: str) -> int:
    """Nanoseconds since the epoch of a `...Z` timestamp (for Lago's created_at ordering)."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1_000_000) * 1000


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Customer:
    external_id: str
    data: JsonObject
    json_bytes: bytes = b""

    def refresh_json(self) -> None:
        self.json_bytes = dump_json(self.data)


@dataclass(slots=True)
class Invoice:
    lago_id: str
    customer_external_id: str
    data: JsonObject
    ready_for_payment_processing: bool = True

    @property
    def dunnable(self) -> bool:
        """The truth a dunning worker must find from the invoice's own fields: finalized,
        overdue, unpaid, not self-billed, no lost dispute, something due."""
        data = self.data
        return bool(
            data["status"] == "finalized"
            and data["payment_overdue"]
            and data["payment_status"] in ("pending", "failed")
            and not data["self_billed"]
            and data["payment_dispute_lost_at"] is None
            and data["total_due_amount_cents"] > 0
        )

    def refresh_derived(self) -> None:
        """Recompute the fields Lago derives from the amounts and status."""
        data = self.data
        if data["status"] == "voided":
            data["total_due_amount_cents"] = 0
            return
        due = (
            data["total_amount_cents"]
            - data["total_paid_amount_cents"]
            - data["total_offsetted_credit_note_amount_cents"]
        )
        data["total_due_amount_cents"] = max(due, 0)


@dataclass(slots=True)
class PaymentRequest:
    lago_id: str
    customer_external_id: str
    email: str | None
    amount_cents: int
    amount_currency: str
    invoice_ids: list[str]
    created_at: str
    created_at_ns: int
    payment_status: str = "pending"
    origin: str = "api"
    dunning_campaign_code: str | None = None
    delivery: str = "answered"
    #: Invoices that were not dunnable when the request was made (only a careless Lago
    #: accepts those): the audit of "requests for ineligible invoices".
    ineligible_invoice_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Payment:
    lago_id: str
    customer_external_id: str
    lago_customer_id: str
    invoice_id: str
    invoice_number: str
    amount_cents: int
    amount_currency: str
    reference: str
    created_at: str
    created_at_ns: int
    paid_at: str | None = None


@dataclass(slots=True)
class PaymentReceipt:
    lago_id: str
    number: str
    payment_id: str
    created_at: str
    created_at_ns: int


@dataclass(slots=True)
class Dataset:
    """Everything loaded from a data file or the generator, in insertion order."""

    customers: dict[str, Customer] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    # History given with the data (payments and payment requests dated in the past).
    payments: dict[str, Payment] = field(default_factory=dict)
    payment_requests: dict[str, PaymentRequest] = field(default_factory=dict)
