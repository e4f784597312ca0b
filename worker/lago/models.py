"""Pydantic models of the Lago objects the worker reads.

Unknown fields are accepted and dropped (`extra="ignore"`): Lago adds fields often, and the
worker keeps only what it uses. Amounts are integers in cents, currencies ISO 4217 codes,
datetimes timezone-aware. Shapes follow Lago's serializers (see docs in README), which differ
from the OpenAPI spec in a few documented places (e.g. `total_due_amount_cents` exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Cents = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
PaymentStatus = Literal["pending", "succeeded", "failed"]


class LagoModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetadataItem(LagoModel):
    key: str
    value: str | None = None


class Customer(LagoModel):
    lago_id: str | None = None
    external_id: Annotated[str, StringConstraints(min_length=1)]
    name: str | None = None
    email: str | None = None
    country: str | None = None
    currency: Currency | None = None
    customer_type: str | None = None
    timezone: str | None = None
    applicable_timezone: str | None = None
    billing_entity_code: str | None = None
    metadata: list[MetadataItem] = Field(default_factory=list)

    def metadata_dict(self) -> dict[str, str]:
        return {item.key: item.value or "" for item in self.metadata}


class Invoice(LagoModel):
    lago_id: Annotated[str, StringConstraints(min_length=1)]
    number: str = ""
    issuing_date: date | None = None
    payment_due_date: date | None = None
    net_payment_term: int | None = None
    invoice_type: str | None = None
    status: str
    payment_status: PaymentStatus
    payment_overdue: bool = False
    payment_dispute_lost_at: AwareDatetime | None = None
    currency: Currency
    total_amount_cents: Cents
    total_due_amount_cents: Cents | None = None
    total_paid_amount_cents: Cents = 0
    billing_entity_code: str | None = None
    self_billed: bool = False
    customer: Customer | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    voided_at: AwareDatetime | None = None

    @property
    def due_cents(self) -> int:
        """What is still owed. Older Lago versions lack `total_due_amount_cents`."""
        if self.total_due_amount_cents is not None:
            return self.total_due_amount_cents
        return self.total_amount_cents - self.total_paid_amount_cents


class Payment(LagoModel):
    lago_id: str
    invoice_ids: list[str] = Field(default_factory=list)
    lago_payable_id: str | None = None
    payable_type: str | None = None
    external_customer_id: str | None = None
    amount_cents: Cents
    amount_currency: Currency
    payment_status: PaymentStatus | None = None
    status: str | None = None
    type: str | None = None
    reference: str | None = None
    created_at: AwareDatetime


class PaymentReceipt(LagoModel):
    lago_id: str
    number: str | None = None
    payment: Payment
    created_at: AwareDatetime


class PaymentRequest(LagoModel):
    lago_id: str
    email: str | None = None
    amount_cents: Cents
    amount_currency: Currency
    payment_status: PaymentStatus
    created_at: AwareDatetime
    customer: Customer | None = None
    invoices: list[Invoice] = Field(default_factory=list)

    @property
    def invoice_ids(self) -> frozenset[str]:
        return frozenset(invoice.lago_id for invoice in self.invoices)


class PageMeta(LagoModel):
    current_page: int
    next_page: int | None = None
    prev_page: int | None = None
    total_pages: int
    total_count: int


@dataclass(frozen=True, slots=True)
class MalformedRecord:
    """One listed item that failed validation; the listing goes on without it.

    `error` is one line with the field path, e.g.
    "invoices[3].total_amount_cents: Input should be a valid integer".
    """

    lago_id: str | None
    index: int
    page: int
    error: str
