"""Plain formatting shared by every rendering of `dunning status` and `dunning report`
(terminal, CSV, HTML) and the console: money, rates, times, and the action list's cells.

It imports nothing heavy (no SQLAlchemy, no policies), so `dunning status` can render with it
without loading the report's modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.read.actions import ActionItem


def rate(recovered: int, asked: int) -> float:
    return round(recovered / asked, 4) if asked > 0 else 0.0


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{part:02d}"


def format_money(cents: int | None, currency: str | None) -> str:
    if cents is None:
        return "-"
    return f"{format_cents(cents)} {currency}" if currency else format_cents(cents)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def counted(count: int, noun: str) -> str:
    """`1 invoice`, `3 invoices` (nouns that take an s)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_rate(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def in_words(delta: timedelta) -> str:
    """'in 35 s', 'in 4 min', 'in 2 h'."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 90:
        return f"in {seconds} s"
    if seconds < 5400:
        return f"in {round(seconds / 60)} min"
    if seconds < 172_800:
        return f"in {round(seconds / 3600)} h"
    return f"in {round(seconds / 86400)} d"


ACTION_TITLES = {
    "needs_review": "Needs review",
    "blocked": "Blocked (no licence)",
    "refused": "Refused by Lago",
    "paused": "Paused",
    "exhausted": "Attempts exhausted",
}
ACTION_HEADERS = ("What", "Customer", "Amount", "Intent", "Since", "Detail")


def action_cells(items: Sequence[ActionItem]) -> list[list[str]]:
    return [
        [
            ACTION_TITLES[item.kind],
            item.external_customer_id,
            format_money(item.amount_cents, item.currency),
            f"#{item.intent_id}" if item.intent_id else "-",
            format_time(item.since),
            item.detail or "-",
        ]
        for item in items
    ]
