"""Intents of the channels other than payment requests: switching channel, holding, emailing.

The same rules as `worker.store.intent_results` (the lease helpers of `_intent_sql`): every
write only touches a row still leased by the caller and returns False otherwise; the caller
owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from worker.store._intent_sql import leased as _leased
from worker.store._intent_sql import one_line as _one_line
from worker.store._intent_sql import release as _release
from worker.store._intent_sql import update_leased as _update_leased
from worker.store._intent_sql import utc as _utc
from worker.store.intents import ClaimedIntent, _claimed, record_refused
from worker.store.models import OPEN_INTENT_STATUSES
from worker.store.models import PaymentRequestIntent as Intent


def held_intents(
    session: Session, *, owner: str, intent_ids: Collection[int], now: datetime
) -> list[ClaimedIntent]:
    """The intents among `intent_ids` that `owner` holds right now (claimed earlier)."""
    rows = session.scalars(
        select(Intent).where(
            Intent.id.in_(list(intent_ids)),
            Intent.status == "sending",
            Intent.lease_owner == owner,
            Intent.lease_expires_at > _utc(now),
        )
    ).all()
    return [
        replace(
            _claimed(row, owner, row.lease_expires_at or now),
            tries=row.tries,
            ambiguous_tries=row.ambiguous_tries,
            lease_was_expired=False,
        )
        for row in rows
    ]


def holds_lease(session: Session, *, intent_id: int, owner: str, now: datetime) -> bool:
    """We still hold the lease on the intent (checked before each step of a channel)."""
    found = session.scalar(
        select(Intent.id).where(_leased(intent_id, owner), Intent.lease_expires_at > _utc(now))
    )
    return found is not None


def switch_channel(
    session: Session, *, intent_id: int, owner: str, channel: str, now: datetime
) -> bool:
    """Send a leased intent through another channel from now on."""
    return _update_leased(session, intent_id, owner, channel=channel, updated_at=now)


def switch_open_channel(
    session: Session,
    *,
    external_customer_id: str,
    from_channel: str,
    to_channel: str,
    owner: str,
    now: datetime,
) -> int:
    """The customer's intents on `from_channel` that are pending or held by `owner` move to
    `to_channel` (nothing was sent for them yet on either); how many."""
    result = session.execute(
        update(Intent)
        .where(
            Intent.external_customer_id == external_customer_id,
            Intent.channel == from_channel,
            or_(
                Intent.status == "pending",
                and_(Intent.status == "sending", Intent.lease_owner == owner),
            ),
        )
        .values(channel=to_channel, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def reopen_blocked(session: Session, *, intent_id: int, channel: str, now: datetime) -> bool:
    """A blocked intent (no licence for payment requests) becomes pending on `channel`: no
    payment request was created, so nothing can be asked twice."""
    result = session.execute(
        update(Intent)
        .where(Intent.id == intent_id, Intent.status == "blocked")
        .values(
            status="pending",
            channel=channel,
            post_started_at=None,
            next_attempt_at=now,
            **_release(now),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def record_emailed(
    session: Session,
    *,
    intent_id: int,
    owner: str,
    now: datetime,
    lago_invoice_ids: Iterable[str],
    detail: str | None = None,
) -> bool:
    """Mark `sent` for the retry_and_email channel: the email was accepted (no Lago id)."""
    return _update_leased(
        session,
        intent_id,
        owner,
        status="sent",
        lago_invoice_ids=sorted(set(lago_invoice_ids)),
        sent_at=now,
        last_error_code=None,
        last_error=_one_line(detail),
        **_release(now),
    )


def record_refused_because(
    session: Session, *, intent_id: int, owner: str, now: datetime, error_code: str, reason: str
) -> bool:
    """`record_refused` for a refusal of our own making (e.g. no email address)."""
    return record_refused(
        session, intent_id=intent_id, owner=owner, now=now, error_code=error_code, error=reason
    )


def open_intent_ids(
    session: Session, *, external_customer_id: str, channel: str, exclude: int
) -> list[int]:
    """The customer's other open intents on `channel` (oldest first)."""
    return list(
        session.scalars(
            select(Intent.id)
            .where(
                Intent.external_customer_id == external_customer_id,
                Intent.channel == channel,
                Intent.status.in_(OPEN_INTENT_STATUSES),
                Intent.id != exclude,
            )
            .order_by(Intent.id)
        )
    )
