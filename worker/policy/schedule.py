"""When a group's next attempt may come, under one policy: its grace period and either the
gap between attempts or its step schedule. Pure: the caller passes the facts.

Classic policies: the next attempt is after the grace period and strictly more than
`days_between_attempts` after the last one. Step schedules: attempt k+1 uses `steps[k]`, due
at the start of the local day `after_days` whole days after the oldest due date has ended,
never before the grace period ends and never on the local day of the previous attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from config.policies import EmailTarget, Policy, SendWindow
from worker.policy.types import Reason

# The gap rule is strict (now > last + days): the first eligible instant is one tick later.
TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class NextAttempt:
    """The earliest instant (UTC) of attempt `number`, why it is not sooner, and the send
    window and email that attempt uses."""

    number: int
    earliest: datetime
    reason: Reason  # IN_GRACE_PERIOD or TOO_SOON, for when `earliest` is still ahead
    why: str
    window: SendWindow | None
    email: EmailTarget | None


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of `day` in `zone`, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_attempt(
    policy: Policy,
    *,
    oldest_due: date,
    attempts_used: int,
    last_attempt_at: datetime | None,
    currency: str,
    zone: ZoneInfo,
) -> NextAttempt | None:
    """Attempt `attempts_used + 1` under `policy`, or None when the policy has no more."""
    number = attempts_used + 1
    if number > policy.max_attempts_for(currency):
        return None
    grace_end = day_start(oldest_due + timedelta(days=policy.grace_days + 1), zone)
    grace_why = f"In the {policy.grace_days}-day grace period after the oldest due date"
    if policy.steps is None:
        if last_attempt_at is None:
            return NextAttempt(
                number, grace_end, Reason.IN_GRACE_PERIOD, grace_why, policy.send_window,
                policy.email,
            )  # fmt: skip
        gap_end = last_attempt_at.astimezone(UTC) + timedelta(policy.days_between_attempts) + TICK
        if gap_end > grace_end:
            why = f"Last attempt was less than {policy.days_between_attempts} day(s) ago"
            return NextAttempt(
                number, gap_end, Reason.TOO_SOON, why, policy.send_window, policy.email
            )
        return NextAttempt(
            number, grace_end, Reason.IN_GRACE_PERIOD, grace_why, policy.send_window,
            policy.email,
        )  # fmt: skip
    step = policy.steps[attempts_used]
    window = step.send_window or policy.send_window
    email = step.email or policy.email
    step_at = day_start(oldest_due + timedelta(days=step.after_days + 1), zone)
    candidates = [
        (grace_end, Reason.IN_GRACE_PERIOD, grace_why),
        (
            step_at,
            Reason.TOO_SOON,
            f"Step {number} of {len(policy.steps)} is {step.after_days} day(s) after the "
            "oldest due date",
        ),
    ]
    if last_attempt_at is not None:
        next_day = last_attempt_at.astimezone(zone).date() + timedelta(days=1)
        candidates.append((day_start(next_day, zone), Reason.TOO_SOON, "At most one step per day"))
    # The latest constraint wins; on a tie the first listed explains it.
    earliest, reason, why = max(candidates, key=lambda item: item[0])
    return NextAttempt(number, earliest, reason, why, window, email)
