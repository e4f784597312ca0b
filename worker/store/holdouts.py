"""Holdout entries: groups a policy would have dunned but held out, tracked until settled.

One open entry per group (a partial unique index): the first holdout decision enters the
group with its invoices and amount; later ones are no-ops. Reconciliation settles an entry the
same way it settles a sent intent, so both arms of the comparison are measured alike. The
caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.keys import make_group_key
from worker.store.models import HoldoutEntry


@dataclass(frozen=True, slots=True)
class NewHoldout:
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    policy: str | None
    policy_version: str | None
    policy_hash: str | None
    invoice_ids: tuple[str, ...]
    amount_cents: int


def enter_holdouts(session: Session, *, entries: Sequence[NewHoldout], now: datetime) -> int:
    """Open an entry for each group that has none open; returns how many were opened."""
    rows = [
        {
            "group_key": make_group_key(e.external_customer_id, e.currency, e.billing_entity_code),
            "external_customer_id": e.external_customer_id,
            "currency": e.currency,
            "billing_entity_code": e.billing_entity_code,
            "policy": e.policy,
            "policy_version": e.policy_version,
            "policy_hash": e.policy_hash,
            "invoice_ids": sorted(set(e.invoice_ids)),
            "amount_cents": e.amount_cents,
            "entered_at": now,
        }
        for e in entries
    ]
    if not rows:
        return 0
    table = HoldoutEntry.__table__
    inserted = session.execute(
        insert_for(session, table).on_conflict_do_nothing().returning(table.c.id), rows
    ).all()
    return len(inserted)


def open_entries(session: Session, *, limit: int) -> list[HoldoutEntry]:
    """Unsettled entries, the least recently checked first."""
    return list(
        session.scalars(
            select(HoldoutEntry)
            .where(HoldoutEntry.resolved_at.is_(None))
            .order_by(HoldoutEntry.last_checked_at.asc().nulls_first(), HoldoutEntry.id)
            .limit(limit)
        )
    )


def record_holdout_outcome(
    session: Session,
    *,
    entry_id: int,
    outcome: str,
    recovered_cents: int,
    final: bool,
    now: datetime,
) -> None:
    session.execute(
        update(HoldoutEntry)
        .where(HoldoutEntry.id == entry_id, HoldoutEntry.resolved_at.is_(None))
        .values(
            outcome=outcome,
            recovered_cents=recovered_cents,
            resolved_at=now if final else None,
            last_checked_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def note_checked(session: Session, *, entry_ids: Sequence[int], now: datetime) -> None:
    """Entries whose invoices are all still overdue: looked at, nothing changed."""
    for start in range(0, len(entry_ids), 500):
        session.execute(
            update(HoldoutEntry)
            .where(HoldoutEntry.id.in_(list(entry_ids[start : start + 500])))
            .values(last_checked_at=now, outcome="open")
            .execution_options(synchronize_session=False)
        )
