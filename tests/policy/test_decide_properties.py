"""Properties of decide() over random groups, ledger states and instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import DecisionKind, Group, GroupState, Reason, decide

POLICIES = policy_set(
    """
  - name: windowed
    match: {currencies: [USD]}
    min_overdue_cents: {USD: 1000}
    grace_days: 2
    days_between_attempts: 2
    max_attempts: 4
    send_window: {start_hour: 1, end_hour: 4, weekdays: [sat, sun]}
  - name: plain
    min_overdue_cents: {EUR: 0}
    max_attempts: 2
"""
)
TIMEZONES = st.sampled_from(
    [None, "UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kathmandu",
     "Pacific/Chatham", "Bad/Zone"]
)  # fmt: skip
INSTANTS = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Group, GroupState, datetime]:
    currency = draw(st.sampled_from(["USD", "EUR"]))
    count = draw(st.integers(1, 3))
    invoices = tuple(
        invoice(
            f"inv-{index}",
            due=draw(st.integers(0, 5000)),
            currency=currency,
            due_date=draw(st.dates(date(2023, 1, 1), date(2026, 12, 31))),
        )
        for index in range(count)
    )
    who = customer(timezone=draw(TIMEZONES))
    now = draw(INSTANTS)
    last = draw(
        st.none() | st.builds(lambda d: now - d, st.timedeltas(timedelta(0), timedelta(days=5)))
    )
    state = GroupState(
        attempts_used=draw(st.integers(0, 5)),
        last_attempt_at=last,
        paused=draw(st.booleans()),
        open_intent=draw(st.booleans()),
    )
    return group(*invoices, who=who, currency=currency), state, now


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_waiting_ends_with_an_attempt_at_next_eligible_at(
    scenario: tuple[Group, GroupState, datetime],
) -> None:
    g, state, now = scenario
    decision = decide(POLICIES, g, state, now)

    if decision.kind is DecisionKind.ATTEMPT:
        assert decision.attempt_number == state.attempts_used + 1
        assert decision.reason is Reason.ELIGIBLE
    if decision.kind is DecisionKind.WAIT and decision.next_eligible_at is not None:
        assert decision.next_eligible_at > now
        later = decide(POLICIES, g, state, decision.next_eligible_at)
        assert later.kind is DecisionKind.ATTEMPT, later.detail
    if decision.kind is DecisionKind.WAIT and decision.next_eligible_at is None:
        assert decision.reason is Reason.OPEN_INTENT
