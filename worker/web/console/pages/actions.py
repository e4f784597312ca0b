"""Action list: who needs a human (needs review, refused, blocked, paused, exhausted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from worker.read.actions import ACTION_KINDS, action_list
from worker.read.intents import open_rivals
from worker.store.requeue import RETRYABLE_STATUSES


def to_do(session: Session, *, now: datetime) -> dict[str, Any]:
    items = action_list(session, now=now)
    by_kind = {kind: [item for item in items if item.kind == kind] for kind in ACTION_KINDS}
    rivals = open_rivals(session, (item.intent_id for item in items if item.intent_id))
    return {
        "by_kind": by_kind,
        "total": len(items),
        "retryable": RETRYABLE_STATUSES,
        "open_rivals": rivals,
    }
