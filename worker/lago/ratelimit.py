"""Request rate limiting shared by every caller of the Lago API.

Hosted Lago allows about 50 requests/s per organization, shared by all API keys, so every
worker thread and process should draw from one budget:
- `TokenBucket`: in-process, thread-safe.
- `RedisTokenBucket`: shared by all processes on all machines through one Redis key pair.
Both honour `pause(seconds)`: after a 429 everybody sharing the limiter waits, and both
report how long each `acquire()` held its caller back to `on_wait` (for metrics).

Hosted Lago advertises its limit on every answer (`X-RateLimit-Limit`, `-Remaining`,
`-Reset`) but not how it counts (a fixed or a sliding second). `observe()` paces from those
headers as well as the bucket: the rate drops to `HEADROOM` of the advertised limit (jitter
between our clock and its window would otherwise cost a 429 now and then, and each 429 holds
every worker back for a whole window), and `Remaining: 0` holds everybody for a moment
(`EMPTY_HOLD_S`, or `Reset` if sooner): in a sliding window the oldest calls leave the span
by then; in a fixed one the next call may meet a 429, whose `Reset` then holds everybody. A
whole `Reset` on every `Remaining: 0` would idle a sliding window half the time (Lago gives
`Reset` in whole seconds). A self-hosted Lago sends none: the bucket alone.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from config.settings import mask_url
from worker.lago.errors import LagoError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript, Script

    from config.settings import Settings


_EPSILON = 1e-9
#: Share of an advertised limit the workers spend.
HEADROOM = 0.95
#: How long `Remaining: 0` on an accepted call holds everybody (see the module docstring).
EMPTY_HOLD_S = 0.1
#: Tokens saved up while idle, in seconds of the rate: a full second's burst could double the
#: rate a sliding window sees right after an idle spell, and even a few tokens over the paced
#: rate fill a sliding second to the limit now and then (a 429 holds everybody for a while).
#: At 50/s this is one token.
BURST_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class AdvertisedLimit:
    """What the server's X-RateLimit-* headers of one answer say."""

    limit: int
    remaining: int
    reset_s: float


def advertised_limit(headers: Mapping[str, str]) -> AdvertisedLimit | None:
    """The X-RateLimit-* headers of an answer (case-insensitive mapping, e.g. httpx.Headers);
    None when they are absent (self-hosted Lago) or unreadable."""
    try:
        limit = int(headers["x-ratelimit-limit"])
        remaining = int(headers["x-ratelimit-remaining"])
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    if limit < 1 or remaining < 0 or not math.isfinite(reset) or reset < 0:
        return None
    return AdvertisedLimit(limit, remaining, reset)


def paced_rate(configured: float, advertised: AdvertisedLimit) -> float:
    """The rate to spend: the configured one, never above `HEADROOM` of the advertised limit."""
    return min(configured, HEADROOM * advertised.limit)


WaitObserver = Callable[[float], None]
"""Called after an `acquire()` that had to wait, with the seconds it slept."""


def _report_wait(on_wait: WaitObserver | None, seconds: float) -> None:
    if on_wait is not None and seconds > 0:
        on_wait(seconds)


class RateLimiterError(LagoError):
    """The rate limiter cannot work (e.g. Redis is unreachable). `str()` is one line.

    A `LagoError`, so callers that handle failed Lago calls handle this one too.
    """

    transient = True

    def __init__(self, message: str) -> None:
        super().__init__(message, endpoint="rate limiter")


@runtime_checkable
class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may be sent."""

    def pause(self, seconds: float) -> None:
        """Hold every request back for `seconds` (after a 429)."""

    def observe(self, advertised: AdvertisedLimit) -> None:
        """Pace from the server's X-RateLimit-* headers (see the module docstring)."""


class Unlimited:
    """A limiter that never waits (rate 0 = unlimited)."""

    def acquire(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        return None

    def observe(self, advertised: AdvertisedLimit) -> None:
        return None

    def __repr__(self) -> str:
        return "Unlimited()"


class TokenBucket:
    """In-process token bucket: `rate_per_s` tokens/s, at most `burst` saved up.

    `clock` and `sleep` are injectable so tests do not wait for real.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: WaitObserver | None = None,
    ) -> None:
        if rate_per_s < 0:
            raise ValueError("rate_per_s must be >= 0")
        self.rate_per_s = rate_per_s
        self.configured_rate = rate_per_s
        self.burst = max(1, burst if burst is not None else max(1, int(rate_per_s)))
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._updated = clock()
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate_per_s}, burst={self.burst})"

    def _wait_time(self) -> float:
        """Take a token if one is free (0.0), else say how long to wait. Hold the lock."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self.rate_per_s == 0:
            return 0.0
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._updated = now
        # The epsilon absorbs float rounding: after sleeping exactly the computed wait the
        # bucket may hold 0.9999999 tokens, which must count as one.
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s

    def acquire(self) -> None:
        waited = 0.0
        while True:
            with self._lock:
                wait = self._wait_time()
            if wait <= 0:
                _report_wait(self._on_wait, waited)
                return
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, advertised: AdvertisedLimit) -> None:
        if self.configured_rate > 0:
            with self._lock:
                self.rate_per_s = paced_rate(self.configured_rate, advertised)
        if advertised.remaining == 0:
            self.pause(min(advertised.reset_s, EMPTY_HOLD_S))


