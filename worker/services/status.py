"""`dunning status`: what the ledger holds right now, for operators.

Open intents (waiting, being sent, or sent and not settled), intents that need a human
(`needs_review`, with the last error as the reason), paused customers, and the last sweeps.
Read-only; one short read transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from worker.store.controls import active_pause_clause
from worker.store.db import read_session
from worker.store.models import (
    INTENT_STATUSES,
    CustomerControl,
    PaymentRequestIntent,
    SweepRun,
)

OPEN_STATUSES = ("pending", "sending")
AWAITING_OUTCOME_STATUSES = ("sent", "adopted")


@dataclass(frozen=True, slots=True)
class IntentLine:
    id: int
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


@dataclass(frozen=True, slots=True)
class SweepLine:
    id: int
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    invoices_seen: int
    groups: int
    requests_sent: int
    api_calls: int
    error: str | None


@dataclass(frozen=True, slots=True)
class StatusReport:
    intent_counts: dict[str, int]
    open_intents: list[IntentLine]
    needs_review: list[IntentLine]
    paused_customers: list[PausedCustomer]
    last_sweeps: list[SweepLine]

    def to_json(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {key: convert(item) for key, item in value.items()}
            if isinstance(value, list):
                return [convert(item) for item in value]
            return value

        result: dict[str, Any] = convert(asdict(self))
        return result


def intent_counts(engine: Engine) -> dict[str, int]:
    """Intents per status (every known status present, zero included)."""
    with read_session(engine) as session:
        rows = session.execute(
            select(PaymentRequestIntent.status, func.count()).group_by(PaymentRequestIntent.status)
        ).all()
    counts = dict.fromkeys(INTENT_STATUSES, 0)
    counts.update({status: int(count) for status, count in rows})
    return counts


def _intent_line(row: PaymentRequestIntent) -> IntentLine:
    reason = None
    if row.last_error_code or row.last_error:
        reason = " ".join(filter(None, [row.last_error_code, row.last_error]))[:300]
    return IntentLine(
        id=row.id,
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


def build_status(
    engine: Engine, *, limit: int = 50, sweeps: int = 5, now: datetime | None = None
) -> StatusReport:
    """`now` leaves out holds that already ended (without it, every pause row is listed)."""
    counts = intent_counts(engine)
    with read_session(engine) as session:
        open_rows = (
            session.execute(
                select(PaymentRequestIntent)
                .where(
                    PaymentRequestIntent.status.in_(OPEN_STATUSES)
                    | (
                        PaymentRequestIntent.status.in_(AWAITING_OUTCOME_STATUSES)
                        & PaymentRequestIntent.resolved_at.is_(None)
                    )
                )
                .order_by(PaymentRequestIntent.updated_at.desc(), PaymentRequestIntent.id.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
        review_rows = (
            session.execute(
                select(PaymentRequestIntent)
                .where(PaymentRequestIntent.status == "needs_review")
                .order_by(PaymentRequestIntent.updated_at.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
        paused = (
            session.execute(
                select(CustomerControl)
                .where(
                    CustomerControl.paused.is_(True) if now is None else active_pause_clause(now)
                )
                .order_by(CustomerControl.external_customer_id)
            )
            .scalars()
            .all()
        )
        runs = (
            session.execute(select(SweepRun).order_by(SweepRun.id.desc()).limit(sweeps))
            .scalars()
            .all()
        )
        return StatusReport(
            intent_counts=counts,
            open_intents=[_intent_line(row) for row in open_rows],
            needs_review=[_intent_line(row) for row in review_rows],
            paused_customers=[
                PausedCustomer(
                    row.external_customer_id, row.reason, row.updated_at, row.paused_until
                )
                for row in paused
            ],
            last_sweeps=[
                SweepLine(
                    id=run.id,
                    trigger=run.trigger,
                    status=run.status,
                    started_at=run.started_at,
                    finished_at=run.finished_at,
                    invoices_seen=run.invoices_seen,
                    groups=run.groups,
                    requests_sent=run.requests_sent,
                    api_calls=run.api_calls,
                    error=run.error,
                )
                for run in runs
            ],
        )
