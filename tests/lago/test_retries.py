"""The retry loop: which failures are retried, how often, how long, and the POST rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.lago.fakes import Sleeps, invoice_json, make_client, payment_json, payment_request_json
from worker.lago import (
    LagoAmbiguousError,
    LagoConnectionError,
    LagoError,
    LagoNotFoundError,
    LagoRateLimitedError,
    LagoServerError,
    LagoTimeoutError,
    LagoUnprocessableError,
)
from worker.lago.client import LagoClient
from worker.lago.ratelimit import AdvertisedLimit

Failure = Callable[[httpx.Request], httpx.Response]


def _raise(exc_type: type[httpx.TransportError], message: str = "boom") -> Failure:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return handler


def _status(status: int, headers: dict[str, str] | None = None) -> Failure:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"status": status, "error": "x"}, headers=headers)

    return handler


class Flaky:
    """Fails with `failure` the first `failures` times, then answers `success`."""

    def __init__(self, failure: Failure, failures: int, success: Failure) -> None:
        self.failure = failure
        self.failures = failures
        self.success = success
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return self.failure(request)
        return self.success(request)


def _invoice_ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"invoice": invoice_json(1)})


def _pr_ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"payment_request": payment_request_json()})


def _payment_ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"payment": payment_json()})


GET_TRANSIENT = [
    pytest.param(_raise(httpx.ConnectError), id="connect_error"),
    pytest.param(_raise(httpx.ConnectTimeout), id="connect_timeout"),
    pytest.param(_raise(httpx.ReadTimeout), id="read_timeout"),
    pytest.param(_raise(httpx.RemoteProtocolError), id="dropped"),
    pytest.param(_raise(httpx.ReadError), id="read_error"),
    pytest.param(_status(429), id="429"),
    pytest.param(_status(500), id="500"),
    pytest.param(_status(502), id="502"),
    pytest.param(_status(503), id="503"),
]


@pytest.mark.parametrize("failure", GET_TRANSIENT)
def test_get_retries_transient_failures_then_succeeds(failure: Failure) -> None:
    handler = Flaky(failure, 3, _invoice_ok)
    sleeps = Sleeps()
    with make_client(handler, sleep=sleeps, max_retries=4) as client:
        invoice = client.get_invoice("inv-00001")
    assert invoice.lago_id == "inv-00001"
    assert handler.calls == 4
    assert len(sleeps.delays) == 3


@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        (_raise(httpx.ConnectError), LagoConnectionError),
        (_raise(httpx.ReadTimeout), LagoTimeoutError),
        (_status(503), LagoServerError),
        (_status(429), LagoRateLimitedError),
    ],
)
def test_get_gives_up_after_max_retries(failure: Failure, error_class: type[LagoError]) -> None:
    handler = Flaky(failure, 100, _invoice_ok)
    with make_client(handler, max_retries=2) as client, pytest.raises(error_class):
        client.get_invoice("inv-00001")
    assert handler.calls == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422])
def test_client_errors_are_never_retried(status: int) -> None:
    handler = Flaky(_status(status), 100, _invoice_ok)
    with make_client(handler) as client, pytest.raises(LagoError):
        client.get_invoice("inv-00001")
    assert handler.calls == 1


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    sleeps = Sleeps()
    handler = Flaky(_status(500), 100, _invoice_ok)
    with (
        make_client(handler, sleep=sleeps, jitter=1.0, max_retries=8) as client,
        pytest.raises(LagoServerError),
    ):
        client.get_invoice("inv-00001")
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_jitter_can_shrink_the_delay() -> None:
    sleeps = Sleeps()
    with make_client(Flaky(_status(500), 2, _invoice_ok), sleep=sleeps, jitter=0.25) as client:
        client.get_invoice("inv-00001")
    assert sleeps.delays == [0.125, 0.25]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"X-RateLimit-Reset": "9"}, 9.0),
        ({"Retry-After": "3", "X-RateLimit-Reset": "5"}, 5.0),
        ({"Retry-After": "soon"}, 0.0),  # unreadable: plain backoff
    ],
)
def test_429_waits_at_least_what_the_server_asks(headers: dict[str, str], expected: float) -> None:
    sleeps = Sleeps()
    with make_client(
        Flaky(_status(429, headers), 1, _invoice_ok), sleep=sleeps, jitter=0.0
    ) as client:
        client.get_invoice("inv-00001")
    assert sleeps.delays == [expected]


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sleeps = Sleeps()
    with make_client(
        Flaky(_status(429, {"Retry-After": when}), 1, _invoice_ok), sleep=sleeps, jitter=0.0
    ) as client:
        client.get_invoice("inv-00001")
    assert 25 < sleeps.delays[0] <= 30


def test_backoff_wins_when_it_is_longer_than_the_header() -> None:
    sleeps = Sleeps()
    handler = Flaky(_status(429, {"X-RateLimit-Reset": "1"}), 3, _invoice_ok)
    with make_client(handler, sleep=sleeps, jitter=1.0) as client:
        client.get_invoice("inv-00001")
    assert sleeps.delays == [1.0, 1.0, 2.0]


def test_503_retry_after_is_honoured() -> None:
    sleeps = Sleeps()
    with make_client(
        Flaky(_status(503, {"Retry-After": "4"}), 1, _invoice_ok), sleep=sleeps, jitter=0.0
    ) as client:
        client.get_invoice("inv-00001")
    assert sleeps.delays == [4.0]


def test_a_server_delay_beyond_the_cap_is_not_waited_for() -> None:
    sleeps = Sleeps()
    handler = Flaky(_status(429, {"Retry-After": "3600"}), 100, _invoice_ok)
    with (
        make_client(handler, sleep=sleeps) as client,
        pytest.raises(LagoRateLimitedError) as caught,
    ):
        client.get_invoice("inv-00001")
    assert handler.calls == 1
    assert sleeps.delays == []
    assert caught.value.retry_after_s == 3600.0


class RecordingLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []
        self.observed: list[AdvertisedLimit] = []

    def acquire(self) -> None:
        self.acquired += 1

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def observe(self, advertised: AdvertisedLimit) -> None:
        self.observed.append(advertised)


def test_the_limiter_is_asked_before_every_attempt_and_paused_on_429() -> None:
    limiter = RecordingLimiter()
    handler = Flaky(_status(429, {"X-RateLimit-Reset": "2"}), 2, _invoice_ok)
    with make_client(handler, rate_limiter=limiter, jitter=0.0) as client:
        client.get_invoice("inv-00001")
    assert limiter.acquired == 3
    assert limiter.pauses == [2.0, 2.0]


def test_every_answer_with_rate_limit_headers_is_shown_to_the_limiter() -> None:
    limiter = RecordingLimiter()
    advertised = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}

    def limited_ok(request: httpx.Request) -> httpx.Response:
        response = _invoice_ok(request)
        response.headers.update({**advertised, "X-RateLimit-Remaining": "7"})
        return response

    handler = Flaky(_status(429, advertised), 1, limited_ok)
    with make_client(handler, rate_limiter=limiter, jitter=0.0) as client:
        client.get_invoice("inv-00001")
    assert limiter.observed == [AdvertisedLimit(50, 0, 1.0), AdvertisedLimit(50, 7, 1.0)]


def test_answers_without_rate_limit_headers_leave_the_bucket_alone() -> None:
    limiter = RecordingLimiter()
    with make_client(Flaky(_status(500), 0, _invoice_ok), rate_limiter=limiter) as client:
        client.get_invoice("inv-00001")
    assert limiter.observed == []


# -- POSTs: retried only when the request certainly did not take effect --------------------

POSTS: list[tuple[str, Callable[[LagoClient], object], Failure]] = [
    ("payment_request", lambda c: c.create_payment_request("cust-1", ["inv-00001"]), _pr_ok),
    (
        "payment",
        lambda c: c.create_payment(invoice_id="inv-00001", amount_cents=100, reference="r"),
        _payment_ok,
    ),
]


@pytest.mark.parametrize(("name", "call", "ok"), POSTS, ids=[p[0] for p in POSTS])
@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(_raise(httpx.ConnectError), id="connect_refused"),
        pytest.param(_raise(httpx.ConnectTimeout), id="connect_timeout"),
        pytest.param(_status(429), id="429"),
    ],
)
def test_post_is_retried_when_it_certainly_did_not_happen(
    name: str, call: Callable[[LagoClient], object], ok: Failure, failure: Failure
) -> None:
    handler = Flaky(failure, 2, ok)
    with make_client(handler) as client:
        call(client)
    assert handler.calls == 3


@pytest.mark.parametrize(("name", "call", "ok"), POSTS, ids=[p[0] for p in POSTS])
@pytest.mark.parametrize(
    ("failure", "cause_class"),
    [
        pytest.param(_raise(httpx.ReadTimeout), LagoTimeoutError, id="read_timeout"),
        pytest.param(_raise(httpx.WriteTimeout), LagoTimeoutError, id="write_timeout"),
        pytest.param(_raise(httpx.RemoteProtocolError), LagoConnectionError, id="dropped"),
        pytest.param(_raise(httpx.ReadError), LagoConnectionError, id="reset"),
        pytest.param(_status(500), LagoServerError, id="500"),
        pytest.param(_status(503), LagoServerError, id="503"),
    ],
)
def test_post_with_unknown_outcome_is_ambiguous_and_not_retried(
    name: str,
    call: Callable[[LagoClient], object],
    ok: Failure,
    failure: Failure,
    cause_class: type[LagoError],
) -> None:
    handler = Flaky(failure, 1, ok)
    with make_client(handler) as client, pytest.raises(LagoAmbiguousError) as caught:
        call(client)
    assert handler.calls == 1
    assert isinstance(caught.value.cause, cause_class)
    assert "may have taken effect" in str(caught.value)


def test_post_definitive_refusals_are_not_retried() -> None:
    handler = Flaky(_status(422), 1, _pr_ok)
    with make_client(handler) as client, pytest.raises(LagoUnprocessableError):
        client.create_payment_request("cust-1", ["inv-00001"])
    assert handler.calls == 1


def test_post_connect_refused_forever_is_a_connection_error_not_ambiguous() -> None:
    handler = Flaky(_raise(httpx.ConnectError), 100, _pr_ok)
    with (
        make_client(handler, max_retries=2) as client,
        pytest.raises(LagoConnectionError) as caught,
    ):
        client.create_payment_request("cust-1", ["inv-00001"])
    assert not isinstance(caught.value, LagoAmbiguousError)
    assert handler.calls == 3


def test_calls_are_counted_per_endpoint_and_outcome() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/customers/"):
            return _status(404)(request)
        return flaky(request)

    flaky = Flaky(_status(503), 2, _invoice_ok)
    with make_client(handler) as client:
        client.get_invoice("inv-00001")
        with pytest.raises(LagoNotFoundError):
            client.get_customer("gone")
        assert client.calls() == {
            "GET /api/v1/invoices/{lago_id} 503": 2,
            "GET /api/v1/invoices/{lago_id} 200": 1,
            "GET /api/v1/customers/{external_id} 404": 1,
        }
        assert client.calls_total() == 4


def test_observer_sees_every_attempt() -> None:
    seen: list[tuple[str, str]] = []

    def observer(endpoint: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        seen.append((endpoint, outcome))

    handler = Flaky(_raise(httpx.ReadTimeout), 1, _invoice_ok)
    with make_client(handler, observer=observer) as client:
        client.get_invoice("inv-00001")
    assert seen == [
        ("GET /api/v1/invoices/{lago_id}", "timeout"),
        ("GET /api/v1/invoices/{lago_id}", "200"),
    ]
