"""Operators' per-customer switches (`dunning pause|resume`). The caller owns the transaction.

A pause with `until` is a hold (a promise to pay, a dispute being handled): it ends by itself
at that instant, with no further write. `active_pause_clause` is the one SQL test of "paused
right now" that every reader uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import CustomerControl


def active_pause_clause(now: datetime) -> Any:
    """`customer_controls` rows that pause their customer at `now` (holds not yet over)."""
    return CustomerControl.paused.is_(True) & or_(
        CustomerControl.paused_until.is_(None), CustomerControl.paused_until > now
    )


def _set_paused(
    session: Session,
    *,
    external_customer_id: str,
    paused: bool,
    reason: str | None,
    now: datetime,
    until: datetime | None = None,
) -> None:
    values = {"paused": paused, "reason": reason, "updated_at": now, "paused_until": until}
    statement = insert_for(session, CustomerControl).values(
        external_customer_id=external_customer_id, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=["external_customer_id"], set_=values
    )
    session.execute(statement)


def pause_customer(
    session: Session,
    *,
    external_customer_id: str,
    reason: str | None,
    now: datetime,
    until: datetime | None = None,
) -> None:
    """Stop dunning the customer: no new intents, and open ones are not claimed. With
    `until`, dunning resumes by itself at that instant."""
    if until is not None and until <= now:
        raise ValueError("a hold must end in the future")
    _set_paused(
        session,
        external_customer_id=external_customer_id,
        paused=True,
        reason=reason,
        now=now,
        until=until,
    )


def resume_customer(session: Session, *, external_customer_id: str, now: datetime) -> None:
    _set_paused(
        session, external_customer_id=external_customer_id, paused=False, reason=None, now=now
    )


def holds(
    session: Session, *, external_customer_ids: Iterable[str], now: datetime
) -> dict[str, datetime | None]:
    """Customers paused at `now` among those given: {id: hold end, or None for no end}."""
    wanted = sorted(set(external_customer_ids))
    found: dict[str, datetime | None] = {}
    query = select(CustomerControl.external_customer_id, CustomerControl.paused_until).where(
        active_pause_clause(now)
    )
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for customer, until in session.execute(
            query.where(CustomerControl.external_customer_id.in_(chunk))
        ):
            found[customer] = until
    return found


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
