"""Payment-request intents: add (insert-or-nothing), claim under a lease, record results.

The exactly-once scheme (design §3): an intent row is committed before any HTTP call; a worker
claims it with a lease in one short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
SQLite: the claim runs inside `BEGIN IMMEDIATE`, so claimers are serialized), commits, calls
Lago, then records the result in another short transaction. Every result function only
touches a row still leased by the caller (`status='sending' AND lease_owner=owner`) and
returns False otherwise, so a worker whose lease expired cannot overwrite a newer claimer.

Except `claim_intents` (which owns its transaction), the caller owns the transaction. Adding
many rows is `intent_insert`'s; recording results is `intent_results`' (re-exported here, so
callers write `intents.record_sent(...)`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    case,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from worker.store._intent_sql import TABLE as _TABLE
from worker.store._intent_sql import chunks as _chunks
from worker.store._intent_sql import one_line as _one_line
from worker.store._intent_sql import utc as _utc
from worker.store.controls import active_pause_clause
from worker.store.db import write_tx
from worker.store.intent_insert import insert_intents
from worker.store.intent_results import (
    NotAllHeldError,
    SentResult,
    mark_post_started,
    record_blocked,
    record_needs_review,
    record_refused,
    record_sent,
    record_sent_held,
    record_sent_many,
    release_stamped_unstarted,
    release_unstarted,
    reschedule,
    restart_post_window,
    stamp_held,
)
from worker.store.keys import make_dedupe_key, make_group_key
from worker.store.models import OPEN_INTENT_STATUSES, OUTCOMES, CustomerControl
from worker.store.models import PaymentRequestIntent as Intent

__all__ = [
    "ClaimedIntent",
    "NewIntent",
    "NotAllHeldError",
    "SentResult",
    "add_intent",
    "add_intents",
    "cancel_intent",
    "claim_intents",
    "count_by_status",
    "customers_of",
    "due_intent_ids",
    "get_intent",
    "known_lago_ids",
    "mark_post_started",
    "open_group_keys",
    "record_blocked",
    "record_needs_review",
    "record_refused",
    "record_sent",
    "record_sent_held",
    "record_sent_many",
    "release_stamped_unstarted",
    "release_unstarted",
    "reschedule",
    "restart_post_window",
    "set_outcome",
    "stamp_held",
]


@dataclass(frozen=True, slots=True)
class ClaimedIntent:
    """An intent this worker now holds under a lease.

    `earlier_post_started_at` is set when an earlier try may have reached Lago (a POST that
    timed out, or a worker that died after its POST started): reconcile before sending again.
    A claim does not stamp `post_started_at`: `mark_post_started` does, just before the POST.
    """

    id: int
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    group_key: str
    invoice_ids: tuple[str, ...]
    amount_cents: int
    email: str | None
    policy: str | None
    attempt_number: int
    lease_owner: str
    lease_expires_at: datetime
    earlier_post_started_at: datetime | None
    tries: int
    ambiguous_tries: int
    lease_was_expired: bool
    channel: str = "payment_request"


def add_intent(
    session: Session,
    *,
    run_id: int | None,
    external_customer_id: str,
    currency: str,
    billing_entity_code: str | None,
    invoice_ids: Iterable[str],
    amount_cents: int,
    email: str | None,
    policy: str | None,
    attempt_number: int,
    now: datetime,
    next_attempt_at: datetime | None = None,
    policy_version: str | None = None,
    policy_hash: str | None = None,
    channel: str = "payment_request",
) -> int | None:
    """Insert a pending intent; return its id, or None if it already exists.

    None means: the same dedupe key (a double sweep/tick) or an open intent for the group
    already exists. Both are expected, not errors (INSERT ... ON CONFLICT DO NOTHING).
    """
    new = NewIntent(
        external_customer_id=external_customer_id,
        currency=currency,
        billing_entity_code=billing_entity_code,
        invoice_ids=tuple(invoice_ids),
        amount_cents=amount_cents,
        email=email,
        policy=policy,
        attempt_number=attempt_number,
        policy_version=policy_version,
        policy_hash=policy_hash,
        channel=channel,
    )
    inserted = add_intents(
        session, run_id=run_id, intents=[new], now=now, next_attempt_at=next_attempt_at
    )
    return inserted.get(new.dedupe_key)


def _due(now: datetime) -> Any:
    return or_(
        and_(Intent.status == "pending", Intent.next_attempt_at <= _utc(now)),
        and_(Intent.status == "sending", Intent.lease_expires_at < _utc(now)),
    )


def _not_paused(now: datetime) -> Any:
    paused = select(CustomerControl.external_customer_id).where(
        CustomerControl.external_customer_id == Intent.external_customer_id,
        active_pause_clause(now),
    )
    return not_(paused.exists())


def claim_intents(
    engine: Engine,
    *,
    owner: str,
    now: datetime,
    lease_seconds: int,
    limit: int,
    intent_ids: Collection[int] | None = None,
) -> list[ClaimedIntent]:
    """Claim up to `limit` due intents (pending and due, or `sending` with an expired lease).

    Runs and commits its own short write transaction. Intents of paused customers are not
    claimed. A claimed row gets `status='sending'`, the lease and `tries + 1`; its
    `post_started_at` is left as it is (set only when a POST starts: `mark_post_started`).
    Taking over an expired lease counts as an ambiguous try only if its holder had started
    the POST (it died mid-flight); a holder that died before is no unknown outcome.
    """
    if limit < 1 or (intent_ids is not None and not intent_ids):
        return []
    lease_expires_at = now + timedelta(seconds=lease_seconds)
    query = (
        # Plain rows of the columns a claim needs, not ORM objects: a claim of 100 intents
        # spent most of its time building and tracking the objects.
        select(*(_TABLE.c[name] for name in _CLAIM_COLUMNS))
        .where(_due(now), _not_paused(now))
        .order_by(Intent.next_attempt_at, Intent.id)
        .limit(limit)
        # PostgreSQL: lock the batch, skipping rows another claimer holds. SQLite renders
        # nothing here; there the BEGIN IMMEDIATE of write_tx serializes claimers instead.
        .with_for_update(skip_locked=True, of=_TABLE)
    )
    if intent_ids is not None:
        query = query.where(Intent.id.in_(list(intent_ids)))
    with write_tx(engine) as session:
        rows = session.execute(query).all()
        if not rows:
            return []
        session.execute(
            update(Intent)
            .where(Intent.id.in_([row.id for row in rows]))
            .values(
                status="sending",
                lease_owner=owner,
                lease_expires_at=lease_expires_at,
                tries=Intent.tries + 1,
                ambiguous_tries=Intent.ambiguous_tries
                + case(
                    (and_(Intent.status == "sending", Intent.post_started_at.is_not(None)), 1),
                    else_=0,
                ),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return [_claimed(row, owner, lease_expires_at) for row in rows]


#: What `_claimed` reads of a row.
_CLAIM_COLUMNS = (
    "id", "external_customer_id", "currency", "billing_entity_code", "group_key",
    "invoice_ids", "amount_cents", "email", "policy", "attempt_number", "post_started_at",
    "tries", "ambiguous_tries", "status", "channel",
)  # fmt: skip


def _claimed(row: Any, owner: str, lease_expires_at: datetime) -> ClaimedIntent:
    """The claim of `row` (an `Intent`, or a row of `_CLAIM_COLUMNS`, as it was read before
    the claim's update)."""
    return ClaimedIntent(
        id=row.id,
        external_customer_id=row.external_customer_id,
        currency=row.currency,
        billing_entity_code=row.billing_entity_code,
        group_key=row.group_key,
        invoice_ids=tuple(row.invoice_ids),
        amount_cents=row.amount_cents,
        email=row.email,
        policy=row.policy,
        attempt_number=row.attempt_number,
        lease_owner=owner,
        lease_expires_at=lease_expires_at,
        earlier_post_started_at=row.post_started_at,
        tries=row.tries + 1,
        ambiguous_tries=row.ambiguous_tries
        + (1 if row.status == "sending" and row.post_started_at is not None else 0),
        lease_was_expired=row.status == "sending",
        channel=row.channel,
    )


def cancel_intent(session: Session, *, intent_id: int, now: datetime, reason: str) -> bool:
    """Withdraw a `pending` intent (e.g. its invoices were paid). Leased ones are left alone."""
    result = session.execute(
        update(Intent)
        .where(Intent.id == intent_id, Intent.status == "pending")
        .values(status="cancelled", last_error=_one_line(reason), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def set_outcome(
    session: Session,
    *,
    intent_id: int,
    outcome: str,
    recovered_cents: int | None,
    now: datetime,
    resolved: bool,
) -> bool:
    """Record what became of a sent/adopted request's invoices (reconciliation)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    result = session.execute(
        update(Intent)
        .where(Intent.id == intent_id, Intent.status.in_(("sent", "adopted")))
        .values(
            outcome=outcome,
            recovered_cents=recovered_cents,
            resolved_at=now if resolved else None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def get_intent(session: Session, intent_id: int) -> Intent | None:
    return session.get(Intent, intent_id)


def due_intent_ids(session: Session, *, now: datetime, limit: int = 1000) -> list[int]:
    """Ids of intents a recovery pass should run now (oldest due first)."""
    return list(
        session.scalars(
            select(Intent.id)
            .where(_due(now), _not_paused(now))
            .order_by(Intent.next_attempt_at, Intent.id)
            .limit(limit)
        )
    )


def customers_of(session: Session, intent_ids: Collection[int]) -> dict[int, str]:
    """The external customer id of each of these intents (those that exist)."""
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(set(intent_ids))):
        rows = session.execute(
            select(Intent.id, Intent.external_customer_id).where(Intent.id.in_(chunk))
        )
        found.update((intent_id, customer) for intent_id, customer in rows)
    return found


def open_group_keys(session: Session, *, group_keys: Iterable[str]) -> set[str]:
    """Those of `group_keys` that have an open (pending|sending) intent."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(group_keys))):
        found.update(
            session.scalars(
                select(Intent.group_key).where(
                    Intent.group_key.in_(chunk), Intent.status.in_(OPEN_INTENT_STATUSES)
                )
            )
        )
    return found


def known_lago_ids(session: Session, *, lago_ids: Iterable[str]) -> set[str]:
    """Those of `lago_ids` already recorded on some intent (they cannot be adopted again)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(lago_ids))):
        found.update(
            session.scalars(
                select(Intent.lago_payment_request_id).where(
                    Intent.lago_payment_request_id.in_(chunk)
                )
            )
        )
    return found


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Intent.status, func.count()).group_by(Intent.status)).all()
    return {status: int(count) for status, count in rows}


# -- bulk variants (a sweep writes and records thousands of intents) ----------------------


@dataclass(frozen=True, slots=True)
class NewIntent:
    """The fields of `add_intent`, for `add_intents`."""

    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    invoice_ids: tuple[str, ...]
    amount_cents: int
    email: str | None
    policy: str | None
    attempt_number: int
    policy_version: str | None = None
    policy_hash: str | None = None
    channel: str = "payment_request"

    @property
    def group_key(self) -> str:
        return make_group_key(self.external_customer_id, self.currency, self.billing_entity_code)

    @property
    def dedupe_key(self) -> str:
        return make_dedupe_key(self.group_key, sorted(set(self.invoice_ids)), self.attempt_number)


def add_intents(
    session: Session,
    *,
    run_id: int | None,
    intents: Sequence[NewIntent],
    now: datetime,
    next_attempt_at: datetime | None = None,
) -> dict[str, int]:
    """Insert pending intents in one statement (`intent_insert`); return {dedupe_key: id} for
    the rows inserted. A duplicate dedupe key (a double sweep/tick) or a group that already has
    an open intent is skipped: expected, not an error (INSERT ... ON CONFLICT DO NOTHING)."""
    rows: list[dict[str, Any]] = []
    for new in intents:
        ids = sorted(set(new.invoice_ids))
        if not ids:
            raise ValueError("an intent needs at least one invoice id")
        if new.attempt_number < 1:
            raise ValueError(f"attempt_number must be >= 1, got {new.attempt_number}")
        rows.append(
            {
                "external_customer_id": new.external_customer_id,
                "currency": new.currency,
                "billing_entity_code": new.billing_entity_code,
                "group_key": new.group_key,
                "invoice_ids": ids,
                "amount_cents": new.amount_cents,
                "email": new.email,
                "channel": new.channel,
                "policy": new.policy,
                "policy_version": new.policy_version,
                "policy_hash": new.policy_hash,
                "attempt_number": new.attempt_number,
                "dedupe_key": new.dedupe_key,
            }
        )
    return insert_intents(
        session, run_id=run_id, rows=rows, next_attempt_at=next_attempt_at or now, now=now
    )
