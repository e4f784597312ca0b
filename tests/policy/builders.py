"""Small builders for policy tests: a policy set from YAML text, groups from a few numbers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from config.policies import PolicySet, parse_policies
from worker.policy.types import CustomerFacts, Group, InvoiceFacts


def policy_set(policies_yaml: str, cron: str = "*/15 * * * *") -> PolicySet:
    """Parse a `policies:` list body (YAML, already indented by two spaces)."""
    text = f'version: 1\nschedule: {{cron: "{cron}"}}\npolicies:\n{policies_yaml}'
    return parse_policies(text, source="test.yaml")


def customer(
    external_id: str = "cust-1",
    *,
    email: str | None = "billing@customer.example",
    metadata: Mapping[str, str] | None = None,
    customer_type: str | None = "company",
    country: str | None = "US",
    timezone: str | None = "UTC",
) -> CustomerFacts:
    return CustomerFacts(
        external_id=external_id,
        email=email,
        metadata=dict(metadata or {}),
        customer_type=customer_type,
        country=country,
        timezone=timezone,
    )


def invoice(
    lago_id: str = "inv-1",
    *,
    due: int = 10_000,
    currency: str = "USD",
    due_date: date | None = date(2024, 3, 1),
) -> InvoiceFacts:
    return InvoiceFacts(
        lago_id=lago_id,
        number=f"N-{lago_id}",
        currency=currency,
        payment_due_date=due_date,
        total_due_amount_cents=due,
        total_amount_cents=max(due, 0),
    )


def group(
    *invoices: InvoiceFacts,
    who: CustomerFacts | None = None,
    currency: str = "USD",
    entity: str | None = "acme-us",
) -> Group:
    return Group(
        customer=who or customer(),
        currency=currency,
        billing_entity_code=entity,
        invoices=invoices or (invoice(),),
    )
