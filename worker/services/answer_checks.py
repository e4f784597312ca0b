"""Check a payment request Lago gave us against what we asked for, before we believe it.

A 200 from `POST /payment_requests` (or a request found in Lago while reconciling) counts as
ours only if it names our customer, our currency and a non-empty subset of the invoices we
asked about. Lago itself silently drops invoices of other customers (a subset is fine and is
recorded as such); anything else (another customer, another currency, no invoice, invoices we
never sent) is a request we cannot explain: the intent goes to `needs_review` and the answer
is never counted as an attempt.

The retry_and_email channel checks its answers the same way: an invoice read back must be the
one named, of our customer (`check_invoice`: else it is neither retried nor listed); a payment
link must name our invoice and be an http(s) URL (`check_link`: else it is not used).
`retry_payment` answers an empty 200: nothing to check.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.lago.models import Invoice, InvoicePaymentDetails, PaymentRequest


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why an answer is not ours. `problem` is a stable code (a metric label)."""

    problem: str
    detail: str


def check_answer(
    request: PaymentRequest,
    *,
    external_customer_id: str,
    currency: str,
    invoice_ids: Collection[str],
) -> Mismatch | None:
    """None when `request` is an answer to what we asked; else what is wrong with it."""
    named = request.external_customer_id
    if named != external_customer_id:
        return Mismatch(
            "other_customer",
            f"payment request {request.lago_id} names customer {named or '(none)'}, "
            f"not {external_customer_id}",
        )
    if request.amount_currency != currency:
        return Mismatch(
            "other_currency",
            f"payment request {request.lago_id} is in {request.amount_currency or '(none)'}, "
            f"not {currency}",
        )
    got = request.invoice_ids
    if not got:
        return Mismatch("no_invoices", f"payment request {request.lago_id} names no invoice")
    extra = got - frozenset(invoice_ids)
    if extra:
        return Mismatch(
            "other_invoices",
            f"payment request {request.lago_id} names {len(extra)} invoice(s) we did not ask "
            f"for (e.g. {sorted(extra)[0]})",
        )
    return None


def check_link(
    details: InvoicePaymentDetails, *, lago_id: str, external_customer_id: str
) -> Mismatch | None:
    """A payment link counts only if it names our invoice (and, when given, our customer)
    and is an http(s) URL."""
    if details.lago_invoice_id != lago_id:
        return Mismatch(
            "other_invoice", f"the link names invoice {details.lago_invoice_id}, not {lago_id}"
        )
    named = details.external_customer_id
    if named is not None and named != external_customer_id:
        return Mismatch("other_customer", f"the link names customer {named}")
    url = urlsplit(details.payment_url or "")
    if url.scheme not in ("https", "http") or not url.netloc:
        return Mismatch("no_url", "the link answer has no http(s) payment_url")
    return None


def check_invoice(invoice: Invoice, *, lago_id: str, external_customer_id: str) -> Mismatch | None:
    """An invoice read back counts only if it is the one we named, of our customer."""
    if invoice.lago_id != lago_id:
        return Mismatch("other_invoice", f"asked for invoice {lago_id}, got {invoice.lago_id}")
    named = invoice.customer.external_id if invoice.customer is not None else None
    if named != external_customer_id:
        return Mismatch("other_customer", f"invoice {lago_id} names customer {named or '(none)'}")
    return None
