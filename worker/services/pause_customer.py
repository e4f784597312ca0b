"""Pause (or hold until a date) one customer's dunning, recorded with who, when and why.

The CLI (`dunning pause`) and the console call this one service.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from worker.services.operator import Actor
from worker.store import controls
from worker.store.db import write_tx
from worker.store.operator_actions import record_action


class PauseError(Exception):
    """The pause cannot be applied. `str()` is one line that says why."""


def parse_hold_end(value: str, now: datetime) -> datetime:
    """A hold's end: a date (held through that day, UTC: resumes at the next midnight UTC)
    or an ISO 8601 instant (UTC when no zone is given); it must be in the future."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1)
            until = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            until = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        raise PauseError("use a date like 2026-12-15 (or an ISO 8601 time)") from None
    if until <= now:
        raise PauseError(f"{text} is already past: give a later date")
    return until


def pause_customer(
    engine: Engine,
    *,
    external_customer_id: str,
    reason: str | None,
    until: datetime | None,
    now: datetime,
    actor: Actor,
) -> None:
    """No payment requests for the customer until resumed (or until `until`, a hold)."""
    if until is not None and until <= now:
        raise PauseError("a hold must end in the future: give a later date")
    ends = f"until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if until else "until resumed"
    with write_tx(engine) as session:
        record_action(
            session, actor, "pause", external_customer_id, at=now, reason=reason, detail=ends
        )
        controls.pause_customer(
            session, external_customer_id=external_customer_id, reason=reason, now=now, until=until
        )
