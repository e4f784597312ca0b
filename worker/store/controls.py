"""Operators' per-customer switches (`dunning pause|resume`). The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import CustomerControl


def _set_paused(
    session: Session, *, external_customer_id: str, paused: bool, reason: str | None, now: datetime
) -> None:
    statement = insert_for(session, CustomerControl).values(
        external_customer_id=external_customer_id, paused=paused, reason=reason, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["external_customer_id"],
        set_={"paused": paused, "reason": reason, "updated_at": now},
    )
    session.execute(statement)


def pause_customer(
    session: Session, *, external_customer_id: str, reason: str | None, now: datetime
) -> None:
    """Stop dunning the customer: no new intents, and open ones are not claimed."""
    _set_paused(
        session, external_customer_id=external_customer_id, paused=True, reason=reason, now=now
    )


def resume_customer(session: Session, *, external_customer_id: str, now: datetime) -> None:
    _set_paused(
        session, external_customer_id=external_customer_id, paused=False, reason=None, now=now
    )


def paused_customers(
    session: Session, *, external_customer_ids: Iterable[str] | None = None
) -> set[str]:
    """Paused customers among `external_customer_ids` (all paused customers if None)."""
    query = select(CustomerControl.external_customer_id).where(CustomerControl.paused.is_(True))
    if external_customer_ids is None:
        return set(session.scalars(query))
    wanted = sorted(set(external_customer_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(session.scalars(query.where(CustomerControl.external_customer_id.in_(chunk))))
    return found


def get_control(session: Session, *, external_customer_id: str) -> CustomerControl | None:
    return session.get(CustomerControl, external_customer_id)
