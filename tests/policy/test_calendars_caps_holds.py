"""Holiday calendars, contact caps and holds with expiry, on the pure layer (clock passed in)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import DecisionKind, GroupState, Reason, decide
from worker.policy.caps import cap_frees_at

CALENDAR = policy_set(
    """
  - name: fr
    match: {countries: [FR, DE]}
    min_overdue_cents: {EUR: 100}
    send_window: {start_hour: 9, end_hour: 17, skip_holidays: true}
  - name: own-country
    match: {metadata: {calendar: own}}
    min_overdue_cents: {EUR: 100}
    send_window: {start_hour: 9, end_hour: 17, skip_holidays: true}
  - name: override
    min_overdue_cents: {EUR: 100}
    send_window: {start_hour: 9, end_hour: 17, skip_holidays: true, holiday_country: DE}
"""
)
PARIS = customer(country="FR", timezone="Europe/Paris")
PARIS_EUR = group(invoice(currency="EUR", due_date=date(2026, 4, 1)), who=PARIS, currency="EUR")


def test_a_public_holiday_of_the_customer_country_is_skipped() -> None:
    # Easter Monday 2026-04-06 is a holiday in France: the window opens Tuesday 09:00 Paris.
    monday_morning = datetime(2026, 4, 6, 8, tzinfo=UTC)  # 10:00 in Paris
    decision = decide(CALENDAR, PARIS_EUR, GroupState(), monday_morning)
    assert decision.reason is Reason.OUTSIDE_SEND_WINDOW
    assert decision.next_eligible_at == datetime(2026, 4, 7, 7, tzinfo=UTC)
    assert "holidays of FR skipped" in decision.detail


def test_an_ordinary_day_is_open() -> None:
    thursday = datetime(2026, 4, 9, 8, tzinfo=UTC)
    assert decide(CALENDAR, PARIS_EUR, GroupState(), thursday).kind is DecisionKind.ATTEMPT


def test_the_holiday_is_the_local_date_of_the_customer() -> None:
    # 2026-05-01 (Labour Day, FR) begins at 22:00 UTC on 04-30 in Paris; 04-30 is open.
    evening = datetime(2026, 4, 30, 14, tzinfo=UTC)  # 16:00 Paris, Thursday
    assert decide(CALENDAR, PARIS_EUR, GroupState(), evening).kind is DecisionKind.ATTEMPT
    next_day = decide(CALENDAR, PARIS_EUR, GroupState(), datetime(2026, 4, 30, 15, tzinfo=UTC))
    # Closed at 17:00 Paris on 04-30, 05-01 is a holiday, 05-02 and 05-03 are a weekend-less
    # window (every day listed), so it opens 05-02 09:00 Paris.
    assert next_day.next_eligible_at == datetime(2026, 5, 2, 7, tzinfo=UTC)


def test_a_policy_can_name_the_holiday_country() -> None:
    # German Unity Day 2026-10-03 is not a French holiday; the override policy skips it.
    us_customer = customer(country="US", timezone="Europe/Berlin")
    eur = group(invoice(currency="EUR", due_date=date(2026, 9, 1)), who=us_customer, currency="EUR")
    decision = decide(CALENDAR, eur, GroupState(), datetime(2026, 10, 3, 8, tzinfo=UTC))
    assert decision.reason is Reason.OUTSIDE_SEND_WINDOW
    assert decision.next_eligible_at == datetime(2026, 10, 4, 7, tzinfo=UTC)


def test_a_customer_without_a_country_skips_no_holiday_and_says_so() -> None:
    nowhere = customer(country=None, timezone="UTC", metadata={"calendar": "own"})
    eur = group(invoice(currency="EUR", due_date=date(2026, 3, 1)), who=nowhere, currency="EUR")
    decision = decide(CALENDAR, eur, GroupState(), datetime(2026, 12, 25, 18, tzinfo=UTC))
    assert decision.reason is Reason.OUTSIDE_SEND_WINDOW
    assert decision.next_eligible_at == datetime(2026, 12, 26, 9, tzinfo=UTC)
    assert "no holiday calendar" in decision.detail


CAPPED = policy_set(
    """
  - name: capped
    min_overdue_cents: {USD: 100, EUR: 100}
    contact_cap: {max_requests: 2, per_days: 7}
"""
)
NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)


def test_a_customer_at_the_cap_waits_until_the_oldest_request_leaves_the_window() -> None:
    contacts = (NOW - timedelta(days=6), NOW - timedelta(days=1))
    decision = decide(CAPPED, group(), GroupState(recent_contacts=contacts), NOW)
    assert (decision.kind, decision.reason) == (DecisionKind.WAIT, Reason.CONTACT_CAP)
    assert decision.next_eligible_at == NOW + timedelta(days=1)
    assert "2 per 7d" in decision.detail


def test_requests_older_than_the_window_do_not_count() -> None:
    contacts = (NOW - timedelta(days=7), NOW - timedelta(days=1))
    assert decide(CAPPED, group(), GroupState(recent_contacts=contacts), NOW).kind is (
        DecisionKind.ATTEMPT
    )


def test_the_cap_is_per_customer_across_currencies() -> None:
    # The contacts are the customer's, whatever group they were for: EUR waits too.
    eur = group(invoice(currency="EUR"), currency="EUR")
    contacts = (NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert decide(CAPPED, eur, GroupState(recent_contacts=contacts), NOW).reason is (
        Reason.CONTACT_CAP
    )


def test_cap_frees_at_needs_enough_requests_to_leave() -> None:
    from config.policies import ContactCap

    cap = ContactCap(max_requests=1, per_days=2)
    times = [NOW - timedelta(hours=30), NOW - timedelta(hours=5)]
    assert cap_frees_at(cap, times, NOW) == NOW - timedelta(hours=5) + timedelta(days=2)
    assert cap_frees_at(cap, [], NOW) is None


def test_a_hold_waits_until_its_end_and_then_dunning_resumes_by_itself() -> None:
    until = NOW + timedelta(days=3)
    held = GroupState(paused=True, hold_until=until)
    decision = decide(CAPPED, group(), held, NOW)
    assert (decision.kind, decision.reason, decision.next_eligible_at) == (
        DecisionKind.WAIT,
        Reason.ON_HOLD_UNTIL,
        until,
    )
    assert decide(CAPPED, group(), held, until).kind is DecisionKind.ATTEMPT


def test_a_pause_without_end_stays_a_skip() -> None:
    decision = decide(CAPPED, group(), GroupState(paused=True), NOW)
    assert (decision.kind, decision.reason) == (DecisionKind.SKIP, Reason.PAUSED)
