"""Turn the overdue-invoice stream into dunning groups, keeping only what decisions need.

A group is one customer's overdue invoices in one currency for one billing entity (Lago
requires one currency and one billing entity per payment request). Each listed invoice is
reduced to an `InvoiceFacts` and its customer to one shared `CustomerFacts`; the pydantic
objects are dropped as soon as they are read, so memory holds slim facts, not API graphs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.lago.models import Customer, Invoice, MalformedRecord
from worker.policy.types import CustomerFacts, Group, InvoiceFacts

GroupId = tuple[str, str, str | None]  # (external customer id, currency, billing entity code)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record of Lago's answer that could not be used; the sweep records it as a skip."""

    lago_id: str | None
    external_customer_id: str | None
    error: str


@dataclass(slots=True)
class CollectedGroups:
    groups: list[Group] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    invoices_seen: int = 0
    nothing_due: int = 0
    overdue_invoice_ids: set[str] = field(default_factory=set)


def customer_facts(customer: Customer) -> CustomerFacts:
    return CustomerFacts(
        external_id=customer.external_id,
        email=customer.email or None,
        metadata=customer.metadata_dict(),
        customer_type=customer.customer_type,
        country=customer.country,
        timezone=customer.applicable_timezone or customer.timezone,
    )


def invoice_facts(invoice: Invoice) -> InvoiceFacts:
    return InvoiceFacts(
        lago_id=invoice.lago_id,
        number=invoice.number,
        currency=invoice.currency,
        payment_due_date=invoice.payment_due_date,
        total_due_amount_cents=invoice.due_cents,
        total_amount_cents=invoice.total_amount_cents,
    )


def collect_groups(
    items: Iterable[Invoice | MalformedRecord], *, customer: str | None = None
) -> CollectedGroups:
    """Group the stream. `customer` keeps only that external customer id (defensive: the
    listing is already filtered by it when given)."""
    result = CollectedGroups()
    customers: dict[str, CustomerFacts] = {}
    invoices: dict[GroupId, list[InvoiceFacts]] = {}
    for item in items:
        result.invoices_seen += 1
        if isinstance(item, MalformedRecord):
            result.malformed.append(Malformed(item.lago_id, None, item.error))
            continue
        if item.customer is None:
            result.malformed.append(
                Malformed(item.lago_id, None, f"invoice {item.lago_id} has no customer object")
            )
            continue
        external_id = item.customer.external_id
        if customer is not None and external_id != customer:
            continue
        if item.due_cents <= 0:
            result.nothing_due += 1
            continue
        if external_id not in customers:
            customers[external_id] = customer_facts(item.customer)
        result.overdue_invoice_ids.add(item.lago_id)
        key = (external_id, item.currency, item.billing_entity_code)
        invoices.setdefault(key, []).append(invoice_facts(item))
    for (external_id, currency, entity), facts in sorted(
        invoices.items(), key=lambda pair: (pair[0][0], pair[0][1], pair[0][2] or "")
    ):
        result.groups.append(
            Group(
                customer=customers[external_id],
                currency=currency,
                billing_entity_code=entity,
                invoices=tuple(facts),
            )
        )
    return result
