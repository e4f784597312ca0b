"""Rate limiters: the in-process token bucket and the Redis one shared across processes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from time import sleep as real_sleep

import pytest
import redis

from config.settings import load_settings
from worker.lago import LagoError
from worker.lago.ratelimit import (
    EMPTY_HOLD_S,
    HEADROOM,
    AdvertisedLimit,
    RateLimiter,
    RateLimiterError,
    RedisTokenBucket,
    TokenBucket,
    Unlimited,
    advertised_limit,
    limiter_from_settings,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeTime:
    """A clock whose `sleep` advances time instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class WouldWait(Exception):
    pass


class RefuseToWait:
    """A `sleep` that records the wait asked for and aborts instead of waiting."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        raise WouldWait


def test_token_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(10, burst=5, clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        bucket.acquire()
    assert time.slept == []
    for _ in range(10):
        bucket.acquire()
    # 10 more tokens at 10/s take one second of (fake) time.
    assert sum(time.slept) == pytest.approx(1.0)


def test_token_bucket_refills_while_idle_but_not_beyond_the_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(2, burst=4, clock=time.clock, sleep=time.sleep)
    for _ in range(4):
        bucket.acquire()
    time.now += 60  # a long idle time saves up at most `burst` tokens
    for _ in range(4):
        bucket.acquire()
    assert time.slept == []
    bucket.acquire()
    assert sum(time.slept) == pytest.approx(0.5)


def test_token_bucket_pause_holds_everybody_back() -> None:
    time = FakeTime()
    bucket = TokenBucket(100, burst=100, clock=time.clock, sleep=time.sleep)
    bucket.pause(7.5)
    bucket.acquire()
    assert sum(time.slept) == pytest.approx(7.5)
    bucket.pause(2)
    bucket.pause(1)  # a shorter pause never shortens a longer one
    bucket.acquire()
    assert sum(time.slept) == pytest.approx(9.5)


def test_token_bucket_rate_zero_is_unlimited() -> None:
    time = FakeTime()
    bucket = TokenBucket(0, clock=time.clock, sleep=time.sleep)
    for _ in range(1000):
        bucket.acquire()
    assert time.slept == []


def test_token_bucket_is_thread_safe() -> None:
    refuse = RefuseToWait()
    bucket = TokenBucket(0.001, burst=50, sleep=refuse)
    granted: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(10):
            try:
                bucket.acquire()
            except WouldWait:
                continue
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 attempts against a burst of 50 and (practically) no refill: exactly 50 granted.
    assert len(granted) == 50
    assert len(refuse.asked) == 30


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "1"},
            AdvertisedLimit(50, 3, 1.0),
        ),
        ({}, None),  # self-hosted Lago: no headers
        ({"x-ratelimit-limit": "50", "x-ratelimit-remaining": "3"}, None),
        (
            {"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "1"},
            None,
        ),
        (
            {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"},
            None,
        ),
        (
            {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "nan"},
            None,
        ),
    ],
)
def test_advertised_limits_are_read_from_the_headers_or_not_at_all(
    headers: dict[str, str], expected: AdvertisedLimit | None
) -> None:
    assert advertised_limit(headers) == expected


def test_an_advertised_limit_lowers_the_rate_to_its_headroom_but_never_raises_it() -> None:
    time = FakeTime()
    bucket = TokenBucket(50, burst=1, clock=time.clock, sleep=time.sleep)
    bucket.observe(AdvertisedLimit(50, 20, 1.0))
    assert bucket.rate_per_s == pytest.approx(50 * HEADROOM)
    slow = TokenBucket(10, burst=1, clock=time.clock, sleep=time.sleep)
    slow.observe(AdvertisedLimit(50, 20, 1.0))
    assert slow.rate_per_s == 10  # the operator's ceiling stays the ceiling
    start = time.now
    for _ in range(int(50 * HEADROOM) + 1):
        bucket.acquire()
    assert time.now - start == pytest.approx(1.0, abs=0.05)


def test_nothing_remaining_holds_every_request_for_a_moment() -> None:
    time = FakeTime()
    bucket = TokenBucket(50, burst=5, clock=time.clock, sleep=time.sleep)
    bucket.observe(AdvertisedLimit(50, 0, 2.0))
    start = time.now
    bucket.acquire()
    assert time.now - start == pytest.approx(EMPTY_HOLD_S)
    bucket.observe(AdvertisedLimit(50, 0, 0.02))  # the window resets sooner than that
    start = time.now
    bucket.acquire()
    assert time.now - start == pytest.approx(0.02)


def test_the_limiter_from_settings_saves_up_only_a_short_burst() -> None:
    local = limiter_from_settings(load_settings(rate_limit_rps=50, broker_url=None))
    assert isinstance(local, TokenBucket)
    assert local.burst == 1  # 20 ms of the rate: one token, not a whole second


def test_limiters_satisfy_the_protocol() -> None:
    assert isinstance(TokenBucket(1), RateLimiter)
    assert isinstance(Unlimited(), RateLimiter)


def test_limiter_from_settings_picks_the_kind() -> None:
    assert isinstance(limiter_from_settings(load_settings(rate_limit_rps=0)), Unlimited)
    local = limiter_from_settings(load_settings(rate_limit_rps=25, broker_url=None))
    assert isinstance(local, TokenBucket)
    assert local.rate_per_s == 25
    shared = limiter_from_settings(
        load_settings(rate_limit_rps=25, broker_url="redis://:hunter2@127.0.0.1:6379/0")
    )
    assert isinstance(shared, RedisTokenBucket)
    assert "hunter2" not in repr(shared)


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture
def redis_key() -> Iterator[str]:
    key = f"test:lago-dunning:ratelimit:{uuid.uuid4().hex}"
    yield key
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(key, f"{key}:paused")
    connection.close()


@pytest.mark.redis
def test_two_redis_limiters_share_one_budget(redis_key: str) -> None:
    refuse = RefuseToWait()
    first = RedisTokenBucket(REDIS_URL, redis_key, 0.001, burst=3, sleep=refuse)
    second = RedisTokenBucket(REDIS_URL, redis_key, 0.001, burst=3, sleep=refuse)
    first.acquire()
    second.acquire()
    first.acquire()
    with pytest.raises(WouldWait):
        second.acquire()
    with pytest.raises(WouldWait):
        first.acquire()
    # At 0.001 tokens/s the missing token is about 1000 s away.
    assert all(wait > 900 for wait in refuse.asked)
    first.close()
    second.close()


@pytest.mark.redis
def test_redis_limiters_hand_out_turns_in_order_one_interval_apart(redis_key: str) -> None:
    # Callers that must wait are each given their own later turn (no race for the next
    # token): here the sleeps are not real, so each wait is one interval more than the last.
    asked: list[float] = []
    limiters = [
        RedisTokenBucket(REDIS_URL, redis_key, 10, burst=1, sleep=asked.append) for _ in range(3)
    ]
    for index in range(9):
        limiters[index % 3].acquire()
    assert len(asked) == 8  # the first caller went at once
    assert asked == pytest.approx([0.1 * n for n in range(1, 9)], abs=0.03)
    for limiter in limiters:
        limiter.close()


@pytest.mark.redis
def test_a_pause_that_comes_while_a_caller_waits_for_its_turn_holds_it(redis_key: str) -> None:
    other = RedisTokenBucket(REDIS_URL, redis_key, 10, burst=1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        if not slept:
            other.pause(0.3)  # a 429 elsewhere while this caller sleeps until its turn
        slept.append(seconds)
        real_sleep(seconds)

    waiting = RedisTokenBucket(REDIS_URL, redis_key, 10, burst=1, sleep=sleep)
    other.acquire()
    waiting.acquire()
    assert slept[0] == pytest.approx(0.1, abs=0.03)  # its turn
    assert 0.1 < slept[1] <= 0.3  # then the pause, and a new turn after it (no wait left)
    assert len(slept) == 2
    other.close()
    waiting.close()


@pytest.mark.redis
def test_a_redis_pause_is_seen_by_the_other_limiter(redis_key: str) -> None:
    refuse = RefuseToWait()
    first = RedisTokenBucket(REDIS_URL, redis_key, 1000, burst=1000, sleep=refuse)
    second = RedisTokenBucket(REDIS_URL, redis_key, 1000, burst=1000, sleep=refuse)
    second.acquire()
    first.pause(30)
    with pytest.raises(WouldWait):
        second.acquire()
    assert 25 < refuse.asked[0] <= 30
    first.close()
    second.close()


@pytest.mark.redis
def test_a_redis_limiter_with_rate_zero_only_honours_pauses(redis_key: str) -> None:
    refuse = RefuseToWait()
    bucket = RedisTokenBucket(REDIS_URL, redis_key, 0, burst=1, sleep=refuse)
    for _ in range(20):
        bucket.acquire()
    bucket.pause(5)
    with pytest.raises(WouldWait):
        bucket.acquire()
    assert len(refuse.asked) == 1
    assert refuse.asked[0] <= 5
    bucket.close()


@pytest.mark.redis
def test_redis_keys_expire_so_nothing_is_left_behind(redis_key: str) -> None:
    bucket = RedisTokenBucket(REDIS_URL, redis_key, 10, burst=10)
    bucket.acquire()
    bucket.pause(1)
    connection = redis.Redis.from_url(REDIS_URL)
    assert 0 < connection.pttl(redis_key) <= 61_000
    assert 0 < connection.pttl(f"{redis_key}:paused") <= 2_000
    connection.close()
    bucket.close()


def test_unreachable_redis_is_a_clear_one_line_error() -> None:
    bucket = RedisTokenBucket(
        "redis://:s3cret@127.0.0.1:1/0", "test:unreachable", 10, socket_timeout_s=1
    )
    with pytest.raises(RateLimiterError) as caught:
        bucket.acquire()
    message = str(caught.value)
    assert message.startswith("rate limiter: cannot use Redis at redis://:***@127.0.0.1:1/0")
    assert isinstance(caught.value, LagoError)
    assert "s3cret" not in message
    assert "\n" not in message


def test_token_bucket_reports_each_wait_it_imposed() -> None:
    time = FakeTime()
    waits: list[float] = []
    bucket = TokenBucket(10, burst=1, clock=time.clock, sleep=time.sleep, on_wait=waits.append)
    bucket.acquire()  # the burst: no wait, nothing reported
    bucket.acquire()
    bucket.pause(2.0)
    bucket.acquire()
    assert waits == pytest.approx([0.1, 2.0])
    assert sum(waits) == pytest.approx(sum(time.slept))


@pytest.mark.redis
def test_a_redis_limiter_reports_the_waits_it_slept(redis_key: str) -> None:
    slept: list[float] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    bucket = RedisTokenBucket(
        REDIS_URL, redis_key, 1000, burst=1000, sleep=sleep, on_wait=waits.append
    )
    bucket.acquire()
    assert waits == []
    bucket.pause(0.2)
    bucket.acquire()
    bucket.close()
    assert len(waits) == 1
    assert waits[0] == pytest.approx(sum(slept))
    assert 0.1 < waits[0] <= 0.2
