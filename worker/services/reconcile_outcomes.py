"""Reconcile outcomes: what happened after we asked a customer to pay.

For every sent or adopted intent that is not settled yet, look at its invoices and decide an
outcome: paid, partially_paid, failed, voided, disputed or open. Lago does not update a
payment request's status when its invoices are paid another way (manual payment, invoice
update), so the invoices are the truth; the payment request only adds "the charge failed"
or "the charge succeeded".

Budget rules (design.md §2):
- only intents that are due for a check are looked at (`intent_outcome_checks.next_check_at`,
  backing off from 15 minutes to a day), at most `limit` of them per call cost API calls;
- an intent whose invoices the sweep still saw in the overdue listing (`still_overdue`) is
  unpaid: no GET, just a later check;
- an invoice missing from a listing is never taken as paid: it is confirmed with
  `GET /api/v1/invoices/{id}` first.

When all dunned invoices are settled and some were paid, the outcome is `paid`, the amount
recovered since the request is recorded, and the group's attempt counter is reset (Lago's own
rule: a paid dunned invoice resets the dunning counter). The same write path serves webhooks
(`apply_webhook`), so both agree on what an outcome means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy import Table, and_, case, exists, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.expression import Exists

from worker import metrics
from worker.lago.errors import LagoError, LagoNotFoundError
from worker.lago.models import Invoice
from worker.logging import get_logger
from worker.services.invoice_facts import due_cents
from worker.services.runtime import Runtime
from worker.store._dialect import insert_for
from worker.store.db import read_session, write_tx
from worker.store.group_states import reset_group
from worker.store.intents import set_outcome
from worker.store.models import PaymentRequestIntent
from worker.store.outcome_checks import IntentOutcomeCheck, schedule_check

log = get_logger(__name__)

Outcome = Literal["paid", "partially_paid", "failed", "voided", "disputed", "open"]
CheckMethod = Literal["get", "listing", "webhook"]

# Intents whose outcome is still being tracked.
TRACKED_STATUSES = ("sent", "adopted")
_IN_CHUNK = 500
CHECK_BACKOFF = (
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=12),
    timedelta(hours=24),
)
DEFAULT_LIMIT = 50


def next_check_delay(checks_done: int) -> timedelta:
    """15 min, 1 h, 4 h, 12 h, then daily: most payments land soon after a request."""
    return CHECK_BACKOFF[min(max(checks_done, 0), len(CHECK_BACKOFF) - 1)]


# -- the pure part --------------------------------------------------------------------------


InvoiceState = Literal["paid", "voided", "disputed", "open"]


def invoice_state(invoice: Invoice) -> InvoiceState:
    if invoice.status == "voided" or invoice.voided_at is not None:
        return "voided"
    if invoice.payment_dispute_lost_at is not None:
        return "disputed"
    due = due_cents(invoice)
    if invoice.payment_status == "succeeded" or (due is not None and due <= 0):
        return "paid"
    return "open"


def _unpaid_cents(invoice: Invoice, *, fallback: int) -> int:
    """What is left unpaid on an invoice; `fallback` when Lago's answer does not tell (an
    unknown amount is never counted as recovered)."""
    due = due_cents(invoice)
    if due is not None:
        return max(due, 0)
    if invoice.total_amount_cents is not None:
        return max(invoice.total_amount_cents - (invoice.total_paid_amount_cents or 0), 0)
    return max(fallback, 0)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The outcome of one intent from the current state of its invoices.

    `final` = every dunned invoice is settled (paid, voided or dispute lost): no more checks.
    """

    outcome: Outcome
    recovered_cents: int
    final: bool


