"""Send windows: local opening hours evaluated in the customer's timezone.

A window is the half-open interval [start_hour, end_hour) of local wall-clock time on each
listed weekday (end_hour 24 = midnight). All instants are compared in UTC, so daylight-saving
changes are handled by the timezone database: a start hour that does not exist on a
spring-forward day opens at the first instant after the gap (e.g. 02:00 -> 03:00 CEST), and
a repeated hour on a fall-back day opens at its first occurrence.

With `skip_holidays`, a public holiday of the window's `holiday_country` (or else the
customer's country) is closed all day, like a weekday not listed. The holiday is the local
date in the customer's timezone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.policies import SendWindow
from worker.policy.calendars import has_calendar, is_holiday

# A week of weekdays plus the longest run of holidays any calendar has, with room to spare.
_SEARCH_DAYS = 60


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


def holiday_country(window: SendWindow, customer_country: str | None) -> str | None:
    """The country whose holidays close the window, or None (no calendar applies)."""
    if not window.skip_holidays:
        return None
    country = window.holiday_country or (customer_country or "").upper() or None
    return country if country and has_calendar(country) else None


def _local_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of `hour`:00 local time on `day` (hour 24 = next day's midnight)."""
    if hour == 24:
        day, hour = day + timedelta(days=1), 0
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def next_opening(
    window: SendWindow, at: datetime, zone: ZoneInfo, country: str | None = None
) -> datetime:
    """The first instant >= `at` (UTC) inside the window; `at` itself when already open.

    `country` is the customer's country, used for `skip_holidays` when the window names no
    `holiday_country`.
    """
    if at.utcoffset() is None:
        raise ValueError("`at` must be timezone-aware")
    at_utc = at.astimezone(UTC)
    first_day = at_utc.astimezone(zone).date()
    weekdays = window.weekday_numbers
    calendar = holiday_country(window, country)
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        if calendar is not None and is_holiday(calendar, day):
            continue
        opens = _local_instant(day, window.start_hour, zone)
        closes = _local_instant(day, window.end_hour, zone)
        if at_utc < opens:
            return opens
        if at_utc < closes:
            return at_utc
    raise OverflowError("the send window does not open within 60 days")


def is_open(window: SendWindow, at: datetime, zone: ZoneInfo, country: str | None = None) -> bool:
    """True when `at` falls inside the window."""
    return next_opening(window, at, zone, country) == at.astimezone(UTC)
