"""The tick slot: which cron firing a beat-triggered sweep belongs to.

Two beats (or one beat firing twice) for the same cron firing compute the same slot, and the
ledger's UNIQUE slot column lets only the first sweep run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter


def tick_slot(cron: str, now: datetime) -> str:
    """The latest firing of `cron` at or before `now` (UTC), e.g. `"2026-11-22T00:30Z"`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    # Firings fall on whole minutes: the last one strictly before minute+1s is <= now.
    fired: datetime = croniter(cron, minute + timedelta(seconds=1)).get_prev(datetime)
    return fired.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
