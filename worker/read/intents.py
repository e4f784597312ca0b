"""Intents as operators list them: open ones (waiting, being sent, sent and not settled)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from worker.store.controls import active_pause_clause
from worker.store.models import OPEN_INTENT_STATUSES, CustomerControl, PaymentRequestIntent

OPEN_STATUSES = ("pending", "sending")
AWAITING_OUTCOME_STATUSES = ("sent", "adopted")


@dataclass(frozen=True, slots=True)
class IntentLine:
    id: int
    run_id: int | None
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    amount_cents: int
    attempt_number: int
    status: str
    outcome: str | None
    policy: str | None
    lago_payment_request_id: str | None
    updated_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class PausedCustomer:
    external_customer_id: str
    reason: str | None
    since: datetime
    until: datetime | None = None  # a hold's end: dunning resumes by itself then


def intent_line(row: PaymentRequestIntent) -> IntentLine:
    reason = None
    if row.last_error_code or row.last_error:
        reason = " ".join(filter(None, [row.last_error_code, row.last_error]))[:300]
    return IntentLine(
        id=row.id,
        run_id=row.run_id,
        external_customer_id=row.external_customer_id,
        currency=row.currency,
        billing_entity_code=row.billing_entity_code,
        amount_cents=row.amount_cents,
        attempt_number=row.attempt_number,
        status=row.status,
        outcome=row.outcome,
        policy=row.policy,
        lago_payment_request_id=row.lago_payment_request_id,
        updated_at=row.updated_at,
        reason=reason,
    )


def open_intents(session: Session, *, limit: int = 50) -> list[IntentLine]:
    """Waiting or being sent, or sent and not settled yet; newest first."""
    intent = PaymentRequestIntent
    rows = session.scalars(
        select(intent)
        .where(
            intent.status.in_(OPEN_STATUSES)
            | (intent.status.in_(AWAITING_OUTCOME_STATUSES) & intent.resolved_at.is_(None))
        )
        .order_by(intent.updated_at.desc(), intent.id.desc())
        .limit(limit)
    ).all()
    return [intent_line(row) for row in rows]


def intents_with_status(session: Session, status: str, *, limit: int = 50) -> list[IntentLine]:
    intent = PaymentRequestIntent
    rows = session.scalars(
        select(intent)
        .where(intent.status == status)
        .order_by(intent.updated_at.desc(), intent.id.desc())
        .limit(limit)
    ).all()
    return [intent_line(row) for row in rows]


def paused_customers(session: Session, *, now: datetime) -> list[PausedCustomer]:
    """Customers paused at `now` (holds that already ended are left out)."""
    rows = session.scalars(
        select(CustomerControl)
        .where(active_pause_clause(now))
        .order_by(CustomerControl.external_customer_id)
    ).all()
    return [
        PausedCustomer(row.external_customer_id, row.reason, row.updated_at, row.paused_until)
        for row in rows
    ]


def open_rivals(session: Session, intent_ids: Iterable[int]) -> dict[int, int]:
    """For each of `intent_ids` that has one, another open intent of the same group: while it
    is open the intent cannot be re-queued (one open intent per group)."""
    wanted = sorted(set(intent_ids))
    if not wanted:
        return {}
    intent, rival = PaymentRequestIntent, aliased(PaymentRequestIntent)
    found: dict[int, int] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(intent.id, rival.id)
            .join(rival, (rival.group_key == intent.group_key) & (rival.id != intent.id))
            .where(intent.id.in_(wanted[start : start + 500]))
            .where(rival.status.in_(OPEN_INTENT_STATUSES))
        ).all()
        found.update({int(mine): int(theirs) for mine, theirs in rows})
    return found


def oldest_open_intent_created_at(session: Session) -> datetime | None:
    """When the oldest intent still waiting to be sent (pending or being sent) was created."""
    created: datetime | None = session.scalar(
        select(func.min(PaymentRequestIntent.created_at)).where(
            PaymentRequestIntent.status.in_(OPEN_STATUSES)
        )
    )
    return created
