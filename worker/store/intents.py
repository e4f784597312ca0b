"""Payment-request intents: add (insert-or-nothing), claim under a lease, record results.

The exactly-once scheme (design §3): an intent row is committed before any HTTP call; a worker
claims it with a lease in one short transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
SQLite: the claim runs inside `BEGIN IMMEDIATE`, so claimers are serialized), commits, calls
Lago, then records the result in another short transaction. Every result function only
touches a row still leased by the caller (`status='sending' AND lease_owner=owner`) and
returns False otherwise, so a worker whose lease expired cannot overwrite a newer claimer.

Except `claim_intents` (which owns its transaction), the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from worker.store.controls import active_pause_clause
from worker.store.db import write_tx
from worker.store.intent_insert import insert_intents
from worker.store.keys import make_dedupe_key, make_group_key
from worker.store.models import OPEN_INTENT_STATUSES, OUTCOMES, CustomerControl
from worker.store.models import PaymentRequestIntent as Intent
from worker.store.types import UTCDateTime

_T = TypeVar("_T")
_TABLE = cast("Table", Intent.__table__)
_IN_CHUNK = 500  # bound IN (...) lists: SQLite's variable limit and query plans
_CASE_CHUNK = 100  # rows per multi-row UPDATE ... CASE (a send turn records far fewer)


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


def _utc(value: datetime) -> Any:
    return literal(value, type_=UTCDateTime())


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
        select(Intent)
        .where(_due(now), _not_paused(now))
        .order_by(Intent.next_attempt_at, Intent.id)
        .limit(limit)
        # PostgreSQL: lock the batch, skipping rows another claimer holds. SQLite renders
        # nothing here; there the BEGIN IMMEDIATE of write_tx serializes claimers instead.
        .with_for_update(skip_locked=True, of=Intent)
    )
    if intent_ids is not None:
        query = query.where(Intent.id.in_(list(intent_ids)))
    with write_tx(engine) as session:
        rows = session.scalars(query).all()
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


def _claimed(row: Intent, owner: str, lease_expires_at: datetime) -> ClaimedIntent:
    """The claim of `row` (as it was read before the claim's update)."""
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


def _leased(intent_id: int, owner: str) -> Any:
    return and_(Intent.id == intent_id, Intent.status == "sending", Intent.lease_owner == owner)


def _update_leased(session: Session, intent_id: int, owner: str, **values: Any) -> bool:
    result = session.execute(
        update(Intent)
        .where(_leased(intent_id, owner))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def _release(now: datetime) -> dict[str, Any]:
    return {"lease_owner": None, "lease_expires_at": None, "updated_at": now}


def record_sent(
    session: Session,
    *,
    intent_id: int,
    owner: str,
    now: datetime,
    lago_payment_request_id: str,
    lago_invoice_ids: Iterable[str],
    adopted: bool = False,
    detail: str | None = None,
) -> bool:
    """Mark `sent` (our POST created it) or `adopted` (found in Lago), storing Lago's id and
    exactly the invoice ids Lago reports for the request."""
    return _update_leased(
        session,
        intent_id,
        owner,
        status="adopted" if adopted else "sent",
        lago_payment_request_id=lago_payment_request_id,
        lago_invoice_ids=sorted(set(lago_invoice_ids)),
        sent_at=now,
        last_error_code=None,
        last_error=_one_line(detail),
        **_release(now),
    )


def _record_final(
    session: Session, *, intent_id: int, owner: str, now: datetime, status: str, **values: Any
) -> bool:
    return _update_leased(session, intent_id, owner, status=status, **values, **_release(now))


def record_refused(
    session: Session, *, intent_id: int, owner: str, now: datetime, error_code: str, error: str
) -> bool:
    """Lago said no for good (404/405/422): the next sweep re-evaluates the group."""
    return _record_final(
        session,
        intent_id=intent_id,
        owner=owner,
        now=now,
        status="refused",
        last_error_code=error_code,
        last_error=_one_line(error),
        post_started_at=None,  # a definitive answer: Lago created nothing, no reconcile needed
    )


def record_blocked(
    session: Session, *, intent_id: int, owner: str, now: datetime, error_code: str, error: str
) -> bool:
    """The Lago instance cannot create payment requests (no premium licence)."""
    return _record_final(
        session,
        intent_id=intent_id,
        owner=owner,
        now=now,
        status="blocked",
        last_error_code=error_code,
        last_error=_one_line(error),
        post_started_at=None,  # a definitive answer: Lago created nothing, no reconcile needed
    )


def record_needs_review(
    session: Session,
    *,
    intent_id: int,
    owner: str,
    now: datetime,
    error_code: str,
    reason: str,
    lago_payment_request_id: str | None = None,
    lago_invoice_ids: Iterable[str] | None = None,
) -> bool:
    """Stop retrying and let a human decide: too many unknown outcomes, or a payment request
    in Lago we cannot explain (then its id and invoices are kept, for the human)."""
    extra: dict[str, Any] = {}
    if lago_payment_request_id is not None:
        extra["lago_payment_request_id"] = lago_payment_request_id
    if lago_invoice_ids is not None:
        extra["lago_invoice_ids"] = sorted(set(lago_invoice_ids))
    return _record_final(
        session,
        intent_id=intent_id,
        owner=owner,
        now=now,
        status="needs_review",
        last_error_code=error_code,
        last_error=_one_line(reason),
        **extra,
    )


def reschedule(
    session: Session,
    *,
    intent_id: int,
    owner: str,
    now: datetime,
    next_attempt_at: datetime,
    error_code: str | None,
    error: str | None,
    clear_post_started: bool,
    count_ambiguous: bool = False,
) -> bool:
    """Back to `pending`, due at `next_attempt_at`.

    `clear_post_started=True` only when Lago certainly did not create anything (429, a
    not-ready 405, a connection never made): the next try may POST without reconciling.
    `count_ambiguous=True` for an unknown outcome (timeout, 5xx): the next try reconciles.
    """
    values: dict[str, Any] = {
        "status": "pending",
        "next_attempt_at": next_attempt_at,
        "last_error_code": error_code,
        "last_error": _one_line(error),
        **_release(now),
    }
    if clear_post_started:
        values["post_started_at"] = None
    if count_ambiguous:
        values["ambiguous_tries"] = Intent.ambiguous_tries + 1
    return _update_leased(session, intent_id, owner, **values)


def mark_post_started(
    session: Session, *, owner: str, intent_ids: Collection[int], now: datetime
) -> set[int]:
    """Stamp `post_started_at` on intents whose POST is about to start; return the ids stamped
    (those `owner` still holds). From here on a crash is an unknown outcome for exactly these
    intents, and the next holder reconciles before it sends again."""
    stamped: set[int] = set()
    table = _TABLE  # Core statements: this runs once per send turn, for every POST
    for chunk in _chunks(sorted(set(intent_ids))):
        stamped.update(
            session.scalars(
                update(table)
                .where(table.c.id.in_(chunk), table.c.status == "sending")
                .where(table.c.lease_owner == owner)
                .values(post_started_at=func.coalesce(table.c.post_started_at, _utc(now)))
                .returning(table.c.id)
            )
        )
    return stamped


class NotAllHeldError(Exception):
    """A write meant for intents this owner holds found one it no longer holds (its lease
    expired and another worker took it). The caller rolls the transaction back and takes the
    careful path, which sorts the intents out one by one."""


@cache
def _stamp_statement() -> Any:
    """Built once: the statement object carries its SQL cache key, so executing it again
    costs the parameters only (the hot path of every send turn)."""
    table = _TABLE
    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True)), table.c.status == "sending")
        .where(table.c.lease_owner == bindparam("owner"))
        .values(
            post_started_at=func.coalesce(
                table.c.post_started_at, bindparam("now", type_=UTCDateTime())
            )
        )
    )


