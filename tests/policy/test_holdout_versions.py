"""Holdouts (stable, salted, nested) and policy versions on decisions; what a policy edit
does to a group that is mid-schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.policy.builders import customer, group, invoice, policy_set
from worker.policy import DecisionKind, GroupState, Reason, decide
from worker.policy.holdout import holdout_bucket, is_held_out


def _holdout_file(percent: float, salt: str = "s1") -> str:
    return (
        f"  - name: p\n    version: v2\n    min_overdue_cents: {{USD: 100}}\n"
        f"    holdout_percent: {percent}\nholdout_salt: {salt}\n"
    )


NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
IDS = [f"cus_{n:05d}" for n in range(4000)]


def test_the_bucket_is_stable_and_depends_on_the_salt() -> None:
    assert holdout_bucket("s1", "cus_00001") == holdout_bucket("s1", "cus_00001")
    assert holdout_bucket("s1", "cus_00001") != holdout_bucket("s2", "cus_00001")
    assert all(0 <= holdout_bucket("s1", cid) < 100 for cid in IDS[:200])


def test_the_held_out_share_is_close_to_the_percent_and_nested() -> None:
    five = {cid for cid in IDS if is_held_out("s1", 5, cid)}
    ten = {cid for cid in IDS if is_held_out("s1", 10, cid)}
    assert 0.035 < len(five) / len(IDS) < 0.065
    assert five < ten  # raising the percent only adds customers


def test_a_held_out_customer_gets_a_holdout_decision_and_others_an_attempt() -> None:
    policies = policy_set(_holdout_file(10))
    held = next(cid for cid in IDS if is_held_out("s1", 10, cid))
    dunned = next(cid for cid in IDS if not is_held_out("s1", 10, cid))
    out = decide(policies, group(who=customer(held)), GroupState(), NOW)
    assert (out.kind, out.reason, out.policy) == (DecisionKind.SKIP, Reason.HOLDOUT, "p")
    assert decide(policies, group(who=customer(dunned)), GroupState(), NOW).kind is (
        DecisionKind.ATTEMPT
    )


def test_a_group_already_in_a_cycle_is_not_pulled_into_the_holdout() -> None:
    held = next(cid for cid in IDS if is_held_out("s1", 10, cid))
    state = GroupState(attempts_used=1, last_attempt_at=NOW - timedelta(days=5))
    policies3 = policy_set(_holdout_file(10).replace("USD: 100}", "USD: 100}\n    max_attempts: 3"))
    assert decide(policies3, group(who=customer(held)), state, NOW).kind is DecisionKind.ATTEMPT


def test_every_decision_carries_the_policy_version_and_the_file_hash() -> None:
    policies = policy_set(_holdout_file(0))
    decision = decide(policies, group(), GroupState(), NOW)
    assert decision.policy_version == "v2"
    assert decision.policy_hash == policies.version_hash
    skipped = decide(policies, group(invoice(currency="EUR"), currency="EUR"), GroupState(), NOW)
    assert (skipped.reason, skipped.policy_hash) == (
        Reason.CURRENCY_NOT_CONFIGURED,
        policies.version_hash,
    )


WEEKLY = policy_set(
    "  - name: p\n    version: 1\n    min_overdue_cents: {USD: 100}\n"
    "    days_between_attempts: 7\n    max_attempts: 4\n"
)
DAILY = policy_set(
    "  - name: p\n    version: 2\n    min_overdue_cents: {USD: 100}\n"
    "    days_between_attempts: 1\n    max_attempts: 4\n"
)
LAST = NOW - timedelta(days=2)


def test_an_edit_never_asks_a_mid_schedule_group_sooner_than_its_version_would() -> None:
    pinned = GroupState(
        attempts_used=1, last_attempt_at=LAST, pinned_policy=WEEKLY.policies[0],
        pinned_version="version 1",
    )  # fmt: skip
    decision = decide(DAILY, group(), pinned, NOW)
    assert (decision.kind, decision.reason) == (DecisionKind.WAIT, Reason.TOO_SOON)
    assert decision.next_eligible_at == LAST + timedelta(days=7, microseconds=1)
    assert "version 1" in decision.detail
    assert decision.policy_version == "2"


def test_without_a_pin_the_new_schedule_applies_at_once() -> None:
    unpinned = GroupState(attempts_used=1, last_attempt_at=LAST)
    assert decide(DAILY, group(), unpinned, NOW).kind is DecisionKind.ATTEMPT


def test_an_edit_can_slow_an_in_flight_group_down() -> None:
    pinned = GroupState(attempts_used=1, last_attempt_at=LAST, pinned_policy=DAILY.policies[0])
    decision = decide(WEEKLY, group(), pinned, NOW)
    assert decision.next_eligible_at == LAST + timedelta(days=7, microseconds=1)


def test_an_edit_can_stop_an_in_flight_group_at_once() -> None:
    fewer = policy_set("  - name: p\n    min_overdue_cents: {USD: 100}\n    max_attempts: 1\n")
    pinned = GroupState(attempts_used=1, last_attempt_at=LAST, pinned_policy=DAILY.policies[0])
    assert decide(fewer, group(), pinned, NOW).kind is DecisionKind.EXHAUSTED


def test_a_new_cycle_ignores_the_pin() -> None:
    fresh = GroupState(attempts_used=0, pinned_policy=WEEKLY.policies[0])
    assert decide(DAILY, group(), fresh, NOW).kind is DecisionKind.ATTEMPT
