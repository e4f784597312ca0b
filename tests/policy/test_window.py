"""Send windows: edges, weekend roll-over, DST switch days and timezone fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config.policies import SendWindow
from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import DecisionKind, GroupState, Reason, decide
from worker.policy.window import is_open, next_opening, resolve_timezone

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
WEEKDAYS_9_TO_17 = SendWindow(start_hour=9, end_hour=17, weekdays=WORKDAYS)
EVERY_DAY_2_TO_5 = SendWindow(start_hour=2, end_hour=5)
UNTIL_MIDNIGHT = SendWindow(start_hour=22, end_hour=24, weekdays=("sat",))


def local(zone: ZoneInfo, year: int, month: int, day: int, *hms: int) -> datetime:
    hour, minute, second = (*hms, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=zone)


def utc(year: int, month: int, day: int, *hms: int) -> datetime:
    return local(ZoneInfo("UTC"), year, month, day, *hms).astimezone(UTC)


@pytest.mark.parametrize(
    ("window", "zone", "at", "expected"),
    [
        # 2024-03-15 is a Friday; New York is on EDT (UTC-4) from 2024-03-10.
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 15, 9), local(NY, 2024, 3, 15, 9),
                     id="start-hour-is-open"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 15, 8, 59, 59),
                     local(NY, 2024, 3, 15, 9), id="just-before-start-waits"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 15, 16, 59, 59),
                     local(NY, 2024, 3, 15, 16, 59, 59), id="just-before-end-is-open"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 15, 17),
                     local(NY, 2024, 3, 18, 9), id="end-hour-is-closed-rolls-over-weekend"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 16, 12),
                     local(NY, 2024, 3, 18, 9), id="saturday-rolls-to-monday"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 3, 9, 12), utc(2024, 3, 11, 13),
                     id="weekend-across-spring-forward-opens-at-edt"),
        pytest.param(WEEKDAYS_9_TO_17, NY, local(NY, 2024, 11, 1, 18), utc(2024, 11, 4, 14),
                     id="weekend-across-fall-back-opens-at-est"),
        # 2024-03-10 02:00 does not exist in New York: the window opens when the gap ends.
        pytest.param(EVERY_DAY_2_TO_5, NY, utc(2024, 3, 10, 6), utc(2024, 3, 10, 7),
                     id="spring-forward-start-in-gap-opens-after-gap"),
        pytest.param(EVERY_DAY_2_TO_5, PARIS, utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1),
                     id="paris-spring-forward"),
        # 2024-11-03 01:00-02:00 happens twice in New York; 02:00 EST = 07:00 UTC.
        pytest.param(EVERY_DAY_2_TO_5, NY, utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 7),
                     id="fall-back-repeated-hour-not-open-yet"),
        pytest.param(UNTIL_MIDNIGHT, PARIS, local(PARIS, 2024, 6, 1, 23, 59),
                     local(PARIS, 2024, 6, 1, 23, 59), id="end-hour-24-open-until-midnight"),
        pytest.param(UNTIL_MIDNIGHT, PARIS, local(PARIS, 2024, 6, 2, 0),
                     local(PARIS, 2024, 6, 8, 22), id="midnight-closes-single-day-window"),
    ],
)  # fmt: skip
def test_next_opening(window: SendWindow, zone: ZoneInfo, at: datetime, expected: datetime) -> None:
    opening = next_opening(window, at, zone)

    assert opening == expected
    assert opening.tzinfo is UTC
    assert is_open(window, opening, zone)
    assert is_open(window, at, zone) == (opening == at)


def test_opening_is_never_before_at_and_never_skips_an_open_minute() -> None:
    zone = NY
    start = utc(2024, 3, 8)
    for minute in range(0, 4 * 24 * 60, 7):  # across the spring-forward weekend
        at = start + timedelta(minutes=minute)
        opening = next_opening(WEEKDAYS_9_TO_17, at, zone)
        assert opening >= at
        probe = at
        while probe < opening:  # nothing between at and the opening is open
            assert not is_open(WEEKDAYS_9_TO_17, probe, zone)
            probe += timedelta(minutes=30)


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(WEEKDAYS_9_TO_17, datetime(2024, 3, 15, 12), NY)


@pytest.mark.parametrize(
    ("name", "fallback", "expected", "fell_back"),
    [
        ("America/New_York", "UTC", "America/New_York", False),
        (None, "UTC", "UTC", True),
        ("", "Europe/Paris", "Europe/Paris", True),
        ("Mars/Olympus_Mons", "Europe/Paris", "Europe/Paris", True),
        ("../../etc/passwd", "UTC", "UTC", True),
        ("Nowhere/Else", "Also/Nowhere", "UTC", True),
    ],
)
def test_resolve_timezone(name: str | None, fallback: str, expected: str, fell_back: bool) -> None:
    zone, used_fallback = resolve_timezone(name, fallback)

    assert (zone.key, used_fallback) == (expected, fell_back)


WINDOWED = policy_set(
    """
  - name: office-hours
    min_overdue_cents: {USD: 0}
    send_window: {start_hour: 9, end_hour: 17, weekdays: [mon, tue, wed, thu, fri],
                  fallback_timezone: Europe/Paris}
