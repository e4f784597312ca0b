"""Send windows: local opening hours evaluated in the customer's timezone.

A window is the half-open interval [start_hour, end_hour) of local wall-clock time on each
listed weekday (end_hour 24 = midnight). All instants are compared in UTC, so daylight-saving
changes are handled by the timezone database: a start hour that does not exist on a
spring-forward day opens at the first instant after the gap (e.g. 02:00 -> 03:00 CEST), and
a repeated hour on a fall-back day opens at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.policies import SendWindow


def resolve_timezone(name: str | None, fallback: str = "UTC") -> tuple[ZoneInfo, bool]:
    """The customer's timezone, or `fallback` when missing or unknown; True if it fell back."""
    if name:
        try:
            return ZoneInfo(name), False
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        return ZoneInfo(fallback), True
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo("UTC"), True


def _local_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of `hour`:00 local time on `day` (hour 24 = next day's midnight)."""
    if hour == 24:
        day, hour = day + timedelta(days=1), 0
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def next_opening(window: SendWindow, at: datetime, zone: ZoneInfo) -> datetime:
    """The first instant >= `at` (UTC) inside the window; `at` itself when already open."""
    if at.utcoffset() is None:
        raise ValueError("`at` must be timezone-aware")
    at_utc = at.astimezone(UTC)
    first_day = at_utc.astimezone(zone).date()
    weekdays = window.weekday_numbers
    for offset in range(8):  # one full week plus today always contains an opening
        day = first_day + timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        opens = _local_instant(day, window.start_hour, zone)
        closes = _local_instant(day, window.end_hour, zone)
        if at_utc < opens:
            return opens
        if at_utc < closes:
            return at_utc
    raise AssertionError("a send window with at least one weekday always opens within 8 days")


def is_open(window: SendWindow, at: datetime, zone: ZoneInfo) -> bool:
    """True when `at` falls inside the window."""
    return next_opening(window, at, zone) == at.astimezone(UTC)
