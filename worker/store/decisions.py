"""Decisions of a sweep, skips included, recorded in bulk. The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from worker.store.models import DecisionRow

if TYPE_CHECKING:
    from sqlalchemy import Table


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
_FIELDS = tuple(field.name for field in fields(DecisionRecord))
# A Core INSERT on the table, built once: executemany without the ORM's per-row bulk
# bookkeeping (a sweep writes one decision per group, a million-invoice sweep 200k of them).
_INSERT = insert(cast("Table", DecisionRow.__table__))


def record_decisions(
    session: Session, *, run_id: int | None, decisions: Sequence[DecisionRecord]
) -> int:
    """Insert all `decisions` for `run_id` with batched multi-row INSERTs; returns the count."""
    for start in range(0, len(decisions), _BATCH):
        rows = [
            {"run_id": run_id, **{name: getattr(record, name) for name in _FIELDS}}
            for record in decisions[start : start + _BATCH]
        ]
        session.execute(_INSERT, rows)
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
