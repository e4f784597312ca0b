"""The cron language of `schedule.cron`: what is accepted, what is refused (one line), and the
latest firing before an instant. Equivalence with Celery beat is in tests/tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.cron import CronError, parse_cron


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 0 31 2 *", "day of month 31 never occurs in month 2"),
        ("0 0 30 2 *", "day of month 30 never occurs in month 2"),
        ("0 0 31 4,6 *", "day of month 31 never occurs in month 4,6"),
        ("0 0 * * 7", "weekday 7 is out of range 0-6; use 0 for Sunday"),
        ("0 0 * * 1,7", "weekday 7 is out of range 0-6; use 0 for Sunday"),
        ("0 0 L * *", "day of month 'L' is not a number"),
        ("0 0 * * 5#3", "weekday '5#3' is not a number or a name (sun-sat)"),
        ("0 0 ? * *", "day of month '?' is not a number"),
        ("0 0 15W * *", "day of month '15W' is not a number"),
        ("0 0 * * 5L", "weekday '5L' is not a number"),
        ("@daily", "expected 5 fields"),
        ("0 0 * * * *", "expected 5 fields"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("*/0 * * * *", "minute step '0' must be a whole number >= 1"),
        ("5/15 * * * *", "a step needs a range"),
        ("0 0 * * fri-mon", "weekday range 'fri-mon' runs backwards"),
        ("0 0 1 * 1", "restrict the day of month or the weekday, not both"),
        ("0 0 */2 * 1-5", "restrict the day of month or the weekday, not both"),
        ("1,,2 * * * *", "minute item '' is empty or malformed"),
        ("-5 * * * *", "is empty or malformed"),
        ("H * * * *", "minute 'H' is not a number"),
    ],
)
def test_refused_expressions_say_why_in_one_line(expression: str, problem: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_names_steps_lists_and_ranges_expand() -> None:
    cron = parse_cron("*/20 8-18/5 * jan,JUL-aug mon-fri")
    assert cron.minutes == {0, 20, 40}
    assert cron.hours == {8, 13, 18}
    assert cron.days == frozenset(range(1, 32))
    assert cron.months == {1, 7, 8}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * sun").weekdays == {0}
    assert parse_cron("0 0 29 2 *").days == {29}


@pytest.mark.parametrize(
    ("expression", "at", "fired"),
    [
        ("*/15 * * * *", datetime(2026, 11, 22, 0, 44, 59, tzinfo=UTC), (2026, 11, 22, 0, 30)),
        ("0 9 * * 1-5", datetime(2026, 11, 22, 12, 0, tzinfo=UTC), (2026, 11, 20, 9, 0)),
        ("0 0 29 2 *", datetime(2026, 11, 22, tzinfo=UTC), (2024, 2, 29, 0, 0)),
        ("0 0 29 2 *", datetime(2104, 1, 1, tzinfo=UTC), (2096, 2, 29, 0, 0)),
        ("30 23 31 * *", datetime(2026, 12, 1, tzinfo=UTC), (2026, 10, 31, 23, 30)),
        ("* * * * *", datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), (2026, 1, 1, 0, 0)),
    ],
)
def test_previous_is_the_latest_firing_at_or_before(
    expression: str, at: datetime, fired: tuple[int, ...]
) -> None:
    assert parse_cron(expression).previous(at) == datetime(*fired, tzinfo=UTC)


def test_previous_is_the_last_matching_minute_found_by_walking() -> None:
    cron = parse_cron("5,35 */7 9-11,20 * *")
    last: datetime | None = None
    minute = datetime(2026, 2, 8, tzinfo=UTC)
    while minute < datetime(2026, 2, 21, 12, tzinfo=UTC):
        if cron.matches(minute):
            last = minute
        if last is not None and minute.minute % 11 == 0:
            assert cron.previous(minute + timedelta(seconds=59)) == last
        minute += timedelta(minutes=1)
    assert last == datetime(2026, 2, 20, 21, 35, tzinfo=UTC)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *").previous(datetime(2026, 1, 1))
