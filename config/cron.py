"""Five-field cron expressions: the one parser behind the policy file's `schedule.cron`, the
Celery beat schedule and the tick slot of a beat-triggered sweep.

The policy loader, beat and the slot must agree on every expression, so the language is the
part on which classic cron and Celery's crontab agree, and nothing more:

- fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec) and day of
  week (0-6 or sun-sat, 0 = Sunday), evaluated in UTC;
- each field a comma list of `*`, `*/STEP`, `N`, `A-B` or `A-B/STEP` with A <= B;
- refused: `L`, `W`, `#`, `?`, `@daily` and other nicknames, 7 for Sunday, ranges that wrap
  around (`fri-mon`), a day of month that no chosen month has (`31 2`), and restricting both
  the day of month and the day of week (classic cron fires when EITHER matches, Celery only
  when BOTH do: refused rather than guessed).

`parse_cron(text)` returns a `Cron` (the expanded value sets) or raises `CronError` whose
message is one line naming the field and the fix.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# The longest a valid expression can wait between firings: 29 February every 4 years, or 8
# around a century that is not a leap year (2096 -> 2104).
_LOOKBACK_DAYS = 8 * 366 + 1


class CronError(ValueError):
    """The expression is not in the accepted language. `str()` is one line."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of the first name

    def number(self, text: str) -> int:
        lowered = text.lower()
        if lowered in self.names:
            return self.names.index(lowered) + self.name_base
        if not text.isdigit():
            raise CronError(f"{self.name} {text!r} is not a number{self._names_hint()}")
        value = int(text)
        if not self.low <= value <= self.high:
            hint = "; use 0 for Sunday" if self.name == "weekday" and value == 7 else ""
            raise CronError(f"{self.name} {value} is out of range {self.low}-{self.high}{hint}")
        return value

    def _names_hint(self) -> str:
        if not self.names:
            return ""
        return f" or a name ({self.names[0]}-{self.names[-1]})"

    def expand(self, text: str) -> frozenset[int]:
        values: set[int] = set()
        for item in text.split(","):
            values.update(self._item(item))
        return frozenset(values)

    def _item(self, item: str) -> range:
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{self.name} step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if span == "*":
            return range(self.low, self.high + 1, step)
        start_text, dash, end_text = span.partition("-")
        if not start_text:
            raise CronError(f"{self.name} item {item!r} is empty or malformed")
        start = self.number(start_text)
        if not dash:
            if slash:
                raise CronError(
                    f"{self.name} {item!r}: a step needs a range, e.g. {start}-{self.high}/{step}"
                )
            return range(start, start + 1)
        end = self.number(end_text)
        if start > end:
            raise CronError(
                f"{self.name} range {span!r} runs backwards; split it, e.g. "
                f"{start}-{self.high},{self.low}-{end}"
            )
        return range(start, end + 1, step)


MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY = _Field("day of month", 1, 31)
MONTH = _Field("month", 1, 12, MONTH_NAMES, name_base=1)
WEEKDAY = _Field("weekday", 0, 6, WEEKDAY_NAMES)
FIELDS = (MINUTE, HOUR, DAY, MONTH, WEEKDAY)


@dataclass(frozen=True, slots=True)
class Cron:
    """An expanded expression: the minutes, hours, days, months and weekdays (0 = Sunday)
    at which it fires, in UTC."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def fields(self) -> tuple[str, str, str, str, str]:
        """The five fields in canonical form: `*` for a whole range, else the sorted values
        (e.g. `"0,15,30,45"`), for a scheduler that parses cron text itself."""
        sets = (self.minutes, self.hours, self.days, self.months, self.weekdays)
        texts = [
            "*" if values == frozenset(range(spec.low, spec.high + 1)) else _joined(values)
            for spec, values in zip(FIELDS, sets, strict=True)
        ]
        return texts[0], texts[1], texts[2], texts[3], texts[4]

    def fires_on(self, day: date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days
            and day.isoweekday() % 7 in self.weekdays
        )

    def matches(self, moment: datetime) -> bool:
        """Does it fire at this minute (`moment` aware; seconds ignored)?"""
        moment = _utc(moment)
        return (
            self.fires_on(moment.date())
            and moment.hour in self.hours
            and moment.minute in self.minutes
        )

    def previous(self, at: datetime) -> datetime:
        """The latest firing at or before `at` (aware), in UTC."""
        at = _utc(at).replace(second=0, microsecond=0)
        day = at.date()
        for _ in range(_LOOKBACK_DAYS):
            if self.fires_on(day):
                fired = self._last_time_of(day, at)
                if fired is not None:
                    return fired
            day -= timedelta(days=1)
        raise CronError(f"cron {self.expression!r} never fires")  # pragma: no cover

    def _last_time_of(self, day: date, at: datetime) -> datetime | None:
        for hour in sorted(self.hours, reverse=True):
            for minute in sorted(self.minutes, reverse=True):
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if moment <= at:
                    return moment
        return None


def parse_cron(expression: str) -> Cron:
    """Parse and check `expression`; raise `CronError` (one line) when it is refused."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields 'minute hour day month weekday', got {len(fields)}")
    minutes, hours, days, months, weekdays = (
        spec.expand(text) for spec, text in zip(FIELDS, fields, strict=True)
    )
    if fields[2] != "*" and fields[4] != "*":
        raise CronError(
            "restrict the day of month or the weekday, not both (cron flavours disagree on "
            "what that means); put * in one of them"
        )
    longest = max(_month_length(month) for month in months)
    if min(days) > longest:
        raise CronError(
            f"day of month {min(days)} never occurs in month {','.join(map(str, sorted(months)))}"
        )
    return Cron(expression, minutes, hours, days, months, weekdays)


def _joined(values: frozenset[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


def _month_length(month: int) -> int:
    return calendar.monthrange(2024, month)[1]  # a leap year: 29 February exists


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(UTC)
