"""The tick slot: which cron firing a beat-triggered sweep belongs to.

Two beats (or one beat firing twice) for the same cron firing compute the same slot, and the
ledger's UNIQUE slot column lets only the first sweep run.
"""

from __future__ import annotations

from datetime import datetime

from config.cron import parse_cron


def tick_slot(cron: str, now: datetime) -> str:
    """The latest firing of `cron` at or before `now` (UTC), e.g. `"2026-11-22T00:30Z"`.

    The same parser as the policy loader and beat (`config.cron`), so the slot is a firing
    beat really makes."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return parse_cron(cron).previous(now).strftime("%Y-%m-%dT%H:%MZ")