"""
)


def test_decide_waits_for_window_in_customer_timezone() -> None:
    saturday_noon_ny = local(NY, 2024, 3, 16, 12)
    g = group(invoice(), who=customer(timezone="America/New_York"))

    decision = decide(WINDOWED, g, GroupState(), saturday_noon_ny)

    assert (decision.kind, decision.reason) == (DecisionKind.WAIT, Reason.OUTSIDE_SEND_WINDOW)
    assert decision.next_eligible_at == local(NY, 2024, 3, 18, 9)


@pytest.mark.parametrize("timezone", [None, "Not/AZone"])
def test_decide_falls_back_to_policy_timezone(timezone: str | None) -> None:
    monday_8_paris = local(PARIS, 2024, 3, 18, 8)
    g = group(invoice(), who=customer(timezone=timezone))

    decision = decide(WINDOWED, g, GroupState(), monday_8_paris)

    assert decision.reason is Reason.OUTSIDE_SEND_WINDOW
    assert decision.next_eligible_at == local(PARIS, 2024, 3, 18, 9)
    assert "using Europe/Paris" in decision.detail


def test_decide_falls_back_to_utc_without_window() -> None:
    no_window = policy_set("  - name: any\n    min_overdue_cents: {USD: 0}\n    grace_days: 0\n")
    g = group(invoice(), who=customer(timezone="Bad/Zone"))

    decision = decide(no_window, g, GroupState(), utc(2024, 3, 1, 23))

    # due 2024-03-01, grace 0: eligible from 2024-03-02 00:00 UTC (the fallback timezone)
    assert decision.reason is Reason.IN_GRACE_PERIOD
    assert decision.next_eligible_at == utc(2024, 3, 2)


def test_wait_reason_names_the_later_constraint_and_window_applies_after_it() -> None:
    g = group(invoice(), who=customer(timezone="America/New_York"))
    last = local(NY, 2024, 3, 14, 10)  # Thursday; gap of 1 day ends Friday 10:00 + 1 tick
    state = GroupState(attempts_used=1, last_attempt_at=last)
    gap_policy = policy_set(
        """
  - name: gap
    min_overdue_cents: {USD: 0}
    days_between_attempts: 3
    max_attempts: 5
    send_window: {start_hour: 9, end_hour: 17, weekdays: [mon, tue, wed, thu, fri]}
"""
    )

    decision = decide(gap_policy, g, state, local(NY, 2024, 3, 15, 10))

    # last + 3 days = Sunday 10:00 -> window opens Monday 09:00 New York time
    assert decision.reason is Reason.TOO_SOON
    assert decision.next_eligible_at == local(NY, 2024, 3, 18, 9)
