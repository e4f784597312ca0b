"""What the next sweep is expected to ask, from the ledger alone (no Lago call).

Two sources:
- retries: pending intents due by then (a 429, a payment in flight, an unknown outcome past
  its settle window), customers not paused;
- new attempts: groups the newest full sweep made wait (too soon, grace period, outside the
  send window, a contact cap, a hold) whose wait ends by then.
Invoices that become overdue meanwhile, or get paid, change the real sweep: this is the plan
as the ledger knows it, which is what an operator can act on.

`group_outlook` gives every group the newest full sweep decided on (invoice-level skips left
out) with what that decision says happens next: asked at the next sweep, waiting until a
time, or not dunned (and why).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.policy.eligibility import INVOICE_REASONS
from worker.store.ageing import latest_full_run_id
from worker.store.controls import active_pause_clause
from worker.store.models import CustomerControl, DecisionRow, PaymentRequestIntent

#: Decision reasons that end by themselves with time.
WAITING_REASONS = (
    "too_soon",
    "in_grace_period",
    "outside_send_window",
    "contact_cap",
    "on_hold_until",
)


@dataclass(frozen=True, slots=True)
class PlannedAsk:
    why: Literal["retry", "attempt"]
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    amount_cents: int
    policy: str | None
    due_at: datetime | None  # when it became (or becomes) due
    intent_id: int | None = None


@dataclass(frozen=True, slots=True)
class NextSweep:
    at: datetime | None  # the next scheduled sweep (None: not scheduled)
    based_on_run: int | None  # the full sweep whose decisions were used
    asks: tuple[PlannedAsk, ...]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Currency -> (requests, amount cents)."""
        result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for ask in self.asks:
            result[ask.currency][0] += 1
            result[ask.currency][1] += ask.amount_cents
        return {currency: (n, cents) for currency, (n, cents) in sorted(result.items())}


def next_sweep(session: Session, *, at: datetime | None, now: datetime) -> NextSweep:
    """The asks due by `at` (or by `now` when no sweep is scheduled)."""
    horizon = at or now
    # still paused when the next sweep runs (a hold ending before then no longer counts)
    paused = select(CustomerControl.external_customer_id).where(active_pause_clause(horizon))
    intent = PaymentRequestIntent
    retries = session.scalars(
        select(intent)
        .where(
            intent.status == "pending",
            intent.next_attempt_at <= horizon,
            intent.external_customer_id.not_in(paused),
        )
        .order_by(intent.next_attempt_at, intent.id)
    ).all()
    asks = [
        PlannedAsk(
            why="retry",
            external_customer_id=row.external_customer_id,
            currency=row.currency,
            billing_entity_code=row.billing_entity_code,
            amount_cents=row.amount_cents,
            policy=row.policy,
            due_at=row.next_attempt_at,
            intent_id=row.id,
        )
        for row in retries
    ]
    taken = {(a.external_customer_id, a.currency, a.billing_entity_code) for a in asks}
    run_id = latest_full_run_id(session)
    if run_id is not None:
        waiting = session.scalars(
            select(DecisionRow)
            .where(
                DecisionRow.run_id == run_id,
                DecisionRow.reason.in_(WAITING_REASONS),
                DecisionRow.next_eligible_at.is_not(None),
                DecisionRow.next_eligible_at <= horizon,
                DecisionRow.external_customer_id.not_in(paused),
            )
            .order_by(DecisionRow.next_eligible_at, DecisionRow.id)
        ).all()
        asks.extend(
            PlannedAsk(
                why="attempt",
                external_customer_id=row.external_customer_id,
                currency=row.currency,
                billing_entity_code=row.billing_entity_code,
                amount_cents=row.amount_cents or 0,
                policy=row.policy,
                due_at=row.next_eligible_at,
            )
            for row in waiting
            if (row.external_customer_id, row.currency, row.billing_entity_code) not in taken
        )
    return NextSweep(at=at, based_on_run=run_id, asks=tuple(asks))


#: Decisions about invoices rather than groups: they explain skips, not what happens next.
_INVOICE_LEVEL = tuple(reason.value for reason in INVOICE_REASONS if reason.value != "eligible")
_NOT_A_GROUP = (*_INVOICE_LEVEL, "malformed_record")


@dataclass(frozen=True, slots=True)
class GroupOutlook:
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    amount_cents: int | None
    policy: str | None
    kind: str  # the decision: attempt, wait, skip, exhausted
    reason: str
    detail: str | None
    next_eligible_at: datetime | None
    asked_next: bool  # in the next sweep's asks


def group_outlook(session: Session, plan: NextSweep, *, limit: int = 500) -> list[GroupOutlook]:
    """The groups of `plan.based_on_run`: those asked next first, then those waiting (the
    soonest first), then the rest (attempts already made, exhausted, not dunned)."""
    if plan.based_on_run is None:
        return []
    asked = {(a.external_customer_id, a.currency, a.billing_entity_code) for a in plan.asks}
    rows = session.scalars(
        select(DecisionRow)
        .where(DecisionRow.run_id == plan.based_on_run, DecisionRow.reason.not_in(_NOT_A_GROUP))
        .order_by(DecisionRow.external_customer_id, DecisionRow.currency, DecisionRow.id)
        .limit(limit)
    ).all()
    found = [
        GroupOutlook(
            external_customer_id=row.external_customer_id,
            currency=row.currency,
            billing_entity_code=row.billing_entity_code,
            amount_cents=row.amount_cents,
            policy=row.policy,
            kind=row.kind,
            reason=row.reason,
            detail=row.detail,
            next_eligible_at=row.next_eligible_at,
            asked_next=(row.external_customer_id, row.currency, row.billing_entity_code) in asked,
        )
        for row in rows
    ]
    never = datetime.max.replace(tzinfo=UTC)

    def order(group: GroupOutlook) -> tuple[bool, bool, datetime, str]:
        # an attempt's intent exists already: its time to look again is not a wait
        waits_until = None if group.kind == "attempt" else group.next_eligible_at
        return (not group.asked_next, waits_until is None, waits_until or never, group.kind)

    return sorted(found, key=order)