def stamp_held(session: Session, *, owner: str, intent_ids: Collection[int], now: datetime) -> None:
    """`mark_post_started` for intents the caller just claimed and still holds: one statement
    and no rows read back (the pipeline's hot path). Raises `NotAllHeldError` when one is not
    held; the transaction must then be rolled back."""
    for chunk in _chunks(sorted(set(intent_ids))):
        result = session.execute(
            _stamp_statement(), {"ids": list(chunk), "owner": owner, "now": now}
        )
        held = int(getattr(result, "rowcount", -1))
        if held != len(chunk):
            raise NotAllHeldError(f"{len(chunk)} intents to stamp, {held} held")


def release_unstarted(
    session: Session, *, owner: str, intent_ids: Collection[int], now: datetime
) -> set[int]:
    """Give back claimed intents whose POST never started (a run that stops early): pending
    again and due now, as if never claimed. Returns the ids released."""
    released: set[int] = set()
    for chunk in _chunks(sorted(set(intent_ids))):
        released.update(
            session.scalars(
                update(Intent)
                .where(
                    Intent.id.in_(chunk),
                    Intent.status == "sending",
                    Intent.lease_owner == owner,
                    Intent.post_started_at.is_(None),
                )
                .values(status="pending", next_attempt_at=now, **_release(now))
                .returning(Intent.id)
                .execution_options(synchronize_session=False)
            )
        )
    return released


