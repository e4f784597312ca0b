"""Public holiday calendars (the `holidays` package), per country and year, memoized.

A calendar is computed, not fetched: the package holds the rules. Each (country, year) is
built once per process; a country the package does not know has no holidays.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache


@lru_cache(maxsize=4096)
def holiday_dates(country: str, year: int) -> frozenset[date]:
    """The public holidays of `country` (ISO 3166-1 alpha-2) in `year`; empty if unknown."""
    import holidays  # here: only a send window that skips holidays needs the package

    try:
        calendar = holidays.country_holidays(country.upper(), years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(calendar)


@lru_cache(maxsize=256)
def has_calendar(country: str) -> bool:
    import holidays

    return country.upper() in holidays.list_supported_countries()


def is_holiday(country: str, day: date) -> bool:
    return day in holiday_dates(country, day.year)
