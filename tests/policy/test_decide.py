"""Table-driven tests for every rule of decide(), each at its boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import (
    Decision,
    DecisionKind,
    ExhaustionAction,
    ExhaustionActionKind,
    Group,
    GroupState,
    Reason,
    decide,
)

POLICIES = policy_set(
    """
  - name: base
    min_overdue_cents: {USD: 5000, EUR: 0}
    grace_days: 3
    days_between_attempts: 3
    max_attempts: {USD: 3, EUR: 2}
    on_exhausted: {action: webhook, url: "https://hooks.example.com/exhausted"}
"""
)
# Oldest invoice due 2024-03-01; grace 3 whole days -> eligible from 2024-03-05 00:00 UTC.
GRACE_END = datetime(2024, 3, 5, tzinfo=UTC)
LATER = datetime(2024, 3, 20, 12, tzinfo=UTC)
LAST = datetime(2024, 3, 10, 12, tzinfo=UTC)
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Case:
    id: str
    kind: DecisionKind
    reason: Reason
    group: Group = field(default_factory=group)
    state: GroupState = field(default_factory=GroupState)
    now: datetime = LATER
    next_eligible_at: datetime | None = None
    attempt_number: int | None = None


CASES = [
    Case("threshold-equal-attempts", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         group=group(invoice(due=5000)), next_eligible_at=LATER, attempt_number=1),
    Case("threshold-one-below-skips", DecisionKind.SKIP, Reason.BELOW_THRESHOLD,
         group=group(invoice(due=4999))),
    Case("threshold-sums-the-group", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         group=group(invoice("a", due=2500), invoice("b", due=2500)),
         next_eligible_at=LATER, attempt_number=1),
    Case("nothing-due", DecisionKind.SKIP, Reason.NOTHING_DUE,
         group=group(invoice(due=0), currency="USD")),
    Case("zero-threshold-still-needs-something-due", DecisionKind.SKIP, Reason.NOTHING_DUE,
         group=group(invoice(due=0, currency="EUR"), currency="EUR")),
    Case("grace-one-tick-before-end-waits", DecisionKind.WAIT, Reason.IN_GRACE_PERIOD,
         now=GRACE_END - TICK, next_eligible_at=GRACE_END),
    Case("grace-end-exactly-attempts", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         now=GRACE_END, next_eligible_at=GRACE_END, attempt_number=1),
    Case("grace-counts-from-oldest-invoice", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         group=group(invoice("a", due_date=date(2024, 3, 1)),
                     invoice("b", due_date=date(2024, 3, 4))),
         now=GRACE_END, next_eligible_at=GRACE_END, attempt_number=1),
    Case("grace-ignores-invoices-without-due-date", DecisionKind.WAIT, Reason.IN_GRACE_PERIOD,
         group=group(invoice("a", due_date=None), invoice("b", due_date=date(2024, 3, 2))),
         now=GRACE_END, next_eligible_at=GRACE_END + timedelta(days=1)),
    Case("grace-in-customer-timezone", DecisionKind.WAIT, Reason.IN_GRACE_PERIOD,
         group=group(invoice(), who=customer(timezone="America/New_York")),
         now=GRACE_END, next_eligible_at=GRACE_END + timedelta(hours=5)),
    Case("gap-exactly-equal-is-too-soon", DecisionKind.WAIT, Reason.TOO_SOON,
         state=GroupState(attempts_used=1, last_attempt_at=LAST),
         now=LAST + timedelta(days=3), next_eligible_at=LAST + timedelta(days=3) + TICK),
    Case("gap-strictly-greater-attempts", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         state=GroupState(attempts_used=1, last_attempt_at=LAST),
         now=LAST + timedelta(days=3) + TICK, next_eligible_at=LAST + timedelta(days=3) + TICK,
         attempt_number=2),
    Case("max-attempts-usd-reached", DecisionKind.EXHAUSTED, Reason.MAX_ATTEMPTS_REACHED,
         state=GroupState(attempts_used=3, last_attempt_at=LAST)),
    Case("max-attempts-usd-one-left", DecisionKind.ATTEMPT, Reason.ELIGIBLE,
         state=GroupState(attempts_used=2, last_attempt_at=LAST),
         next_eligible_at=LATER, attempt_number=3),
    Case("max-attempts-eur-has-its-own-limit", DecisionKind.EXHAUSTED,
         Reason.MAX_ATTEMPTS_REACHED,
         group=group(invoice(currency="EUR"), currency="EUR"),
         state=GroupState(attempts_used=2, last_attempt_at=LAST)),
    Case("exhaustion-action-runs-once", DecisionKind.SKIP, Reason.MAX_ATTEMPTS_REACHED,
         state=GroupState(attempts_used=3, last_attempt_at=LAST, exhaustion_handled=True)),
    Case("currency-not-configured", DecisionKind.SKIP, Reason.CURRENCY_NOT_CONFIGURED,
         group=group(invoice(currency="GBP"), currency="GBP")),
    Case("paused", DecisionKind.SKIP, Reason.PAUSED, state=GroupState(paused=True)),
    Case("paused-beats-exhausted", DecisionKind.SKIP, Reason.PAUSED,
         state=GroupState(attempts_used=3, paused=True)),
    Case("open-intent-waits", DecisionKind.WAIT, Reason.OPEN_INTENT,
         state=GroupState(open_intent=True)),
    Case("open-intent-beats-timing", DecisionKind.WAIT, Reason.OPEN_INTENT,
         state=GroupState(open_intent=True), now=GRACE_END - TICK),
    Case("below-threshold-beats-open-intent", DecisionKind.SKIP, Reason.BELOW_THRESHOLD,
         group=group(invoice(due=1)), state=GroupState(open_intent=True)),
    Case("malformed-currency-mismatch", DecisionKind.SKIP, Reason.MALFORMED_RECORD,
         group=group(invoice(currency="EUR"), currency="USD")),
    Case("malformed-negative-due", DecisionKind.SKIP, Reason.MALFORMED_RECORD,
         group=group(invoice("a", due=-1), invoice("b", due=9000))),
    Case("malformed-duplicate-invoice", DecisionKind.SKIP, Reason.MALFORMED_RECORD,
         group=group(invoice("a"), invoice("a"))),
    Case("malformed-no-due-date", DecisionKind.SKIP, Reason.MALFORMED_RECORD,
         group=group(invoice(due_date=None))),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule(case: Case) -> None:
    decision = decide(POLICIES, case.group, case.state, case.now)

    assert (decision.kind, decision.reason) == (case.kind, case.reason), decision.detail
    assert decision.next_eligible_at == case.next_eligible_at
    assert decision.attempt_number == case.attempt_number
    assert decision.detail.endswith(".")
    expected_policy = None if case.reason is Reason.MALFORMED_RECORD else "base"
    assert decision.policy == expected_policy


def test_exhausted_carries_the_policy_action() -> None:
    decision = decide(POLICIES, group(), GroupState(attempts_used=3), LATER)

    assert decision.on_exhausted == ExhaustionAction(
        ExhaustionActionKind.WEBHOOK, "https://hooks.example.com/exhausted"
    )


def test_attempt_sends_to_customer_email_unless_overridden() -> None:
    overriding = policy_set(
        """
  - name: override
    min_overdue_cents: {USD: 0}
    email: collections@vendor.example
