"""Check a payment request Lago gave us against what we asked for, before we believe it.

A 200 from `POST /payment_requests` (or a request found in Lago while reconciling) counts as
ours only if it names our customer, our currency and a non-empty subset of the invoices we
asked about. Lago itself silently drops invoices of other customers (a subset is fine and is
recorded as such); anything else (another customer, another currency, no invoice, invoices we
never sent) is a request we cannot explain: the intent goes to `needs_review` and the answer
is never counted as an attempt.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from worker.lago.models import PaymentRequest


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
