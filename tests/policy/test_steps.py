"""Step schedules and escalation: each step on its own day, its own email and window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import DecisionKind, GroupState, Reason, decide

# Oldest invoice due 2024-03-01 (a Friday). `after_days: N` = from the start of 03-(02+N).
STEPS = policy_set(
    """
  - name: stepped
    min_overdue_cents: {USD: 100}
    grace_days: 2
    email: ar@seller.example
    steps:
      - {after_days: 0}
      - {after_days: 7, email: {metadata_key: finance_email}}
      - {after_days: 14, email: cfo@buyer.example,
         send_window: {start_hour: 9, end_hour: 12}}
"""
)
DAY = timedelta(days=1)


def day(n: int) -> datetime:
    """Start of the day that is `n` whole days after the due date (UTC customer)."""
    return datetime(2024, 3, 2, tzinfo=UTC) + n * DAY


def test_first_step_waits_for_the_grace_period_even_at_day_zero() -> None:
    decision = decide(STEPS, group(), GroupState(), day(1))
    assert (decision.kind, decision.reason) == (DecisionKind.WAIT, Reason.IN_GRACE_PERIOD)
    assert decision.next_eligible_at == day(2)
    assert decide(STEPS, group(), GroupState(), day(2)).kind is DecisionKind.ATTEMPT


def test_a_step_is_due_on_its_day_counted_from_the_oldest_due_date() -> None:
    state = GroupState(attempts_used=1, last_attempt_at=day(2) + timedelta(hours=3))
    early = decide(STEPS, group(), state, day(7) - timedelta(seconds=1))
    assert (early.kind, early.reason, early.next_eligible_at) == (
        DecisionKind.WAIT,
        Reason.TOO_SOON,
        day(7),
    )
    assert "Step 2 of 3" in early.detail
    now = day(7)
    attempt = decide(STEPS, group(), state, now)
    assert attempt.kind is DecisionKind.ATTEMPT
    assert attempt.attempt_number == 2


def test_a_step_can_name_a_customer_metadata_contact() -> None:
    who = customer(metadata={"finance_email": "finance@buyer.example"})
    state = GroupState(attempts_used=1, last_attempt_at=day(2))
    decision = decide(STEPS, group(who=who), state, day(8))
    assert decision.email == "finance@buyer.example"


def test_a_missing_metadata_contact_falls_back_to_the_policy_email_and_says_so() -> None:
    who = customer(metadata={"finance_email": "not an address"})
    state = GroupState(attempts_used=1, last_attempt_at=day(2))
    decision = decide(STEPS, group(who=who), state, day(8))
    assert decision.email == "ar@seller.example"
    assert "no address in metadata.finance_email" in decision.detail


def test_the_first_step_uses_the_policy_email_and_the_last_its_own() -> None:
    assert decide(STEPS, group(), GroupState(), day(2)).email == "ar@seller.example"
    state = GroupState(attempts_used=2, last_attempt_at=day(8))
    last = decide(STEPS, group(), state, day(14) + timedelta(hours=10))
    assert (last.kind, last.email) == (DecisionKind.ATTEMPT, "cfo@buyer.example")


def test_a_step_has_its_own_send_window() -> None:
    state = GroupState(attempts_used=2, last_attempt_at=day(8))
    decision = decide(STEPS, group(), state, day(14) + timedelta(hours=13))
    assert decision.reason is Reason.OUTSIDE_SEND_WINDOW
    assert decision.next_eligible_at == day(15) + timedelta(hours=9)


def test_a_late_group_never_gets_two_steps_on_one_day() -> None:
    # First seen on day 20: step 1 goes now; step 2 (day 7) is overdue but waits a day.
    sent = day(20) + timedelta(hours=16)
    state = GroupState(attempts_used=1, last_attempt_at=sent)
    same_day = decide(STEPS, group(), state, day(20) + timedelta(hours=23))
    assert same_day.reason is Reason.TOO_SOON
    assert same_day.next_eligible_at == day(21)
    assert "one step per day" in same_day.detail


def test_the_number_of_attempts_is_the_number_of_steps() -> None:
    state = GroupState(attempts_used=3, last_attempt_at=day(15))
    decision = decide(STEPS, group(), state, day(40))
    assert (decision.kind, decision.reason) == (
        DecisionKind.EXHAUSTED,
        Reason.MAX_ATTEMPTS_REACHED,
    )


def test_steps_count_in_the_customer_timezone() -> None:
    tokyo = customer(timezone="Asia/Tokyo")
    # Day 2 starts at 2024-03-04 00:00 Tokyo = 03-03 15:00 UTC.
    decision = decide(STEPS, group(who=tokyo), GroupState(), datetime(2024, 3, 3, 14, tzinfo=UTC))
    assert decision.next_eligible_at == datetime(2024, 3, 3, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("steps: [{after_days: 3}, {after_days: 3}]", "one step per day"),
        ("steps: [{after_days: 5}, {after_days: 2}]", "greater than the step before"),
        ("steps: [{after_days: 0}]\n    days_between_attempts: 2", "steps already set"),
        ("steps: [{after_days: 0, email: nobody}]", "invalid email"),
    ],
)
def test_bad_step_schedules_are_refused_with_one_line(body: str, problem: str) -> None:
    from config.policies import PolicyFileError

    with pytest.raises(PolicyFileError, match=problem):
        policy_set(f"  - name: p\n    min_overdue_cents: {{USD: 1}}\n    {body}\n")


def test_due_dates_start_the_schedule_not_the_newest_invoice() -> None:
    both = group(
        invoice("old", due_date=date(2024, 3, 1)), invoice("new", due_date=date(2024, 3, 20))
    )
    state = GroupState(attempts_used=1, last_attempt_at=day(2))
    assert decide(STEPS, both, state, day(7)).kind is DecisionKind.ATTEMPT
