"""Lago webhooks seen: one row per `X-Lago-Unique-Key` (Lago reuses it on every retry)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import WebhookEvent


def webhook_seen(session: Session, unique_key: str) -> bool:
    found = session.execute(
        select(WebhookEvent.id).where(WebhookEvent.unique_key == unique_key)
    ).first()
    return found is not None


def insert_webhook_event(
    session: Session, *, unique_key: str, webhook_type: str, now: datetime
) -> bool:
    """Insert the event in the caller's transaction; False if the key is already there.

    A concurrent duplicate delivery conflicts on the UNIQUE key and inserts nothing, so
    whatever the caller applies in the same transaction happens once.
    """
    statement = (
        insert_for(session, WebhookEvent)
        .values(
            unique_key=unique_key,
            webhook_type=webhook_type[:128],
            received_at=now,
            processed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["unique_key"])
        .returning(WebhookEvent.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None
