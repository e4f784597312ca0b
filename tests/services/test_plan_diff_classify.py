"""`plan --diff` classification of one group's two decisions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.services.plan_diff import Side, classify

T = datetime(2026, 12, 2, 14, tzinfo=UTC)


def side(
    *, dunned: bool = True, policy: str = "p", version: str | None = "1", at: datetime | None = T,
    amount: int = 500,
) -> Side:  # fmt: skip
    return Side(
        policy=policy, policy_version=version, kind="wait" if dunned else "skip",
        reason="too_soon" if dunned else "below_threshold", next_eligible_at=at if dunned else None,
        dunned=dunned, amount_cents=amount if dunned else 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("current", "candidate", "change"),
    [
        (side(dunned=False), side(), "start"),
        (side(), side(dunned=False), "stop"),
        (side(), side(policy="q"), "policy"),
        (side(), side(version="2"), None),  # a new label of the same policy alone
        (side(), side(at=datetime(2026, 12, 9, tzinfo=UTC)), "next_time"),
        (side(), side(amount=700), "amount"),
        (side(dunned=False), side(dunned=False, policy="q"), None),  # not dunned either way
        (side(), side(), None),
    ],
)
def test_classify(current: Side, candidate: Side, change: str | None) -> None:
    assert classify(current, candidate) == change
