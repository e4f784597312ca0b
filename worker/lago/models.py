"""Pydantic models of the Lago objects the worker reads.

Tolerant parsing, strict decisions: Lago instances run many versions, so a value our models do
not know (a new payment status, invoice status, provider type) is kept as its raw string and
a field an older Lago does not send is `None`; no such row is ever lost. What those values
mean is decided elsewhere (`worker.policy.eligibility` for invoices), where "not provably
eligible" is a reasoned skip. Only what cannot be read at all (no id, an amount that is not an
integer) makes a row malformed.

Unknown fields are accepted and dropped (`extra="ignore"`). Amounts are integers in cents,
datetimes timezone-aware. Shapes follow Lago's serializers, which differ from the OpenAPI spec
in a few documented places (e.g. `total_due_amount_cents` exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Cents = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
#: The payment statuses a listing can be filtered on. Parsed objects keep any string.
PaymentStatus = Literal["pending", "succeeded", "failed"]


class LagoModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetadataItem(LagoModel):
    key: str
    value: str | None = None


class BillingConfiguration(LagoModel):
    """The part of a customer's billing configuration the worker reads."""

    payment_provider: str | None = None  # stripe | gocardless | adyen | ... or None
    payment_provider_code: str | None = None


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
    billing_configuration: BillingConfiguration | None = None
    metadata: list[MetadataItem] = Field(default_factory=list)

    @property
    def payment_provider(self) -> str | None:
        config = self.billing_configuration
        return config.payment_provider if config is not None else None

    def metadata_dict(self) -> dict[str, str]:
        return {item.key: item.value or "" for item in self.metadata}


class Invoice(LagoModel):
    """An invoice as listed. Everything but `lago_id` may be missing or an unknown value."""

    lago_id: Annotated[str, StringConstraints(min_length=1)]
    number: str = ""
    issuing_date: date | None = None
    payment_due_date: date | None = None
    net_payment_term: int | None = None
    invoice_type: str | None = None
    status: str | None = None
    payment_status: str | None = None
    payment_overdue: bool | None = None
    payment_dispute_lost_at: AwareDatetime | None = None
    currency: str | None = None
    total_amount_cents: Cents | None = None
    total_due_amount_cents: Cents | None = None
    total_paid_amount_cents: Cents | None = None
    total_offsetted_credit_note_amount_cents: Cents | None = None
    billing_entity_code: str | None = None
    self_billed: bool | None = None
    customer: Customer | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    voided_at: AwareDatetime | None = None


class Payment(LagoModel):
    lago_id: str
    invoice_ids: list[str] = Field(default_factory=list)
    lago_payable_id: str | None = None
    payable_type: str | None = None
    external_customer_id: str | None = None
    amount_cents: Cents
    amount_currency: Currency
    payment_status: str | None = None  # pending | succeeded | failed | processing | ...
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
    """A payment request. Only `lago_id` is required: an answer missing the rest is kept and
    then fails the checks made on it (`worker.services.answer_checks`), never the parse."""

    lago_id: Annotated[str, StringConstraints(min_length=1)]
    email: str | None = None
    amount_cents: Cents | None = None
    amount_currency: str | None = None
    payment_status: str | None = None  # pending | succeeded | failed today; any value is kept
    created_at: AwareDatetime | None = None
    customer: Customer | None = None
    invoices: list[Invoice] = Field(default_factory=list)

    @property
    def invoice_ids(self) -> frozenset[str]:
        return frozenset(invoice.lago_id for invoice in self.invoices)

    @property
    def external_customer_id(self) -> str | None:
        return self.customer.external_id if self.customer is not None else None


class InvoicePaymentDetails(LagoModel):
    """The answer of `POST /invoices/{lago_id}/payment_url` (root `invoice_payment_details`).
    Only `lago_invoice_id` is required: a missing URL fails the check made on it."""

    lago_invoice_id: Annotated[str, StringConstraints(min_length=1)]
    lago_customer_id: str | None = None
    external_customer_id: str | None = None
    payment_provider: str | None = None
    payment_url: str | None = None


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
    `external_customer_id` is read from the raw row when it can be (`customer.external_id`,
    or `external_customer_id`), so a skip can still name the customer.
    """

    lago_id: str | None
    index: int
    page: int
    error: str
    external_customer_id: str | None = None
