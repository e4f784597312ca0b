"""The steps of a `retry_and_email` intent: each retry, link and email, stamped then recorded.

The same scheme as the intent itself (design §3), one level down: a step row is written
(`started`) in a short transaction just before its call, and finished (`done`, `refused` or
`unknown`) in another just after. Every write checks the caller still holds the intent's
lease. A step found `started` by a later holder may have taken effect: it becomes `unknown`
and is never made again (a retry may have charged, an email cannot be recalled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.channel_intents import holds_lease
from worker.store.models import ChannelStep

EMAIL = ""  # the `lago_invoice_id` of the email step


@dataclass(frozen=True, slots=True)
class StepRef:
    """Which step, and who holds the intent's lease."""

    intent_id: int
    owner: str
    kind: str
    lago_invoice_id: str = EMAIL


def _this(ref: StepRef) -> Any:
    return and_(
        ChannelStep.intent_id == ref.intent_id,
        ChannelStep.kind == ref.kind,
        ChannelStep.lago_invoice_id == ref.lago_invoice_id,
        ChannelStep.status == "started",
    )


@dataclass(frozen=True, slots=True)
class Step:
    kind: str
    lago_invoice_id: str
    status: str
    payment_url: str | None
    message_id: str | None
    error_code: str | None
    detail: str | None


def steps_of(session: Session, intent_id: int) -> dict[tuple[str, str], Step]:
    """{(kind, lago_invoice_id): step} of one intent."""
    rows = session.scalars(select(ChannelStep).where(ChannelStep.intent_id == intent_id))
    return {
        (row.kind, row.lago_invoice_id): Step(
            row.kind,
            row.lago_invoice_id,
            row.status,
            row.payment_url,
            row.message_id,
            row.error_code,
            row.detail,
        )
        for row in rows
    }


def start_step(
    session: Session,
    ref: StepRef,
    *,
    now: datetime,
    message_id: str | None = None,
    recipients: str | None = None,
) -> bool:
    """Stamp a step as started; False if the lease is gone or the step exists already."""
    if not holds_lease(session, intent_id=ref.intent_id, owner=ref.owner, now=now):
        return False
    table = ChannelStep.__table__
    inserted = session.execute(
        insert_for(session, table)
        .values(
            intent_id=ref.intent_id,
            kind=ref.kind,
            lago_invoice_id=ref.lago_invoice_id,
            status="started",
            started_at=now,
            message_id=message_id,
            recipients=recipients,
        )
        .on_conflict_do_nothing()
        .returning(table.c.id)
    ).first()
    return inserted is not None


def finish_step(
    session: Session,
    ref: StepRef,
    *,
    now: datetime,
    status: str,
    payment_url: str | None = None,
    error_code: str | None = None,
    detail: str | None = None,
) -> bool:
    """Record a started step's result; False if the lease is gone."""
    if not holds_lease(session, intent_id=ref.intent_id, owner=ref.owner, now=now):
        return False
    result = session.execute(
        update(ChannelStep)
        .where(_this(ref))
        .values(
            status=status,
            finished_at=now,
            payment_url=payment_url,
            error_code=error_code,
            detail=(detail or "")[:1000] or None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def forget_step(session: Session, ref: StepRef, *, now: datetime) -> bool:
    """Remove a started step that certainly never left (no connection): it may be made again."""
    if not holds_lease(session, intent_id=ref.intent_id, owner=ref.owner, now=now):
        return False
    session.execute(delete(ChannelStep).where(_this(ref)))
    return True


def settle_started(session: Session, *, intent_id: int, owner: str, now: datetime) -> int:
    """Steps an earlier holder started and never recorded become `unknown`; how many."""
    if not holds_lease(session, intent_id=intent_id, owner=owner, now=now):
        return 0
    result = session.execute(
        update(ChannelStep)
        .where(ChannelStep.intent_id == intent_id, ChannelStep.status == "started")
        .values(
            status="unknown",
            finished_at=now,
            error_code="interrupted",
            detail="started by an earlier try that never recorded its result",
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def clear_unknown_email(session: Session, *, intent_id: int) -> int:
    """An operator retries an intent whose email may have gone (`dunning retry`): its email
    may be sent again (same Message-ID, so a copy is recognisable). Retries stay as they are."""
    result = session.execute(
        delete(ChannelStep).where(
            ChannelStep.intent_id == intent_id,
            ChannelStep.kind == "email",
            ChannelStep.status == "unknown",
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
