"""How often each customer was asked lately: the facts contact caps are decided from.

A contact is one of our payment requests to the customer, in any currency or billing entity:
sent or adopted (at `sent_at`), or still on its way (pending or sending, at `created_at`: it
will be sent, so it already counts). The caller owns the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from worker.store.models import OPEN_INTENT_STATUSES
from worker.store.models import PaymentRequestIntent as Intent

_IN_CHUNK = 500
_SENT = ("sent", "adopted")


def recent_contacts(
    session: Session, *, external_customer_ids: Iterable[str], since: datetime
) -> dict[str, list[datetime]]:
    """{customer: instants of their requests after `since`, oldest first} (chunked IN)."""
    at = func.coalesce(Intent.sent_at, Intent.created_at)
    wanted = sorted(set(external_customer_ids))
    found: dict[str, list[datetime]] = defaultdict(list)
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = session.execute(
            select(Intent.external_customer_id, Intent.sent_at, Intent.created_at)
            .where(
                Intent.external_customer_id.in_(chunk),
                or_(Intent.status.in_(_SENT), Intent.status.in_(OPEN_INTENT_STATUSES)),
                at > since,
            )
            .order_by(at)
        )
        for customer, sent_at, created_at in rows:
            found[customer].append(sent_at or created_at)
    return dict(found)
