"""Fault injection: random 500s, rate limiting, dropped and hung payment request answers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle


def overdue_invoice_ids(sandbox: SandboxHandle, external_id: str = "cus_00001") -> list[str]:
    return [
        row["lago_id"]
        for row in sandbox.invoices()
        if row["customer"]["external_id"] == external_id and row["payment_overdue"]
    ]


def request_body(sandbox: SandboxHandle) -> dict[str, Any]:
    return {
        "payment_request": {
            "external_customer_id": "cus_00001",
            "lago_invoice_ids": overdue_invoice_ids(sandbox)[:1],
        }
    }


def statuses(sandbox: SandboxHandle, count: int) -> list[int]:
    with sandbox.api_client() as client:
        return [
            client.get("/api/v1/invoices", params={"per_page": 1}).status_code for _ in range(count)
        ]


def test_error_rate_answers_500_and_is_reproducible_for_a_seed(sandbox: SandboxHandle) -> None:
    sandbox.set_faults(error_rate=0.5, seed=11)
    first = statuses(sandbox, 40)
    sandbox.set_faults(error_rate=0.5, seed=11)
    second = statuses(sandbox, 40)
    assert first == second
    assert set(first) == {200, 500}
    assert sandbox.request_count("GET /api/v1/invoices", 500) == first.count(500) * 2
    with sandbox.api_client() as client:
        sandbox.set_faults(error_rate=1.0)
        response = client.post("/api/v1/payment_requests", json=request_body(sandbox))
    assert response.status_code == 500
    assert response.json() == {"status": 500, "error": "Internal Server Error"}
    assert sandbox.payment_requests() == []


def test_rate_limit_answers_429_with_hosted_lago_headers(sandbox: SandboxHandle) -> None:
    sandbox.set_faults(rate_limit=3)
    with sandbox.api_client() as client:
        responses = [client.get("/api/v1/invoices", params={"per_page": 1}) for _ in range(8)]
    limited = [r for r in responses if r.status_code == 429]
    allowed = [r for r in responses if r.status_code == 200]
    # 8 quick calls span at most two one-second windows: at most 6 get through.
    assert limited
    assert 3 <= len(allowed) <= 6
    assert limited[0].json() == {"status": 429, "error": "Too Many Requests"}
    assert limited[0].headers["X-RateLimit-Limit"] == "3"
    assert limited[0].headers["X-RateLimit-Remaining"] == "0"
    assert int(limited[0].headers["X-RateLimit-Reset"]) >= 1
    assert allowed[0].headers["X-RateLimit-Limit"] == "3"
    assert int(allowed[0].headers["X-RateLimit-Remaining"]) in (0, 1, 2)


def test_a_sliding_window_never_accepts_more_than_the_limit_in_any_second(
    sandbox: SandboxHandle,
) -> None:
    import time

    sandbox.set_faults(rate_limit=5, rate_limit_window="sliding")
    accepted: list[float] = []
    remaining: list[int] = []
    with sandbox.api_client() as client:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            response = client.get("/api/v1/invoices", params={"per_page": 1})
            assert response.headers["X-RateLimit-Limit"] == "5"
            assert int(response.headers["X-RateLimit-Reset"]) >= 1
            if response.status_code == 200:
                accepted.append(time.monotonic())
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
            else:
                assert response.status_code == 429
                assert response.headers["X-RateLimit-Remaining"] == "0"
            time.sleep(0.01)
    # A fixed window would let 5 through at the end of one second and 5 more at the start of
    # the next; a sliding one never has more than 5 inside any one-second span.
    spans = [sum(1 for t in accepted if start <= t < start + 0.95) for start in accepted]
    assert max(spans) <= 5
    assert len(accepted) >= 10  # it does let calls through again as the span moves on
    assert remaining[:5] == [4, 3, 2, 1, 0]


def test_drop_commits_then_cuts_the_response(sandbox: SandboxHandle) -> None:
    sandbox.set_faults(drop_rate=1.0)
    body = request_body(sandbox)
    with sandbox.api_client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/v1/payment_requests", json=body)
    created = sandbox.payment_requests()
    assert len(created) == 1
    assert created[0]["delivery"] == "dropped"
    assert created[0]["lago_invoice_ids"] == body["payment_request"]["lago_invoice_ids"]


def test_timeout_after_commit_creates_the_request_but_answers_too_late(
    sandbox: SandboxHandle,
) -> None:
    sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=5)
    with (
        sandbox.api_client(timeout=httpx.Timeout(5.0, read=0.3)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/api/v1/payment_requests", json=request_body(sandbox))
    created = sandbox.payment_requests()
    assert len(created) == 1
    assert created[0]["delivery"] == "hung"


def test_faults_do_not_touch_the_control_plane(sandbox: SandboxHandle) -> None:
    sandbox.set_faults(error_rate=1.0, rate_limit=1)
    for _ in range(3):
        assert sandbox.stats()["total"] == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"error_rate": 1.5}, "error_rate must be between 0 and 1, got 1.5"),
        ({"drop_rate": -0.1}, "drop_rate must be between 0 and 1, got -0.1"),
        ({"rate_limit": "fast"}, "rate_limit must be an integer"),
        ({"rate_limit_window": 1}, "rate_limit_window must be a string"),
        (
            {"rate_limit_window": "leaky"},
            "rate_limit_window must be one of fixed, sliding, got 'leaky'",
        ),
        ({"premium": "no"}, "premium must be true or false"),
        ({"chaos": True}, "unknown fault setting 'chaos'"),
    ],
)
def test_bad_fault_settings_are_rejected_with_one_line(
    sandbox: SandboxHandle, settings: dict[str, Any], message: str
) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/faults", json=settings)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert sandbox.faults()["error_rate"] == 0


def test_a_request_hanging_across_a_stats_reset_is_not_counted_after_it(
    sandbox: SandboxHandle,
) -> None:
    """Tests share one server: a POST still hanging from an earlier test must not show up in
    the next test's counts when it finally answers."""
    sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=1.0)
    with sandbox.api_client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/api/v1/payment_requests", json=request_body(sandbox))
    sandbox.reset_stats()
    sandbox.set_faults(timeout_after_commit_rate=0.0)

    time.sleep(1.5)  # the hanging handler has answered by now

    assert sandbox.request_count("POST /api/v1/payment_requests") == 0
    assert len(sandbox.payment_requests()) == 1  # it did commit, as the fault says
