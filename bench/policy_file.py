"""The policy file the bench and chaos runs use: every group with something due is asked once.

Every currency the sandbox generator uses is configured with a zero threshold, no grace, no
send window and one attempt, so "what the policy says to dun" is simply every overdue group,
and "exactly once" means exactly one payment request per group.
"""

from __future__ import annotations

from pathlib import Path

#: The currencies `sandbox.generator` gives customers.
GENERATED_CURRENCIES = ("AUD", "EUR", "GBP", "INR", "SGD", "USD")

POLICY_NAME = "bench_everyone"


def policy_yaml(
    *, cron: str = "* * * * *", max_attempts: int = 1, channel: str = "payment_request"
) -> str:
    thresholds = ", ".join(f"{currency}: 0" for currency in GENERATED_CURRENCIES)
    return (
        "version: 1\n"
        "schedule:\n"
        f'  cron: "{cron}"\n'
        "policies:\n"
        f"  - name: {POLICY_NAME}\n"
        f"    min_overdue_cents: {{{thresholds}}}\n"
        "    grace_days: 0\n"
        "    days_between_attempts: 30\n"
        f"    max_attempts: {max_attempts}\n"
        "    on_exhausted: {action: stop}\n"
        f"    channel: {channel}\n"
    )


def write_policy_file(
    directory: Path,
    *,
    cron: str = "* * * * *",
    max_attempts: int = 1,
    channel: str = "payment_request",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench-policies.yaml"
    path.write_text(policy_yaml(cron=cron, max_attempts=max_attempts, channel=channel))
    return path