def release_stamped_unstarted(
    session: Session, *, owner: str, intent_ids: Collection[int], now: datetime
) -> set[int]:
    """Give back claimed intents that were stamped ahead of a POST the caller knows never
    started (a send pipeline that stops early): pending again, due now, the stamp cleared.
    Only for intents that had no stamp before this claim. Returns the ids released."""
    released: set[int] = set()
    table = _TABLE
    for chunk in _chunks(sorted(set(intent_ids))):
        released.update(
            session.scalars(
                update(table)
                .where(table.c.id.in_(chunk), table.c.status == "sending")
                .where(table.c.lease_owner == owner)
                .values(
                    status="pending", next_attempt_at=now, post_started_at=None, **_release(now)
                )
                .returning(table.c.id)
            )
        )
    return released


def restart_post_window(session: Session, *, intent_id: int, owner: str, now: datetime) -> bool:
    """Before re-POSTing after a settled, empty reconcile: a new POST starts now."""
    return _update_leased(session, intent_id, owner, post_started_at=now, updated_at=now)


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


def _chunks(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split())[:1000]


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


@dataclass(frozen=True, slots=True)
class SentResult:
    """A POST that created payment request `lago_payment_request_id` for intent `intent_id`."""

    intent_id: int
    lago_payment_request_id: str
    lago_invoice_ids: tuple[str, ...]
    detail: str | None = None


@lru_cache(maxsize=_CASE_CHUNK)
def _record_sent_statement(rows: int) -> Any:
    """Built once per number of rows (see `_stamp_statement`): row i's values are the
    parameters `id_i`, `lago_i`, `invoices_i` and `detail_i`, picked by CASE on the id."""
    table = _TABLE

    def by_id(name: str, type_: Any = None) -> Any:
        return case(
            *[(table.c.id == bindparam(f"id_{i}"), bindparam(f"{name}_{i}", type_=type_))
              for i in range(rows)]
        )  # fmt: skip

    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True)), table.c.status == "sending")
        .where(table.c.lease_owner == bindparam("owner"))
        .values(
            status="sent",
            lago_payment_request_id=by_id("lago", table.c.lago_payment_request_id.type),
            lago_invoice_ids=by_id("invoices", table.c.lago_invoice_ids.type),
            sent_at=bindparam("now", type_=UTCDateTime()),
            last_error_code=None,
            last_error=by_id("detail", table.c.last_error.type),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=bindparam("now", type_=UTCDateTime()),
        )
    )


def record_sent_held(
    session: Session, *, owner: str, now: datetime, results: Sequence[SentResult]
) -> None:
    """`record_sent_many` for intents the caller expects to hold still: one UPDATE per chunk
    and no rows read back. Raises `NotAllHeldError` when one is not held; the transaction must
    then be rolled back."""
    for start in range(0, len(results), _CASE_CHUNK):
        chunk = results[start : start + _CASE_CHUNK]
        ids = [result.intent_id for result in chunk]
        if len(set(ids)) != len(ids):
            raise NotAllHeldError("the same intent twice in one record")
        params: dict[str, Any] = {"ids": ids, "owner": owner, "now": now}
        for i, sent in enumerate(chunk):
            params[f"id_{i}"] = sent.intent_id
            params[f"lago_{i}"] = sent.lago_payment_request_id
            params[f"invoices_{i}"] = sorted(set(sent.lago_invoice_ids))
            params[f"detail_{i}"] = _one_line(sent.detail)
        written = session.execute(_record_sent_statement(len(chunk)), params)
        held = int(getattr(written, "rowcount", -1))
        if held != len(chunk):
            raise NotAllHeldError(f"{len(chunk)} intents to record, {held} held")


def record_sent_many(
    session: Session, *, owner: str, now: datetime, results: Sequence[SentResult]
) -> set[int]:
    """`record_sent` (not adopted) for many intents; returns the ids recorded, i.e. those
    `owner` still held (the others' leases expired: their new holders reconcile)."""
    held: set[int] = set()
    table = _TABLE
    for chunk in _chunks([result.intent_id for result in results]):
        held.update(
            session.scalars(
                select(table.c.id)
                .where(table.c.id.in_(chunk), table.c.status == "sending")
                .where(table.c.lease_owner == owner)
                .with_for_update()
            )
        )
    rows = [
        {
            "b_id": result.intent_id,
            "b_lago_id": result.lago_payment_request_id,
            "b_invoices": sorted(set(result.lago_invoice_ids)),
            "b_detail": _one_line(result.detail),
        }
        for result in results
        if result.intent_id in held
    ]
    if rows:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                status="sent",
                lago_payment_request_id=bindparam("b_lago_id"),
                lago_invoice_ids=bindparam("b_invoices"),
                sent_at=now,
                last_error_code=None,
                last_error=bindparam("b_detail"),
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            ),
            rows,
        )
    return held
