"""From a parsed Lago invoice to the facts the pure policy layer judges it on.

One adapter, so the listing, the 405 refresh and reconciliation all read an invoice the same
way (and the amount due is computed by one formula: `worker.policy.eligibility`).
"""

from __future__ import annotations

from datetime import datetime

from worker.lago.models import Invoice
from worker.policy.eligibility import ListedInvoice, Verdict, amount_due_cents, judge_invoice


def listed_invoice(invoice: Invoice) -> ListedInvoice:
    customer = invoice.customer
    return ListedInvoice(
        lago_id=invoice.lago_id,
        number=invoice.number,
        external_customer_id=customer.external_id if customer is not None else None,
        currency=invoice.currency,
        billing_entity_code=invoice.billing_entity_code,
        status=invoice.status,
        payment_status=invoice.payment_status,
        payment_overdue=invoice.payment_overdue,
        payment_due_date=invoice.payment_due_date,
        payment_dispute_lost_at=invoice.payment_dispute_lost_at,
        voided_at=invoice.voided_at,
        self_billed=invoice.self_billed,
        total_amount_cents=invoice.total_amount_cents,
        total_due_amount_cents=invoice.total_due_amount_cents,
        total_paid_amount_cents=invoice.total_paid_amount_cents,
        total_offsetted_credit_note_amount_cents=invoice.total_offsetted_credit_note_amount_cents,
    )


def due_cents(invoice: Invoice) -> int | None:
    """What is still owed on `invoice`, or None when Lago's answer does not tell."""
    return amount_due_cents(listed_invoice(invoice))


def judge(invoice: Invoice, now: datetime, *, only_customer: str | None = None) -> Verdict:
    """`judge_invoice` on a parsed Lago invoice."""
    return judge_invoice(listed_invoice(invoice), now, only_customer=only_customer)
