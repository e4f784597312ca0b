"""Operator re-queue of one intent (`dunning retry`). The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.store.models import OPEN_INTENT_STATUSES
from worker.store.models import PaymentRequestIntent as Intent

#: Statuses an operator may send again: parked for a human, refused, blocked by the licence,
#: or simply waiting (then it is only made due now).
RETRYABLE_STATUSES = ("needs_review", "refused", "blocked", "pending")
MANUAL_RETRY_CODE = "manual_retry"


def other_open_intent(session: Session, *, intent_id: int, group_key: str) -> int | None:
    """The id of another open intent of the same group (only one may be open), if any."""
    found = session.scalars(
        select(Intent.id).where(
            Intent.group_key == group_key,
            Intent.status.in_(OPEN_INTENT_STATUSES),
            Intent.id != intent_id,
        )
    ).first()
    return int(found) if found is not None else None


def requeue_intent(
    session: Session, *, intent_id: int, expected_status: str, now: datetime
) -> bool:
    """`expected_status` -> `pending`, due now, with a fresh budget of ambiguous tries.

    `post_started_at` is kept on purpose: if an earlier try may have reached Lago, the next
    send reconciles with Lago's list before it POSTs again. Returns False if the row is gone
    or its status changed meanwhile.
    """
    result = session.execute(
        update(Intent)
        .where(Intent.id == intent_id, Intent.status == expected_status)
        .values(
            status="pending",
            next_attempt_at=now,
            ambiguous_tries=0,
            lease_owner=None,
            lease_expires_at=None,
            last_error_code=MANUAL_RETRY_CODE,
            last_error=f"re-queued by an operator (was {expected_status})",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