# One Lua script per operation keeps read-modify-write atomic across all processes. Time comes
# from the Redis server (TIME), so machines with skewed clocks still share one budget.
# Times are integer microseconds, formatted with %.0f (Lua's tostring would round them).
#
# The shared bucket hands out turns rather than tokens (a virtual-scheduling bucket): each
# call is given the next free instant (`tat`, spaced 1/rate apart, at most `burst - 1` turns
# saved up while idle) and sleeps until it. A bucket of tokens instead tells every waiter how
# long until the next token, and they all wake together and race for it: while they sleep (and
# a loaded machine wakes them late) a full bucket saves up nothing beyond its burst, so that
# time is lost to the rate (about 5% at 50/s with 64 waiters on a busy 2-core machine; turns
# lose under 0.5%).
# Returns {1, wait} while paused (ask again after `wait`), else {0, wait} with the caller's
# turn `wait` away (0: go now). ARGV[3] = 0 only checks the pause (a caller whose turn came).
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused_until > now then
  return {1, paused_until - now}
end
local rate = tonumber(ARGV[1])
if rate <= 0 or ARGV[3] == '0' then
  return {0, 0}
end
local interval = 1000000 / rate
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local turn = math.max(tat, now - (burst - 1) * interval)
local next_tat = turn + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', next_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(0, next_tat - now) / 1000) + 60000)
return {0, math.max(0, math.ceil(turn - now))}
"""

_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_us = tonumber(ARGV[1])
local new_until = now + pause_us
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if new_until > current then
  redis.call('SET', KEYS[1], string.format('%.0f', new_until),
             'PX', math.ceil(pause_us / 1000) + 1000)
end
return 0
"""

DEFAULT_REDIS_KEY = "lago-dunning:ratelimit:lago-api"


class RedisTokenBucket:
    """A bucket in Redis shared by every process using the same `key`, handing out turns.

    `key` holds the bucket (a hash whose `tat` is the next free turn, see `_ACQUIRE_LUA`);
    `key + ":paused"` holds the shared "paused until" instant set by `pause()`. Raises
    `RateLimiterError` (one line, no password) when Redis cannot be reached.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        rate_per_s: float,
        burst: int | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        socket_timeout_s: float = 5.0,
        on_wait: WaitObserver | None = None,
    ) -> None:
        if rate_per_s < 0:
            raise ValueError("rate_per_s must be >= 0")
        self.rate_per_s = rate_per_s
        self.configured_rate = rate_per_s
        self.burst = max(1, burst if burst is not None else max(1, int(rate_per_s)))
        self.key = key
        self.paused_key = f"{key}:paused"
        self._where = mask_url(redis_url)
        self._sleep = sleep
        self._on_wait = on_wait
        import redis  # here: only a Redis-backed limiter needs the client (and its import time)

        self._redis_error = redis.RedisError
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._acquire_script = self._redis.register_script(_ACQUIRE_LUA)
        self._pause_script = self._redis.register_script(_PAUSE_LUA)

    def __repr__(self) -> str:
        return (
            f"RedisTokenBucket(redis={self._where!r}, key={self.key!r}, "
            f"rate_per_s={self.rate_per_s}, burst={self.burst})"
        )

    def _call(self, script: AsyncScript | Script, keys: list[str], args: list[float]) -> Any:
        try:
            return script(keys=keys, args=args)
        except self._redis_error as exc:
            detail = " ".join(str(exc).split())[:200]
            raise RateLimiterError(f"cannot use Redis at {self._where}: {detail}") from None

    def _ask(self, *, take_turn: bool) -> tuple[bool, float]:
        """(paused, seconds to wait): a turn taken (or, `take_turn=False`, the pause only)."""
        answer = self._call(
            self._acquire_script,
            [self.key, self.paused_key],
            [self.rate_per_s, self.burst, 1 if take_turn else 0],
        )
        paused, wait_us = cast("list[int]", answer)
        return bool(paused), int(wait_us) / 1_000_000

    def acquire(self) -> None:
        waited = 0.0
        while True:
            paused, wait = self._ask(take_turn=True)
            if wait <= 0:
                _report_wait(self._on_wait, waited)
                return
            self._sleep(wait)
            waited += wait
            if paused:
                continue
            # Our turn has come: go, unless a 429 paused everybody while we slept.
            paused, wait = self._ask(take_turn=False)
            if not paused:
                _report_wait(self._on_wait, waited)
                return
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._call(self._pause_script, [self.paused_key], [round(seconds * 1_000_000)])

    def observe(self, advertised: AdvertisedLimit) -> None:
        # The rate travels with every acquire, so each process paces its own draws.
        if self.configured_rate > 0:
            self.rate_per_s = paced_rate(self.configured_rate, advertised)
        if advertised.remaining == 0:
            self.pause(min(advertised.reset_s, EMPTY_HOLD_S))

    def close(self) -> None:
        self._redis.close()


def limiter_from_settings(settings: Settings, on_wait: WaitObserver | None = None) -> RateLimiter:
    """Redis bucket when the broker is Redis, in-process otherwise; rate 0 disables."""
    rate = settings.rate_limit_rps
    if rate == 0:
        return Unlimited()
    burst = max(1, math.ceil(rate * BURST_SECONDS))
    if settings.broker_is_redis:
        return RedisTokenBucket(
            settings.resolved_broker_url, DEFAULT_REDIS_KEY, rate, burst, on_wait=on_wait
        )
    return TokenBucket(rate, burst, on_wait=on_wait)
