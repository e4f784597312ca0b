"""Recording what became of a claimed intent, only while its lease is still ours.

Every function here touches a row still leased by the caller (`status='sending' AND
lease_owner=owner`) and reports whether it did, so a worker whose lease expired cannot
overwrite a newer claimer (design §3). The caller owns the transaction. `intents` re-exports
them: callers write `intents.record_sent(...)`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from worker.store._intent_sql import CASE_CHUNK as _CASE_CHUNK
from worker.store._intent_sql import TABLE as _TABLE
from worker.store._intent_sql import chunks as _chunks
from worker.store._intent_sql import one_line as _one_line
from worker.store._intent_sql import release as _release
from worker.store._intent_sql import update_leased as _update_leased
from worker.store._intent_sql import utc as _utc
from worker.store.models import PaymentRequestIntent as Intent
from worker.store.types import UTCDateTime


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


@dataclass(frozen=True, slots=True)
class SentResult:
    """A POST that created payment request `lago_payment_request_id` for intent `intent_id`."""

    intent_id: int
    lago_payment_request_id: str
    lago_invoice_ids: tuple[str, ...]
    detail: str | None = None


#: The row counts `_record_sent_statement` is built for: a chunk is padded up to the next one,
#: so a sweep builds and compiles at most these few statements (each took about 5 ms to
#: build, and a short sweep met a dozen different turn sizes).
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, _CASE_CHUNK)


def _bucket(rows: int) -> int:
    return next(size for size in _ROW_BUCKETS if size >= rows)


@lru_cache(maxsize=len(_ROW_BUCKETS))
def _record_sent_statement(rows: int) -> Any:
    """Built once per bucket of rows (see `_stamp_statement`): row i's values are the
    parameters `id_i`, `lago_i`, `invoices_i` and `detail_i`, picked by CASE on the id. A
    padding row has the id 0, which no intent has: its CASE branch is never taken."""
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
        for i in range(len(chunk), _bucket(len(chunk))):
            params |= {f"id_{i}": 0, f"lago_{i}": None, f"invoices_{i}": None, f"detail_{i}": None}
        written = session.execute(_record_sent_statement(_bucket(len(chunk))), params)
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
