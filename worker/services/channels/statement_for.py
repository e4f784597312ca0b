"""From Lago invoices to the statement an email lists (shared by sending and previewing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from email.utils import getaddresses, parseaddr

from config.policies import is_email
from worker.lago.models import Customer, Invoice
from worker.mail.statement import Statement, StatementLine

OWED_PAYMENT_STATUSES = frozenset({"pending", "failed"})


def still_owed(invoice: Invoice) -> bool:
    """Finalized, not paid, something due: worth listing (and retrying) now."""
    return bool(
        invoice.status == "finalized"
        and invoice.payment_status in OWED_PAYMENT_STATUSES
        and (invoice.total_due_amount_cents or 0) > 0
    )


def recipients(*candidates: str | None) -> tuple[str, ...]:
    """The addresses of the first candidate that has any (Lago allows `a@x, b@y`)."""
    for candidate in candidates:
        if not candidate:
            continue
        found = [addr for _, addr in getaddresses([candidate]) if is_email(addr)]
        if found:
            return tuple(dict.fromkeys(found))
    return ()


def company_name(sender: str) -> str:
    """`Acme Billing <billing@acme.example>` -> `Acme Billing` (the sign-off)."""
    name, _ = parseaddr(sender)
    return name


def _oldest_first(invoice: Invoice) -> tuple[str, str]:
    due = invoice.payment_due_date.isoformat() if invoice.payment_due_date else "9999"
    return due, invoice.number


def build_statement(
    invoices: Iterable[Invoice],
    customer: Customer | None,
    *,
    external_customer_id: str,
    links: Mapping[str, str] | None = None,
    retried: Iterable[str] = (),
    company: str = "",
    reply_to: str | None = None,
) -> Statement:
    links = links or {}
    retried_ids = set(retried)
    lines = tuple(
        StatementLine(
            lago_id=invoice.lago_id,
            number=invoice.number or invoice.lago_id,
            currency=invoice.currency or "",
            amount_due_cents=invoice.total_due_amount_cents or 0,
            due_date=invoice.payment_due_date,
            payment_url=links.get(invoice.lago_id),
            retried=invoice.lago_id in retried_ids,
        )
        for invoice in sorted(invoices, key=_oldest_first)
    )
    name = (customer.name if customer else None) or external_customer_id
    return Statement(
        customer_name=name,
        external_customer_id=external_customer_id,
        invoices=lines,
        company=company,
        reply_to=reply_to,
    )
