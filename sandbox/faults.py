"""Fault injection: latency, random 500s, hosted-Lago rate limiting, lost POST answers.

All random choices come from one RNG seeded with `seed`, so a sequence of requests sees the
same sequence of faults on every run. Settings can be changed live (`POST /_sandbox/faults`).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RATE_LIMIT_WINDOWS = ("fixed", "sliding")


class FaultSettingsError(ValueError):
    """A fault setting is out of range; the message is one line."""


@dataclass(frozen=True, slots=True)
class FaultSettings:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_after_commit_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    rate_limit: int = 0
    #: How `rate_limit` counts: per whole clock second ("fixed") or over the last second
    #: ("sliding"). Hosted Lago does not publish its algorithm: clients should cope with both.
    rate_limit_window: str = "fixed"
    premium: bool = True
    stale_count_ttl: float = 0.0
    #: Behave like an older or buggy Lago (see sandbox/careless.py).
    careless: bool = False
    #: With `careless`: the share of payment request answers that name other invoices or
    #: another customer than the request created.
    careless_answer_rate: float = 0.0
    #: The share of `retry_payment` calls answered 500 after the retry was taken.
    retry_payment_error_rate: float = 0.0
    seed: int = 42

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "timeout_after_commit_rate",
            "drop_rate",
            "careless_answer_rate",
            "retry_payment_error_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultSettingsError(f"{name} must be between 0 and 1, got {value}")
        for name in ("latency_ms", "latency_jitter_ms", "hang_seconds", "stale_count_ttl"):
            if getattr(self, name) < 0:
                raise FaultSettingsError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.rate_limit < 0:
            raise FaultSettingsError(f"rate_limit must be >= 0 (0 = off), got {self.rate_limit}")
        if self.rate_limit_window not in RATE_LIMIT_WINDOWS:
            raise FaultSettingsError(
                f"rate_limit_window must be one of {', '.join(RATE_LIMIT_WINDOWS)}, "
                f"got {self.rate_limit_window!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> FaultSettings:
        """A copy with `changes` applied; unknown names or wrong types raise."""
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise FaultSettingsError(f"unknown fault setting {name!r}")
            expected = known[name]
            if expected == "bool" and not isinstance(value, bool):
                raise FaultSettingsError(f"{name} must be true or false")
            if expected == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise FaultSettingsError(f"{name} must be an integer")
            if expected == "str" and not isinstance(value, str):
                raise FaultSettingsError(f"{name} must be a string")
            if expected == "float" and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise FaultSettingsError(f"{name} must be a number")
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


class FaultInjector:
    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._window_start = 0.0
        self._window_count = 0
        self._recent: deque[float] = deque()

    def apply(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._window_count = 0
        self._recent.clear()

    def latency_seconds(self) -> float:
        s = self.settings
        if s.latency_ms <= 0 and s.latency_jitter_ms <= 0:
            return 0.0
        jitter = self._rng.uniform(-s.latency_jitter_ms, s.latency_jitter_ms)
        return max(0.0, s.latency_ms + jitter) / 1000.0

    def should_fail(self) -> bool:
        return self._chance(self.settings.error_rate)

    def should_hang_after_commit(self) -> bool:
        return self._chance(self.settings.timeout_after_commit_rate)

    def should_drop_after_commit(self) -> bool:
        return self._chance(self.settings.drop_rate)

    def should_fail_retry_payment(self) -> bool:
        return self._chance(self.settings.retry_payment_error_rate)

    def should_garble_answer(self) -> bool:
        return self.settings.careless and self._chance(self.settings.careless_answer_rate)

    @property
    def rng(self) -> random.Random:
        return self._rng

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return self._rng.random() < rate

    def rate_limit(self) -> RateDecision | None:
        """Hosted Lago's per-second limit; None when rate limiting is off."""
        limit = self.settings.rate_limit
        if limit <= 0:
            return None
        if self.settings.rate_limit_window == "sliding":
            return self._sliding(limit)
        now = time.time()
        window = math.floor(now)
        if window != self._window_start:
            self._window_start = window
            self._window_count = 0
        reset = max(1, math.ceil(window + 1 - now))
        if self._window_count >= limit:
            return RateDecision(False, limit, 0, reset)
        self._window_count += 1
        return RateDecision(True, limit, limit - self._window_count, reset)

    def _sliding(self, limit: int) -> RateDecision:
        """At most `limit` accepted calls in any one-second span; Reset says when the oldest
        of them leaves the span (whole seconds, at least 1, as Lago's header is)."""
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        if len(self._recent) >= limit:
            reset = max(1, math.ceil(self._recent[0] + 1.0 - now))
            return RateDecision(False, limit, 0, reset)
        self._recent.append(now)
        reset = max(1, math.ceil(self._recent[0] + 1.0 - now))
        return RateDecision(True, limit, limit - len(self._recent), reset)