def assess_outcome(
    asked_cents: int,
    invoices: Sequence[Invoice],
    *,
    request_status: str | None = None,
    request_failed: bool = False,
) -> Assessment:
    """Decide the outcome of a request that asked for `asked_cents` on `invoices`.

    Recovered = what was asked minus what is still due, minus what was written off (voided or
    dispute lost, counted at what was left unpaid on them). A request whose charge succeeded
    (`request_status == "succeeded"`) recovered at least what it asked for.
    """
    if request_status == "succeeded":
        return Assessment("paid", max(asked_cents, 0), True)
    states = [invoice_state(invoice) for invoice in invoices]
    still_due = sum(
        _unpaid_cents(invoice, fallback=asked_cents)
        for invoice, state in zip(invoices, states, strict=True)
        if state == "open"
    )
    written_off = sum(
        max(
            (invoice.total_amount_cents or 0) - (invoice.total_paid_amount_cents or 0),
            0,
        )
        for invoice, state in zip(invoices, states, strict=True)
        if state in ("voided", "disputed")
    )
    recovered = max(asked_cents - still_due - written_off, 0)
    if "open" not in states:
        if "paid" in states:
            return Assessment("paid", recovered, True)
        if "disputed" in states:
            return Assessment("disputed", 0, True)
        return Assessment("voided", 0, True)
    if recovered > 0:
        return Assessment("partially_paid", recovered, False)
    if request_failed or request_status == "failed":
        return Assessment("failed", 0, False)
    return Assessment("open", 0, False)


# -- reading the ledger ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackedIntent:
    """What reconciliation needs of one intent (read in a short transaction)."""

    id: int
    group_key: str
    external_customer_id: str
    currency: str
    invoice_ids: tuple[str, ...]
    amount_cents: int
    lago_payment_request_id: str | None
    outcome: str | None
    superseded: bool

    @classmethod
    def from_row(cls, row: PaymentRequestIntent, *, superseded: bool = False) -> TrackedIntent:
        # Our invoice set: the one `amount_cents` was computed from. (An adopted request may
        # cover other invoices too; Lago may have dropped some: either way we judge ours.)
        ids = row.invoice_ids
        return cls(
            id=row.id,
            group_key=row.group_key,
            external_customer_id=row.external_customer_id,
            currency=row.currency,
            invoice_ids=tuple(sorted(ids)),
            amount_cents=row.amount_cents,
            lago_payment_request_id=row.lago_payment_request_id,
            outcome=row.outcome,
            superseded=superseded,
        )


def superseded_clause() -> Exists:
    newer = aliased(PaymentRequestIntent)
    return exists().where(
        newer.group_key == PaymentRequestIntent.group_key,
        newer.id > PaymentRequestIntent.id,
        newer.status.in_(TRACKED_STATUSES),
    )


#: Rows fetched at a time when scanning every unsettled intent.
_STREAM_ROWS = 1000


def left_the_listing(session: Session, *, still_overdue: AbstractSet[str], cap: int) -> list[int]:
    """Unsettled sent/adopted intents with an invoice the overdue listing no longer shows.

    Something changed for them (paid, voided, disputed... or a paging gap): they are checked
    now, whatever their backoff says. At most `cap` ids.
    """
    found: list[int] = []
    # Streamed a thousand rows at a time (a server-side cursor on PostgreSQL): a ledger
    # keeps months of unsettled requests, and none of them needs to be in memory at once.
    rows = session.execute(
        select(PaymentRequestIntent.id, PaymentRequestIntent.invoice_ids)
        .where(
            PaymentRequestIntent.status.in_(TRACKED_STATUSES),
            PaymentRequestIntent.resolved_at.is_(None),
        )
        .execution_options(yield_per=_STREAM_ROWS)
    )
    with rows:  # closes the cursor when the cap stops the scan early
        for intent_id, invoice_ids in rows:
            if any(invoice_id not in still_overdue for invoice_id in invoice_ids):
                found.append(int(intent_id))
                if len(found) >= cap:
                    break
    return found


def due_intents(
    session: Session, *, now: datetime, limit: int, also: Sequence[int] = ()
) -> list[TrackedIntent]:
    """Unsettled sent/adopted intents due for a check (plus those in `also`, first), the
    longest-waiting first."""
    superseded = superseded_clause().label("superseded")
    statement = (
        select(PaymentRequestIntent, superseded)
        .outerjoin(IntentOutcomeCheck, IntentOutcomeCheck.intent_id == PaymentRequestIntent.id)
        .where(
            PaymentRequestIntent.status.in_(TRACKED_STATUSES),
            PaymentRequestIntent.resolved_at.is_(None),
            or_(
                PaymentRequestIntent.id.in_(list(also)),
                IntentOutcomeCheck.intent_id.is_(None),
                and_(
                    IntentOutcomeCheck.next_check_at.is_not(None),
                    IntentOutcomeCheck.next_check_at <= now,
                ),
            ),
        )
        .order_by(
            PaymentRequestIntent.id.in_(list(also)).desc(),
            IntentOutcomeCheck.next_check_at.asc().nulls_first(),
            PaymentRequestIntent.id,
        )
        .limit(limit)
    )
    return [
        TrackedIntent.from_row(row, superseded=bool(is_superseded))
        for row, is_superseded in session.execute(statement).all()
    ]


