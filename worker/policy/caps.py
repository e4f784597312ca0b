"""Contact caps: at most N payment requests per customer in any rolling D days.

`contacts` are the instants of the customer's payment requests (sent, being sent, or decided
in the current sweep), across all currencies and billing entities. A request made at `t`
counts while `now < t + D days`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from config.policies import ContactCap


def cap_frees_at(cap: ContactCap, contacts: Iterable[datetime], now: datetime) -> datetime | None:
    """None when one more request is allowed at `now`; else the instant one is allowed."""
    span = timedelta(days=cap.per_days)
    inside = sorted(t.astimezone(UTC) for t in contacts if t.astimezone(UTC) > now - span)
    if len(inside) < cap.max_requests:
        return None
    # The oldest requests must leave the window until only max_requests - 1 remain.
    return inside[len(inside) - cap.max_requests] + span
