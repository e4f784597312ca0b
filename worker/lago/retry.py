"""When to retry a Lago call and how long to wait: pure functions, no I/O, no clock of their own.

The rules (the client runs the loop):
- GET: retried on connect errors, timeouts, dropped connections, 429 and 5xx.
- POST (payment requests, payments): Lago has no idempotency key, so a POST is retried only
  when it certainly did not take effect: the connection was never made, or Lago answered 429.
  A timeout, a dropped connection or a 5xx after the request went out is ambiguous and is
  never retried here (the caller reconciles first).

The delay: capped exponential backoff with full jitter, `uniform(0, min(cap, base * 2**n))`.
When the server says how long to wait (`Retry-After` in seconds or as an HTTP date, or
`X-RateLimit-Reset` in seconds until the window resets), the wait is the LARGER of that and
the jittered backoff: the server's figure is a floor we must respect, and the jitter on top
keeps many workers from all waking at the same instant of the reset. A server delay above
`max_server_delay_s` is not waited for in-process: the call fails with the advertised delay
so the caller can reschedule instead of holding a worker.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_BASE_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 20.0
DEFAULT_MAX_SERVER_DELAY_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    max_server_delay_s: float = DEFAULT_MAX_SERVER_DELAY_S
    # Returns a number in [0, 1); replaced in tests to make delays exact.
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_server_delay_s < 0:
            raise ValueError("delays must be >= 0")


def backoff_delay(retries_taken: int, policy: RetryPolicy) -> float:
    """Full-jitter backoff for the retry after `retries_taken` earlier retries (0-based)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2 ** min(retries_taken, 62)))
    return float(ceiling * policy.jitter())


def _parse_seconds(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def parse_retry_after(value: str, *, now: datetime) -> float | None:
    """`Retry-After` as seconds ("1.5") or an HTTP date; None when unreadable."""
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def server_delay(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The delay the server asks for, from `Retry-After` or `X-RateLimit-Reset` (the larger).

    `headers` must be case-insensitive (httpx.Headers) or use lower-case names.
    """
    now = now or datetime.now(UTC)
    delays: list[float] = []
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        parsed = parse_retry_after(retry_after, now=now)
        if parsed is not None:
            delays.append(parsed)
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        parsed = _parse_seconds(reset)
        if parsed is not None:
            delays.append(parsed)
    return max(delays) if delays else None


def retry_delay(
    retries_taken: int,
    policy: RetryPolicy,
    *,
    advertised_s: float | None = None,
) -> float:
    """How long to wait before the next try: max(server's delay, jittered backoff)."""
    computed = backoff_delay(retries_taken, policy)
    if advertised_s is None:
        return computed
    return max(advertised_s, computed)


def should_retry(
    retries_taken: int, policy: RetryPolicy, *, advertised_s: float | None = None
) -> bool:
    """Whether a retryable failure may be retried once more."""
    if retries_taken >= policy.max_retries:
        return False
    return advertised_s is None or advertised_s <= policy.max_server_delay_s


def status_is_retryable(status: int) -> bool:
    """Statuses worth retrying on an idempotent request."""
    return status == 429 or status >= 500