def unsettled_intents_of(
    session: Session, *, external_customer_id: str | None, invoice_ids: Iterable[str]
) -> list[TrackedIntent]:
    """The latest unsettled sent/adopted intent of each group covering any of `invoice_ids`.

    An older attempt superseded by a newer one for the same group is left out: a payment
    after attempt 2 is credited to attempt 2 only.
    """
    wanted = set(invoice_ids)
    statement = select(PaymentRequestIntent).where(
        PaymentRequestIntent.status.in_(TRACKED_STATUSES),
        PaymentRequestIntent.resolved_at.is_(None),
        ~superseded_clause(),
    )
    if external_customer_id is not None:
        statement = statement.where(
            PaymentRequestIntent.external_customer_id == external_customer_id
        )
    rows = session.execute(statement.order_by(PaymentRequestIntent.id)).scalars().all()
    return [
        TrackedIntent.from_row(row)
        for row in rows
        if wanted & (set(row.invoice_ids) | set(row.lago_invoice_ids or ()))
    ]


# -- writing an outcome ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """One outcome assessed for the ledger (for logs and metrics after commit). `changed` is
    False when the ledger already held exactly this outcome: nothing to count again."""

    intent_id: int
    currency: str
    outcome: Outcome
    recovered_cents: int
    newly_recovered_cents: int
    final: bool
    group_reset: bool
    changed: bool = True


def record_assessment(
    session: Session,
    intent_id: int,
    assessment: Assessment,
    *,
    now: datetime,
    checked: bool = True,
    next_check_at: datetime | None = None,
    reschedule_unchanged: bool = True,
) -> Recorded | None:
    """Write `assessment` on the intent (inside the caller's write transaction).

    Returns None when there is nothing to do: the intent is gone, not tracked, or already
    settled (e.g. a webhook got there first). A final `paid` outcome resets the group.
    `next_check_at` is ignored for final outcomes (no more checks).

    An assessment equal to what the ledger holds (same outcome, nothing more recovered) is
    returned with `changed=False` and not written again; only its check is rescheduled,
    unless `reschedule_unchanged` is False (a webhook repeating known news changes nothing).
    """
    intent = session.get(PaymentRequestIntent, intent_id)
    if intent is None or intent.status not in TRACKED_STATUSES or intent.resolved_at is not None:
        return None
    previous = intent.recovered_cents or 0
    # Partial payments only grow; a later listing or webhook never lowers what was recorded.
    recovered = max(assessment.recovered_cents, previous)
    changed = assessment.final or assessment.outcome != intent.outcome or recovered != previous
    if changed:
        set_outcome(
            session,
            intent_id=intent_id,
            outcome=assessment.outcome,
            recovered_cents=recovered if recovered > 0 or assessment.final else None,
            now=now,
            resolved=assessment.final,
        )
    if changed or reschedule_unchanged:
        schedule_check(
            session,
            intent_id,
            next_check_at=None if assessment.final else next_check_at,
            checked_at=now if checked else None,
        )
    group_reset = assessment.final and assessment.outcome == "paid"
    if group_reset:
        # Lago's rule: paid dunned invoices start the group's dunning cycle over.
        reset_group(
            session,
            external_customer_id=intent.external_customer_id,
            currency=intent.currency,
            billing_entity_code=intent.billing_entity_code,
            now=now,
        )
    return Recorded(
        intent_id=intent_id,
        currency=intent.currency,
        outcome=assessment.outcome,
        recovered_cents=recovered,
        newly_recovered_cents=recovered - previous,
        final=assessment.final,
        group_reset=group_reset,
        changed=changed,
    )


def publish(recorded: Iterable[Recorded], *, source: str) -> None:
    """Metrics and logs for outcomes that were committed; each change counted once."""
    for item in recorded:
        if item.outcome == "open" or not item.changed:
            continue
        metrics.record_outcome(
            item.outcome,
            source=source,
            currency=item.currency,
            recovered_cents=item.newly_recovered_cents,
        )
        log.info(
            "intent outcome recorded",
            intent_id=item.intent_id,
            outcome=item.outcome,
            recovered_cents=item.recovered_cents,
            final=item.final,
            group_reset=item.group_reset,
            source=source,
        )


# -- talking to Lago ------------------------------------------------------------------------


class InvoiceLookupError(Exception):
    """An invoice could not be confirmed with Lago (one line, no secrets)."""


def fetch_invoices(
    rt: Runtime, invoice_ids: Iterable[str], *, known: Mapping[str, Invoice] | None = None
) -> dict[str, Invoice]:
    """The invoices by id: taken from `known` when given, else one GET each."""
    found: dict[str, Invoice] = dict(known or {})
    for invoice_id in invoice_ids:
        if invoice_id in found:
            continue
        try:
            found[invoice_id] = rt.client.get_invoice(invoice_id)
        except LagoNotFoundError:
            raise InvoiceLookupError(f"invoice {invoice_id} not found in Lago") from None
        except LagoError as exc:
            raise InvoiceLookupError(f"cannot read invoice {invoice_id}: {exc}") from None
    return found


def request_status(rt: Runtime, lago_payment_request_id: str | None) -> str | None:
    """The payment request's own status (provider charge), or None if unknown."""
    if lago_payment_request_id is None:
        return None
    try:
        return rt.client.get_payment_request(lago_payment_request_id).payment_status
    except LagoError as exc:
        log.warning(
            "cannot read payment request status",
            lago_payment_request_id=lago_payment_request_id,
            error=str(exc),
        )
        return None


# -- the service ----------------------------------------------------------------------------


@dataclass(slots=True)
class ReconcileSummary:
    examined: int = 0
    confirmed_by_get: int = 0
    still_overdue: int = 0
    superseded: int = 0
    paid: int = 0
    partially_paid: int = 0
    failed: int = 0
    voided: int = 0
    disputed: int = 0
    open: int = 0
    groups_reset: int = 0
    recovered_cents: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    deferred: int = 0

    def count(self, item: Recorded) -> None:
        setattr(self, item.outcome, getattr(self, item.outcome) + 1)
        if item.group_reset:
            self.groups_reset += 1
        if item.newly_recovered_cents:
            self.recovered_cents[item.currency] = (
                self.recovered_cents.get(item.currency, 0) + item.newly_recovered_cents
            )


def reconcile_outcomes(
    rt: Runtime,
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    still_overdue: AbstractSet[str] | None = None,
) -> ReconcileSummary:
    """Check the outcome of up to `limit` due intents (those needing Lago calls).

    `still_overdue`: invoice ids the caller's sweep just saw in the overdue listing; an intent
    whose invoices are all in it is recorded as still open without any API call (and does
    not count against `limit`).
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    now = now or rt.clock()
    summary = ReconcileSummary()
    scan = limit if still_overdue is None else limit * 10
    with read_session(rt.engine) as session:
        changed = (
            []
            if still_overdue is None
            else left_the_listing(session, still_overdue=still_overdue, cap=limit)
        )
        candidates = due_intents(session, now=now, limit=scan, also=changed)
        checks = {
            check.intent_id: check.checks
            for check in session.execute(
                select(IntentOutcomeCheck).where(
                    IntentOutcomeCheck.intent_id.in_([c.id for c in candidates])
                )
            ).scalars()
        }
    superseded = [intent for intent in candidates if intent.superseded]
    unsettled = [intent for intent in candidates if not intent.superseded]
    in_listing = [
        intent
        for intent in unsettled
        if still_overdue is not None and set(intent.invoice_ids) <= still_overdue
    ]
    listed_ids = {intent.id for intent in in_listing}
    to_confirm = [intent for intent in unsettled if intent.id not in listed_ids]
    summary.examined = len(candidates)
    # No API call for these: one short transaction for all of them.
    if superseded or in_listing:
        with write_tx(rt.engine) as session:
            for intent in superseded:
                _close_superseded(session, intent, now=now)
            _note_still_overdue(session, in_listing, checks=checks, now=now)
    for intent in in_listing:
        outcome = _keep_open(intent.outcome)
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    summary.superseded = len(superseded)
    summary.still_overdue = len(in_listing)
    metrics.record_check("listing", len(in_listing))
    for intent in to_confirm[:limit]:
        delay = next_check_delay(checks.get(intent.id, 0))
        _check_with_lago(rt, intent, now=now, delay=delay, summary=summary)
    summary.deferred = max(len(to_confirm) - limit, 0)
    log.info(
        "outcomes reconciled",
        examined=summary.examined,
        confirmed_by_get=summary.confirmed_by_get,
        paid=summary.paid,
        partially_paid=summary.partially_paid,
        groups_reset=summary.groups_reset,
        errors=summary.errors,
    )
    return summary


def _note_still_overdue(
    session: Session, intents: Sequence[TrackedIntent], *, checks: Mapping[int, int], now: datetime
) -> None:
    """`record_assessment` of "still open" for many intents at once (no money moved, no
    reset): two multi-row statements instead of a read and two writes per intent."""
    if not intents:
        return
    table = cast("Table", PaymentRequestIntent.__table__)
    kept = case((table.c.outcome.in_(("failed", "partially_paid")), table.c.outcome), else_="open")
    ids = [intent.id for intent in intents]
    for start in range(0, len(ids), _IN_CHUNK):
        session.execute(
            update(table)
            .where(
                table.c.id.in_(ids[start : start + _IN_CHUNK]),
                table.c.status.in_(TRACKED_STATUSES),
                table.c.resolved_at.is_(None),
            )
            .values(outcome=kept, updated_at=now)
        )
    check_table = cast("Table", IntentOutcomeCheck.__table__)
    statement = insert_for(session, check_table)
    statement = statement.on_conflict_do_update(
        index_elements=["intent_id"],
        set_={
            "next_check_at": statement.excluded.next_check_at,
            "last_checked_at": statement.excluded.last_checked_at,
            "last_error": None,
            "checks": check_table.c.checks + 1,
        },
    )
    session.execute(
        statement,
        [
            {
                "intent_id": intent.id,
                "next_check_at": now + next_check_delay(checks.get(intent.id, 0)),
                "last_checked_at": now,
                "last_error": None,
                "checks": 1,
            }
            for intent in intents
        ],
    )


def _keep_open(outcome: str | None) -> Outcome:
    """A still-overdue intent keeps a known failure or partial payment, else is open."""
    if outcome == "failed":
        return "failed"
    if outcome == "partially_paid":
        return "partially_paid"
    return "open"


def _check_with_lago(
    rt: Runtime,
    intent: TrackedIntent,
    *,
    now: datetime,
    delay: timedelta,
    summary: ReconcileSummary,
) -> None:
    try:
        invoices = fetch_invoices(rt, intent.invoice_ids)
    except InvoiceLookupError as exc:
        summary.errors += 1
        log.warning("outcome check failed", intent_id=intent.id, error=str(exc))
        with write_tx(rt.engine) as session:
            schedule_check(
                session, intent.id, next_check_at=now + delay, checked_at=now, error=str(exc)[:500]
            )
        return
    ordered = [invoices[invoice_id] for invoice_id in intent.invoice_ids]
    assessment = assess_outcome(
        intent.amount_cents, ordered, request_failed=intent.outcome == "failed"
    )
    if not assessment.final and assessment.recovered_cents == 0:
        # Invoices untouched: the provider charge may still have succeeded or failed.
        status = request_status(rt, intent.lago_payment_request_id)
        if status is not None:
            assessment = assess_outcome(
                intent.amount_cents,
                ordered,
                request_status=status,
                request_failed=intent.outcome == "failed",
            )
    with write_tx(rt.engine) as session:
        recorded = record_assessment(
            session, intent.id, assessment, now=now, next_check_at=now + delay
        )
    summary.confirmed_by_get += 1
    metrics.record_check("get")
    if recorded is not None:
        summary.count(recorded)
        publish([recorded], source="reconcile")


def _close_superseded(session: Session, intent: TrackedIntent, *, now: datetime) -> None:
    """A newer attempt for the group took over: stop checking this one (credit goes there)."""
    row = session.get(PaymentRequestIntent, intent.id)
    if row is not None and row.outcome is None:
        row.outcome = "open"
        row.updated_at = now
    schedule_check(session, intent.id, next_check_at=None, checked_at=None)
