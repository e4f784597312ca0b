"""Render the dunning email(s) a customer would get, without sending anything.

Reads the customer's overdue invoices (one listing), groups them as a sweep does (currency
and billing entity), picks each group's policy and template (its next attempt) and renders
the same statement the `retry_and_email` channel sends. Payment links are not made (that
would ask the provider): the preview says where they go.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from worker.lago.filters import InvoiceFilters
from worker.lago.models import Customer, Invoice
from worker.mail.statement import Rendered, render
from worker.policy.matching import match_policy
from worker.services.channels.statement_for import (
    build_statement,
    company_name,
    recipients,
    still_owed,
)
from worker.services.collect_groups import customer_facts
from worker.services.runtime import Runtime
from worker.store import group_states
from worker.store.db import read_session

PREVIEW_LINK = "https://payment-link.example/made-when-sent"


@dataclass(frozen=True, slots=True)
class EmailPreview:
    currency: str
    billing_entity_code: str | None
    policy: str | None
    channel: str
    attempt_number: int
    to: tuple[str, ...]
    rendered: Rendered


def preview_emails(rt: Runtime, external_customer_id: str) -> list[EmailPreview]:
    """One preview per group of the customer's overdue invoices (none: an empty list)."""
    groups: dict[tuple[str, str | None], list[Invoice]] = defaultdict(list)
    customer: Customer | None = None
    for item in rt.client.iter_invoices(
        InvoiceFilters.overdue(external_customer_id=external_customer_id)
    ):
        if not isinstance(item, Invoice) or not still_owed(item):
            continue
        customer = customer or item.customer
        groups[(item.currency or "", item.billing_entity_code)].append(item)
    if customer is None:
        return []
    previews = []
    for (currency, entity), invoices in sorted(groups.items(), key=lambda kv: str(kv[0])):
        policy = match_policy(rt.policies, customer_facts(customer), currency, entity)
        ref = group_states.GroupRef(external_customer_id, currency, entity)
        with read_session(rt.engine) as session:
            state = group_states.load_group_states(session, groups=[ref])[ref.key]
        attempt = state.attempts_used + 1
        provider = customer.payment_provider
        links = {i.lago_id: PREVIEW_LINK for i in invoices} if provider else {}
        statement = build_statement(
            invoices,
            customer,
            external_customer_id=external_customer_id,
            links=links,
            retried=list(links) if provider else [],
            company=company_name(rt.settings.smtp_from),
            reply_to=rt.settings.smtp_reply_to,
        )
        template = policy.template_for(attempt) if policy else None
        previews.append(
            EmailPreview(
                currency=currency,
                billing_entity_code=entity,
                policy=policy.name if policy else None,
                channel=policy.channel if policy else "payment_request",
                attempt_number=attempt,
                to=recipients(customer.email),
                rendered=render(statement, template),
            )
        )
    return previews
