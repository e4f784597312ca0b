"""Is one listed invoice provably one we may ask a customer to pay? Pure: `now` is passed in.

The listing's filters (`status=finalized&payment_overdue=true&...`) are an optimisation, never
a guarantee: Lago versions differ, some ignore filters, some send values our models do not
know. So every invoice is judged from its own fields before it joins a group. The checks run
in this order; the first that fails names the skip:

 1. no_customer             the invoice carries no customer external id
 2. other_customer          a one-customer sweep was answered with another customer's invoice
 3. no_currency             no ISO 4217 currency code
 4. not_finalized           status is not `finalized` (draft, voided, deleted, unknown...), or
                            the invoice has a `voided_at`
 5. dispute_lost            `payment_dispute_lost_at` is set
 6. self_billed             a self-billed invoice (Lago's campaigns never dun those either)
 7. already_paid            payment_status `succeeded`
 8. payment_in_flight       payment_status `processing` (a payment is under way: wait)
 9. payment_status_unknown  payment_status missing or a value we do not know
10. not_overdue             `payment_overdue` is false, or (absent) the due date is not before
                            today in UTC, or there is neither
11. amount_unknown          the amount due cannot be known (see `amount_due_cents`)
12. nothing_due             nothing is left to pay
13. eligible

An unknown value is never eligible: "not provably eligible" is a reasoned skip, never a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from worker.policy.types import Reason

_CURRENCY = re.compile(r"^[A-Z]{3}$")
UNPAID_STATUSES = frozenset({"pending", "failed"})
IN_FLIGHT_STATUSES = frozenset({"processing"})

#: The reasons `judge_invoice` can give, in check order (eligible last).
INVOICE_REASONS: tuple[Reason, ...] = (
    Reason.NO_CUSTOMER,
    Reason.OTHER_CUSTOMER,
    Reason.NO_CURRENCY,
    Reason.NOT_FINALIZED,
    Reason.DISPUTE_LOST,
    Reason.SELF_BILLED,
    Reason.ALREADY_PAID,
    Reason.PAYMENT_IN_FLIGHT,
    Reason.PAYMENT_STATUS_UNKNOWN,
    Reason.NOT_OVERDUE,
    Reason.AMOUNT_UNKNOWN,
    Reason.NOTHING_DUE,
    Reason.ELIGIBLE,
)


@dataclass(frozen=True, slots=True)
class ListedInvoice:
    """An invoice's own fields as Lago sent them; `None` = the field was absent (or null).

    Values are kept raw (an unknown status is a string like any other) so a new Lago version
    never makes a row unreadable; `judge_invoice` decides what they mean.
    """

    lago_id: str
    number: str = ""
    external_customer_id: str | None = None
    currency: str | None = None
    billing_entity_code: str | None = None
    status: str | None = None
    payment_status: str | None = None
    payment_overdue: bool | None = None
    payment_due_date: date | None = None
    payment_dispute_lost_at: datetime | None = None
    voided_at: datetime | None = None
    self_billed: bool | None = None
    total_amount_cents: int | None = None
    total_due_amount_cents: int | None = None
    total_paid_amount_cents: int | None = None
    total_offsetted_credit_note_amount_cents: int | None = None


def amount_due_cents(invoice: ListedInvoice) -> int | None:
    """What is still owed, the way Lago computes `Invoice#total_due_amount_cents`.

    Lago: 0 if voided, else `total_amount_cents - total_paid_amount_cents -
    offset_amount_cents` (finalized credit notes' offsets). When Lago did not send the total
    due, it is derived from those three fields; if any of them is missing the amount cannot
    be known and None is returned (never guessed: a missing payment is not "no payment").
    """
    if invoice.total_due_amount_cents is not None:
        return invoice.total_due_amount_cents
    if invoice.status == "voided" or invoice.voided_at is not None:
        return 0
    total = invoice.total_amount_cents
    paid = invoice.total_paid_amount_cents
    offset = invoice.total_offsetted_credit_note_amount_cents
    if total is None or paid is None or offset is None:
        return None
    return total - paid - offset


@dataclass(frozen=True, slots=True)
class Verdict:
    """`judge_invoice`'s answer. `due_cents` is set when the amount due is known."""

    reason: Reason
    detail: str
    due_cents: int | None = None

    @property
    def eligible(self) -> bool:
        return self.reason is Reason.ELIGIBLE


def _overdue(invoice: ListedInvoice, today: date) -> str | None:
    """Why the invoice is not provably overdue, or None when it is."""
    if invoice.payment_overdue is True:
        return None
    if invoice.payment_overdue is False:
        return "payment_overdue is false"
    if invoice.payment_due_date is None:
        return "neither payment_overdue nor payment_due_date was sent"
    if invoice.payment_due_date < today:
        return None
    return f"payment_overdue was not sent and it is due {invoice.payment_due_date.isoformat()}"


def judge_invoice(
    invoice: ListedInvoice, now: datetime, *, only_customer: str | None = None
) -> Verdict:
    """Judge one invoice at `now` (timezone-aware). `only_customer`: the sweep asked for that
    customer only, so another customer's invoice is not ours to judge."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    name = invoice.number or invoice.lago_id
    customer = invoice.external_customer_id
    if not customer:
        return Verdict(Reason.NO_CUSTOMER, f"invoice {name} names no customer")
    if only_customer is not None and customer != only_customer:
        return Verdict(Reason.OTHER_CUSTOMER, f"invoice {name} belongs to {customer}")
    if invoice.currency is None or not _CURRENCY.match(invoice.currency):
        return Verdict(Reason.NO_CURRENCY, f"invoice {name} has no valid currency")
    if invoice.status != "finalized" or invoice.voided_at is not None:
        status = "voided" if invoice.voided_at is not None else (invoice.status or "missing")
        return Verdict(Reason.NOT_FINALIZED, f"invoice {name} is {status}, not finalized")
    if invoice.payment_dispute_lost_at is not None:
        return Verdict(Reason.DISPUTE_LOST, f"invoice {name} lost a payment dispute")
    if invoice.self_billed is True:
        return Verdict(Reason.SELF_BILLED, f"invoice {name} is self-billed")
    payment_status = invoice.payment_status
    if payment_status == "succeeded":
        return Verdict(Reason.ALREADY_PAID, f"invoice {name} is paid")
    if payment_status in IN_FLIGHT_STATUSES:
        return Verdict(Reason.PAYMENT_IN_FLIGHT, f"invoice {name} has a payment {payment_status}")
    if payment_status not in UNPAID_STATUSES:
        shown = repr(payment_status) if payment_status is not None else "missing"
        return Verdict(Reason.PAYMENT_STATUS_UNKNOWN, f"invoice {name} has payment_status {shown}")
    why_not = _overdue(invoice, now.astimezone(UTC).date())
    if why_not is not None:
        return Verdict(Reason.NOT_OVERDUE, f"invoice {name}: {why_not}")
    due = amount_due_cents(invoice)
    if due is None:
        return Verdict(
            Reason.AMOUNT_UNKNOWN,
            f"invoice {name}: the amount due cannot be known (total_due_amount_cents "
            "missing and not derivable)",
        )
    if due <= 0:
        return Verdict(Reason.NOTHING_DUE, f"invoice {name} has nothing left to pay", due)
    return Verdict(Reason.ELIGIBLE, f"invoice {name} is overdue with {due} cents due", due)
