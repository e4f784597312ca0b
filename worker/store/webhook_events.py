"""Lago webhooks seen: one row per `X-Lago-Unique-Key` (Lago reuses it on every retry) and per
signed body (`payload_digest`, the sha256 of the body the signature covers).

Lago signs the body only: the unique key can be changed by whoever captured a webhook, and
Lago's JWTs carry no expiry. Both are UNIQUE, so a replay under a new key is a duplicate too.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import WebhookEvent


def payload_digest(body: bytes) -> str:
    """The digest a webhook event is remembered by: sha256 of the raw (signed) body."""
    return hashlib.sha256(body).hexdigest()


def webhook_seen(session: Session, *, unique_key: str, digest: str) -> bool:
    found = session.execute(
        select(WebhookEvent.id).where(
            or_(WebhookEvent.unique_key == unique_key, WebhookEvent.payload_digest == digest)
        )
    ).first()
    return found is not None


def insert_webhook_event(
    session: Session, *, unique_key: str, digest: str, webhook_type: str, now: datetime
) -> bool:
    """Insert the event in the caller's transaction; False if its key or body is already there.

    A concurrent duplicate delivery conflicts on either UNIQUE column and inserts nothing, so
    whatever the caller applies in the same transaction happens once.
    """
    statement = (
        insert_for(session, WebhookEvent)
        .values(
            unique_key=unique_key,
            payload_digest=digest,
            webhook_type=webhook_type[:128],
            received_at=now,
            processed_at=now,
        )
        .on_conflict_do_nothing()  # any UNIQUE column: the key or the digest
        .returning(WebhookEvent.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None