"""
    )
    plain = decide(POLICIES, group(), GroupState(), LATER)
    overridden = decide(overriding, group(), GroupState(), LATER)

    assert plain.email == "billing@customer.example"
    assert overridden.email == "collections@vendor.example"


def test_non_attempt_decisions_carry_no_email_or_attempt_number() -> None:
    decision: Decision = decide(POLICIES, group(invoice(due=1)), GroupState(), LATER)

    assert decision.kind is DecisionKind.SKIP
    assert decision.email is None
    assert decision.attempt_number is None


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(POLICIES, group(), GroupState(), datetime(2024, 3, 20, 12))


def test_naive_last_attempt_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        GroupState(attempts_used=1, last_attempt_at=datetime(2024, 3, 20))


def test_now_in_another_offset_is_the_same_instant() -> None:
    paris = GRACE_END.astimezone(ZoneInfo("Europe/Paris"))  # 01:00 local

    decision = decide(POLICIES, group(), GroupState(), paris)

    assert decision.kind is DecisionKind.ATTEMPT
    assert decision.next_eligible_at == GRACE_END
    assert decision.next_eligible_at is not None
    assert decision.next_eligible_at.tzinfo is UTC


def test_group_sorts_invoices_and_sums_what_is_due() -> None:
    g = group(invoice("b", due=300), invoice("a", due=200))

    assert g.invoice_ids == ("a", "b")
    assert g.overdue_amount_cents == 500
    assert g.key == "cust-1|USD|acme-us"
    assert group(invoice("a", due=200), invoice("b", due=300)) == g
