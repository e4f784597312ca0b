"""Next sweep: per group what the last decisions say will happen, and when (no Lago call)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from worker.read.next_sweep import group_outlook, next_sweep


def planned(session: Session, *, at: datetime | None, now: datetime) -> dict[str, Any]:
    plan = next_sweep(session, at=at, now=now)
    return {"plan": plan, "totals": plan.totals(), "groups": group_outlook(session, plan)}
