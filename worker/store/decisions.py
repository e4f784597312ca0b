"""Decisions of a sweep, skips included, recorded in bulk. The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from worker.store.models import DecisionRow


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    policy: str | None
    kind: str
    reason: str
    detail: str | None
    amount_cents: int | None
    invoice_count: int
    next_eligible_at: datetime | None
    decided_at: datetime
    intent_id: int | None = None
    policy_version: str | None = None
    policy_hash: str | None = None


_BATCH = 1000


def record_decisions(
    session: Session, *, run_id: int | None, decisions: Sequence[DecisionRecord]
) -> int:
    """Insert all `decisions` for `run_id` with batched multi-row INSERTs; returns the count."""
    for start in range(0, len(decisions), _BATCH):
        batch = decisions[start : start + _BATCH]
        session.execute(
            insert(DecisionRow), [{"run_id": run_id, **asdict(record)} for record in batch]
        )
    return len(decisions)


def decisions_for_run(session: Session, *, run_id: int) -> Sequence[DecisionRow]:
    return session.scalars(
        select(DecisionRow).where(DecisionRow.run_id == run_id).order_by(DecisionRow.id)
    ).all()


def latest_decisions_for_customer(
    session: Session, *, external_customer_id: str, limit: int = 20
) -> Sequence[DecisionRow]:
    """Newest first."""
    return session.scalars(
        select(DecisionRow)
        .where(DecisionRow.external_customer_id == external_customer_id)
        .order_by(DecisionRow.decided_at.desc(), DecisionRow.id.desc())
        .limit(limit)
    ).all()
