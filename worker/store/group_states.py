"""Per-group ledger: attempts used, last attempt, exhaustion. Read in bulk for a sweep.

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for, insert_for_dialect
from worker.store.controls import active_pause_clause
from worker.store.intents import open_group_keys
from worker.store.keys import make_group_key
from worker.store.models import CustomerControl, GroupStateRow

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class GroupRef:
    external_customer_id: str
    currency: str
    billing_entity_code: str | None

    @property
    def key(self) -> str:
        return make_group_key(self.external_customer_id, self.currency, self.billing_entity_code)


@dataclass(frozen=True, slots=True)
class StoredGroupState:
    """What the ledger knows about a group; maps 1:1 onto `worker.policy.types.GroupState`
    (`exhaustion_handled` is `exhausted_at is not None`)."""

    attempts_used: int = 0
    last_attempt_at: datetime | None = None
    exhausted_at: datetime | None = None
    last_dunned_invoice_ids: tuple[str, ...] = ()
    paused: bool = False
    open_intent: bool = False
    hold_until: datetime | None = None

    @property
    def exhaustion_handled(self) -> bool:
        return self.exhausted_at is not None


def load_group_states(
    session: Session, *, groups: Iterable[GroupRef], now: datetime | None = None
) -> dict[str, StoredGroupState]:
    """The state of every group in `groups`, keyed by group key (defaults for unknown groups).

    A handful of queries whatever the number of groups: rows, paused customers and open
    intents are each read with chunked IN lists. With `now`, a hold that ended before `now`
    no longer pauses (without `now`, every pause row counts, with its end in `hold_until`).
    """
    refs = {ref.key: ref for ref in groups}
    keys = sorted(refs)
    customers = sorted({ref.external_customer_id for ref in refs.values()})
    rows: dict[str, GroupStateRow] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        for row in session.scalars(select(GroupStateRow).where(GroupStateRow.group_key.in_(chunk))):
            rows[row.group_key] = row
    paused: dict[str, datetime | None] = {}
    for start in range(0, len(customers), _IN_CHUNK):
        chunk = customers[start : start + _IN_CHUNK]
        query = select(CustomerControl.external_customer_id, CustomerControl.paused_until).where(
            CustomerControl.external_customer_id.in_(chunk),
            CustomerControl.paused.is_(True) if now is None else active_pause_clause(now),
        )
        for customer, until in session.execute(query):
            paused[customer] = until
    open_keys = open_group_keys(session, group_keys=keys)
    states: dict[str, StoredGroupState] = {}
    for key, ref in refs.items():
        stored = rows.get(key)
        states[key] = StoredGroupState(
            attempts_used=stored.attempts_used if stored else 0,
            last_attempt_at=stored.last_attempt_at if stored else None,
            exhausted_at=stored.exhausted_at if stored else None,
            last_dunned_invoice_ids=tuple(stored.last_dunned_invoice_ids or ()) if stored else (),
            paused=ref.external_customer_id in paused,
            open_intent=key in open_keys,
            hold_until=paused.get(ref.external_customer_id),
        )
    return states


def record_attempt(
    session: Session,
    *,
    external_customer_id: str,
    currency: str,
    billing_entity_code: str | None,
    invoice_ids: Iterable[str],
    now: datetime,
) -> None:
    """A payment request was sent or adopted for the group: attempts_used += 1 (upsert)."""
    record_attempts(
        session,
        attempts=[Attempt(external_customer_id, currency, billing_entity_code, tuple(invoice_ids))],
        now=now,
    )


def mark_exhausted(
    session: Session,
    *,
    external_customer_id: str,
    currency: str,
    billing_entity_code: str | None,
    now: datetime,
) -> bool:
    """Remember that the policy's on_exhausted action ran for the group (once).

    Returns True if this call marked it, False if it was already marked.
    """
    key = make_group_key(external_customer_id, currency, billing_entity_code)
    inserted = session.execute(
        insert_for(session, GroupStateRow)
        .values(
            group_key=key,
            external_customer_id=external_customer_id,
            currency=currency,
            billing_entity_code=billing_entity_code,
            attempts_used=0,
            exhausted_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["group_key"])
        .returning(GroupStateRow.id)
    ).scalar_one_or_none()
    if inserted is not None:
        return True
    result = session.execute(
        update(GroupStateRow)
        .where(GroupStateRow.group_key == key, GroupStateRow.exhausted_at.is_(None))
        .values(exhausted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def reset_group(
    session: Session,
    *,
    external_customer_id: str,
    currency: str,
    billing_entity_code: str | None,
    now: datetime,
) -> None:
    """Start the group's dunning cycle over (e.g. its invoices were all paid)."""
    session.execute(
        update(GroupStateRow)
        .where(
            GroupStateRow.group_key
            == make_group_key(external_customer_id, currency, billing_entity_code)
        )
        .values(attempts_used=0, exhausted_at=None, last_dunned_invoice_ids=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """A payment request sent or adopted for a group, for `record_attempts`."""

    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    invoice_ids: tuple[str, ...]


def record_attempts(session: Session, *, attempts: Iterable[Attempt], now: datetime) -> None:
    """`record_attempt` for many groups in one statement (each group at most once)."""
    rows = [
        {
            "group_key": make_group_key(a.external_customer_id, a.currency, a.billing_entity_code),
            "external_customer_id": a.external_customer_id,
            "currency": a.currency,
            "billing_entity_code": a.billing_entity_code,
            "attempts_used": 1,
            "last_attempt_at": now,
            "last_dunned_invoice_ids": sorted(set(a.invoice_ids)),
            "updated_at": now,
        }
        for a in attempts
    ]
    if not rows:
        return
    session.execute(_attempts_upsert(session.get_bind().dialect.name), rows)


@cache
def _attempts_upsert(dialect: str) -> Any:
    """Built once per dialect: the statement object keeps its SQL cache key, so each send turn
    pays for its parameters only."""
    table = GroupStateRow.__table__
    statement = insert_for_dialect(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=["group_key"],
        set_={
            "attempts_used": table.c.attempts_used + 1,
            "last_attempt_at": statement.excluded.last_attempt_at,
            "last_dunned_invoice_ids": statement.excluded.last_dunned_invoice_ids,
            "updated_at": statement.excluded.updated_at,
        },
    )
