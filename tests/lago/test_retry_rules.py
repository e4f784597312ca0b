"""The pure retry helpers: header parsing, backoff bounds, the give-up rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.lago.retry import (
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    retry_delay,
    server_delay,
    should_retry,
    status_is_retryable,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("12", 12.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("Sun, 22 Nov 2026 12:00:30", 30.0),  # no zone: read as UTC
        ("nan", None),
        ("inf", None),
        ("tomorrow", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_server_delay_takes_the_larger_header_and_ignores_case() -> None:
    headers = httpx.Headers({"retry-after": "2", "X-RATELIMIT-RESET": "5"})
    assert server_delay(headers, now=NOW) == 5.0
    assert server_delay(httpx.Headers({"X-RateLimit-Reset": "junk"}), now=NOW) is None
    assert server_delay(httpx.Headers({}), now=NOW) is None


@given(retries=st.integers(min_value=0, max_value=500), jitter=st.floats(0, 0.999999))
def test_backoff_stays_within_zero_and_the_cap(retries: int, jitter: float) -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=20, jitter=lambda: jitter)
    delay = backoff_delay(retries, policy)
    assert 0 <= delay <= 20
    assert delay <= 0.5 * 2 ** min(retries, 10)


@given(advertised=st.floats(0, 60), jitter=st.floats(0, 0.999999))
def test_a_server_delay_is_a_floor(advertised: float, jitter: float) -> None:
    policy = RetryPolicy(jitter=lambda: jitter)
    assert retry_delay(2, policy, advertised_s=advertised) >= advertised


def test_should_retry_counts_and_caps_the_server_delay() -> None:
    policy = RetryPolicy(max_retries=2, max_server_delay_s=60)
    assert should_retry(0, policy)
    assert should_retry(1, policy)
    assert not should_retry(2, policy)
    assert should_retry(0, policy, advertised_s=60)
    assert not should_retry(0, policy, advertised_s=60.5)
    assert not should_retry(0, RetryPolicy(max_retries=0))


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (404, False),
        (408, False),
        (422, False),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
    ],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert status_is_retryable(status) is retryable


def test_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="delays"):
        RetryPolicy(base_delay_s=-0.1)
