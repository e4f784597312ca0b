"""The Lago API client: one pooled, thread-safe `httpx.Client` per process.

Every request goes through `_send`, which takes a rate-limiter token, sends, records the call,
and retries by the rules of `worker.lago.retry` (GETs on transient failures; POSTs only when
the request certainly did not take effect). Responses are validated into `worker.lago.models`;
failures raise the `worker.lago.errors` tree. The API key never appears in a repr or message.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr

from config.settings import api_key_problem
from worker.lago.errors import (
    LagoAmbiguousError,
    LagoConnectionError,
    LagoError,
    LagoMalformedResponseError,
    LagoRateLimitedError,
    LagoRequestError,
    LagoServerError,
    LagoTimeoutError,
)
from worker.lago.filters import InvoiceFilters, QueryParams
from worker.lago.models import (
    Customer,
    Invoice,
    InvoicePaymentDetails,
    MalformedRecord,
    Payment,
    PaymentReceipt,
    PaymentRequest,
    PaymentStatus,
)
from worker.lago.parsing import Page, decode_json, parse_page, parse_page_lenient, unwrap
from worker.lago.ratelimit import RateLimiter, Unlimited, advertised_limit
from worker.lago.retry import (
    RetryPolicy,
    retry_delay,
    server_delay,
    should_retry,
    status_is_retryable,
)
from worker.lago.status_errors import status_error
from worker.lago.transport import LeanTransport, proxy_configured

if TYPE_CHECKING:
    from config.settings import Settings

M = TypeVar("M", bound=BaseModel)

Observer = Callable[[str, str, float], None]
"""Called after every attempt with (endpoint template, status or error kind, seconds).

Kinds: "connect_error", "connect_timeout", "request_error", "timeout", "connection_dropped".
It may be called from the paging threads at the same time: it must be thread-safe.
"""

API = "/api/v1"
DEFAULT_PER_PAGE = 100


def _package_version() -> str:
    try:
        return version("lago-dunning")
    except PackageNotFoundError:
        return "0"


USER_AGENT = f"lago-dunning/{_package_version()}"


class LagoClient:
    """Sync client for the Lago endpoints the dunning worker uses. Thread-safe.

    `concurrency` bounds both the connection pool and the pages fetched at once. Requests go
    through `LeanTransport` (`http.client`, cheaper in CPU), or through httpx's own transport
    when the environment names a proxy for the URL. `transport` lets tests plug in
    `httpx.MockTransport`; `sleep` lets them skip real waits.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 4,
        concurrency: int = 16,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        observer: Observer | None = None,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        problem = api_key_problem(api_key.get_secret_value())
        if problem is not None:
            raise ValueError(f"the Lago API key {problem}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.concurrency = concurrency
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self._limiter: RateLimiter = rate_limiter or Unlimited()
        self._observer = observer
        self._sleep = sleep
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        url = httpx.URL(self.base_url)
        self._host = f"{url.host}:{url.port}" if url.port else url.host
        if transport is None and not proxy_configured(self.base_url):
            transport = LeanTransport(max_idle=concurrency)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key.get_secret_value()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        base_url: str | None = None,
        rate_limiter: RateLimiter | None = None,
        observer: Observer | None = None,
    ) -> LagoClient:
        """Build the client from settings; `base_url` overrides (e.g. the sandbox's URL)."""
        url = base_url or settings.lago_api_url
        if not url:
            raise ValueError("no Lago API URL: set LAGO_API_URL")
        return cls(
            url,
            settings.lago_api_key,
            timeout_s=settings.lago_timeout_s,
            max_retries=settings.lago_max_retries,
            concurrency=settings.http_concurrency,
            rate_limiter=rate_limiter,
            observer=observer,
        )

    def __repr__(self) -> str:
        return f"LagoClient(base_url={self.base_url!r}, api_key=SecretStr('**********'))"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- call accounting -------------------------------------------------------------------

    def calls(self) -> dict[str, int]:
        """Attempts so far, keyed "METHOD template outcome", e.g. "GET /api/v1/invoices 200"."""
        with self._calls_lock:
            return dict(self._calls)

    def calls_total(self) -> int:
        with self._calls_lock:
            return sum(self._calls.values())

    def _record(self, endpoint: str, outcome: str, seconds: float) -> None:
        with self._calls_lock:
            self._calls[f"{endpoint} {outcome}"] += 1
        if self._observer is not None:
            self._observer(endpoint, outcome, seconds)

    # -- the request loop ------------------------------------------------------------------

    def _send(
        self,
        method: str,
        template: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send one logical request with retries; return a 2xx response or raise LagoError.

        `template` names the endpoint without ids (e.g. "/api/v1/invoices/{lago_id}").
        `retry=False`: one attempt only (the caller has its own, slower, retry schedule).
        """
        endpoint = f"{method} {template}"
        idempotent = method == "GET"
        retries_taken = 0
        while True:
            self._limiter.acquire()
            started = time.perf_counter()
            try:
                response = self._http.request(
                    method, path, params=tuple(params) if params else None, json=json
                )
            except httpx.HTTPError as exc:
                outcome, error, maybe_sent = self._transport_failure(endpoint, exc)
                self._record(endpoint, outcome, time.perf_counter() - started)
                if maybe_sent and not idempotent:
                    raise _ambiguous(endpoint, error) from exc
                advertised: float | None = None
            else:
                self._record(endpoint, str(response.status_code), time.perf_counter() - started)
                advertised_limits = advertised_limit(response.headers)
                if advertised_limits is not None:
                    self._limiter.observe(advertised_limits)
                if response.is_success:
                    return response
                advertised = server_delay(response.headers)
                error = status_error(
                    response.status_code,
                    response.content,
                    endpoint=endpoint,
                    retry_after_s=advertised,
                )
                if isinstance(error, LagoServerError) and not idempotent:
                    raise _ambiguous(endpoint, error)
                if not status_is_retryable(response.status_code):
                    raise error
            if not retry or not should_retry(
                retries_taken, self.retry_policy, advertised_s=advertised
            ):
                if isinstance(error, LagoRateLimitedError) and advertised is not None:
                    # Let everybody sharing the limiter back off before the caller tries again.
                    self._limiter.pause(min(advertised, self.retry_policy.max_server_delay_s))
                raise error
            delay = retry_delay(retries_taken, self.retry_policy, advertised_s=advertised)
            if isinstance(error, LagoRateLimitedError):
                self._limiter.pause(delay)
            self._sleep(delay)
            retries_taken += 1

    def _transport_failure(
        self, endpoint: str, exc: httpx.HTTPError
    ) -> tuple[str, LagoError, bool]:
        """(outcome label, error, whether the request may have reached Lago)."""
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ConnectError):
            label = "connect_error" if isinstance(exc, httpx.ConnectError) else "connect_timeout"
            message = f"could not connect to {self._host} ({self._exc_text(exc)})"
            return label, LagoConnectionError(message, endpoint=endpoint), False
        if isinstance(exc, httpx.LocalProtocolError):
            # h11's text quotes the offending header, e.g. "Illegal header value b'Bearer ...'":
            # never repeat it.
            message = (
                f"the request to {self._host} is not valid HTTP (a header value such as the "
                "API key contains a forbidden character)"
            )
            return "request_error", LagoRequestError(message, endpoint=endpoint), False
        if isinstance(exc, httpx.UnsupportedProtocol):
            message = f"could not send to {self._host} ({self._exc_text(exc)})"
            return "request_error", LagoRequestError(message, endpoint=endpoint), False
        if isinstance(exc, httpx.TimeoutException):
            message = f"no answer from {self._host} in time ({type(exc).__name__})"
            return "timeout", LagoTimeoutError(message, endpoint=endpoint), True
        message = f"connection to {self._host} failed mid-request ({self._exc_text(exc)})"
        return "connection_dropped", LagoConnectionError(message, endpoint=endpoint), True

    def _exc_text(self, exc: Exception) -> str:
        """The exception's text on one line, at most 200 characters, without the API key."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        return text.replace(self._api_key.get_secret_value(), "***")[:200]

    def _get_json(
        self, template: str, path: str, params: QueryParams | None = None, *, retry: bool = True
    ) -> Any:
        response = self._send("GET", template, path, params=params, retry=retry)
        return decode_json(response.content, endpoint=f"GET {template}")

    def _post_json(self, template: str, body: dict[str, Any]) -> Any:
        response = self._send("POST", template, template, json=body)
        return decode_json(response.content, endpoint=f"POST {template}")

    # -- invoices --------------------------------------------------------------------------

    def _lenient_page(
        self, template: str, key: str, model: type[M], query: QueryParams, page: int, per_page: int
    ) -> Page[M | MalformedRecord]:
        params = [*query, ("page", str(page)), ("per_page", str(per_page))]
        body = self._get_json(template, template, params)
        return parse_page_lenient(body, key, model, endpoint=f"GET {template}", page=page)

    def _iter_concurrently(
        self, template: str, key: str, model: type[M], query: QueryParams, per_page: int
    ) -> Generator[M | MalformedRecord, None, None]:
        """Every row of a listing, in Lago's order, page after page.

        Page 1 is fetched first; the following pages known from its `total_pages` are fetched
        concurrently (a sliding window of `concurrency` pages) and yielded in page order. The
        listing stops at the first page shorter than `per_page`; if `total_pages` was too low
        (Lago caches counts), it continues one page at a time until a short page. A row that
        fails validation is yielded as a `MalformedRecord` and the listing goes on.
        """
        if per_page < 1:
            raise ValueError("per_page must be >= 1")
        first = self._lenient_page(template, key, model, query, 1, per_page)
        yield from first.items
        if first.size < per_page:
            return
        planned_last = first.meta.total_pages
        del first
        pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, max(1, planned_last - 1)),
            thread_name_prefix="lago-pages",
        )
        window: deque[Future[Page[M | MalformedRecord]]] = deque()
        next_page = 2
        try:
            while True:
                # Fill the window: concurrently up to the announced last page, then one by one.
                while len(window) < self.concurrency and (next_page <= planned_last or not window):
                    window.append(
                        pool.submit(
                            self._lenient_page, template, key, model, query, next_page, per_page
                        )
                    )
                    next_page += 1
                page = window.popleft().result()
                yield from page.items
                if page.size < per_page:
                    return
        finally:
            for future in window:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def iter_invoices(
        self, filters: InvoiceFilters, *, per_page: int = DEFAULT_PER_PAGE
    ) -> Generator[Invoice | MalformedRecord, None, None]:
        """Every invoice matching `filters` (as far as this Lago honours them: callers judge
        each invoice themselves), concurrently paged; a bad row is a `MalformedRecord`."""
        template = f"{API}/invoices"
        yield from self._iter_concurrently(
            template, "invoices", Invoice, filters.to_params(), per_page
        )

    def get_invoice(self, lago_id: str) -> Invoice:
        template = f"{API}/invoices/{{lago_id}}"
        body = self._get_json(template, f"{API}/invoices/{_segment(lago_id)}")
        return unwrap(body, "invoice", Invoice, endpoint=f"GET {template}")

    def retry_payment(self, lago_id: str) -> None:
        """Ask Lago to collect the invoice again through the customer's payment provider.

        Lago answers 200 with an empty body; 405 `invalid_status` (draft, voided or paid) or
        `payment_processor_is_currently_handling_payment`. Without a provider Lago still
        answers 200 and only sends an `invoice.payment_failure` webhook: check the customer
        first. Not idempotent: a timeout, dropped connection or 5xx raises
        `LagoAmbiguousError`.
        """
        template = f"{API}/invoices/{{lago_id}}/retry_payment"
        self._send("POST", template, f"{API}/invoices/{_segment(lago_id)}/retry_payment", json={})

    def payment_url(self, lago_id: str) -> InvoicePaymentDetails:
        """A checkout link for the invoice from the customer's payment provider.

        422 `no_linked_payment_provider`, `invalid_payment_provider` (GoCardless),
        `invalid_invoice_status_or_payment_status`, `missing_payment_provider` or
        `missing_payment_provider_customer` when Lago cannot make one.
        """
        template = f"{API}/invoices/{{lago_id}}/payment_url"
        response = self._send(
            "POST", template, f"{API}/invoices/{_segment(lago_id)}/payment_url", json={}
        )
        body = decode_json(response.content, endpoint=f"POST {template}")
        return unwrap(
            body, "invoice_payment_details", InvoicePaymentDetails, endpoint=f"POST {template}"
        )

    # -- payment requests ------------------------------------------------------------------

    def create_payment_request(
        self,
        external_customer_id: str,
        lago_invoice_ids: list[str] | tuple[str, ...] | frozenset[str],
        *,
        email: str | None = None,
    ) -> PaymentRequest:
        """Create a payment request (Lago starts a charge and/or sends an email).

        Not idempotent in Lago: a timeout, dropped connection or 5xx raises
        `LagoAmbiguousError`; reconcile with `iter_payment_requests` before sending again.
        Lago silently drops invoices of other customers: compare `invoice_ids` with what you
        sent.
        """
        if not lago_invoice_ids:
            raise ValueError("lago_invoice_ids must not be empty")
        payload: dict[str, Any] = {
            "external_customer_id": external_customer_id,
            "lago_invoice_ids": sorted(lago_invoice_ids),
        }
        if email is not None:
            payload["email"] = email
        template = f"{API}/payment_requests"
        body = self._post_json(template, {"payment_request": payload})
        return unwrap(body, "payment_request", PaymentRequest, endpoint=f"POST {template}")

    def iter_payment_requests(
        self,
        *,
        external_customer_id: str | None = None,
        payment_status: PaymentStatus | None = None,
        currency: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Iterator[PaymentRequest]:
        """Payment requests, newest first, fetched page by page (a bad row raises)."""
        params: QueryParams = []
        if external_customer_id is not None:
            params.append(("external_customer_id", external_customer_id))
        if payment_status is not None:
            params.append(("payment_status", payment_status))
        if currency is not None:
            params.append(("currency", currency))
        yield from self._iter_sequential(
            f"{API}/payment_requests", "payment_requests", PaymentRequest, params, per_page
        )

    def iter_payment_request_rows(
        self,
        *,
        payment_status: PaymentStatus | None = None,
        external_customer_id: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Generator[PaymentRequest | MalformedRecord, None, None]:
        """Payment requests (of every customer unless one is given), concurrently paged; a bad
        row is a `MalformedRecord`. Lago filters them, but callers check each row."""
        params: QueryParams = []
        if external_customer_id is not None:
            params.append(("external_customer_id", external_customer_id))
        if payment_status is not None:
            params.append(("payment_status", payment_status))
        yield from self._iter_concurrently(
            f"{API}/payment_requests", "payment_requests", PaymentRequest, params, per_page
        )

    def get_payment_request(self, lago_id: str) -> PaymentRequest:
        template = f"{API}/payment_requests/{{lago_id}}"
        body = self._get_json(template, f"{API}/payment_requests/{_segment(lago_id)}")
        return unwrap(body, "payment_request", PaymentRequest, endpoint=f"GET {template}")

    # -- payments and receipts -------------------------------------------------------------

    def iter_payment_receipts(
        self, *, invoice_id: str, per_page: int = DEFAULT_PER_PAGE
    ) -> Iterator[PaymentReceipt]:
        """Receipts of payments for the invoice (or for a payment request containing it)."""
        yield from self._iter_sequential(
            f"{API}/payment_receipts",
            "payment_receipts",
            PaymentReceipt,
            [("invoice_id", invoice_id)],
            per_page,
        )

    def iter_payments(
        self,
        *,
        invoice_id: str | None = None,
        external_customer_id: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Iterator[Payment]:
        params: QueryParams = []
        if invoice_id is not None:
            params.append(("invoice_id", invoice_id))
        if external_customer_id is not None:
            params.append(("external_customer_id", external_customer_id))
        yield from self._iter_sequential(f"{API}/payments", "payments", Payment, params, per_page)

    def create_payment(
        self,
        *,
        invoice_id: str,
        amount_cents: int,
        reference: str,
        paid_at: date | None = None,
    ) -> Payment:
        """Record a manual payment. Not idempotent: same retry rules as payment requests."""
        payload: dict[str, Any] = {
            "invoice_id": invoice_id,
            "amount_cents": amount_cents,
            "reference": reference,
        }
        if paid_at is not None:
            payload["paid_at"] = paid_at.isoformat()
        template = f"{API}/payments"
        body = self._post_json(template, {"payment": payload})
        return unwrap(body, "payment", Payment, endpoint=f"POST {template}")

    # -- customers and webhooks ------------------------------------------------------------

    def get_customer(self, external_id: str) -> Customer:
        template = f"{API}/customers/{{external_id}}"
        body = self._get_json(template, f"{API}/customers/{_segment(external_id)}")
        return unwrap(body, "customer", Customer, endpoint=f"GET {template}")

    def get_webhook_public_key(self) -> str:
        """The PEM text of the RSA key Lago signs JWT webhooks with.

        One attempt, never retried here: the webhook receiver's key cache decides when to
        ask again (at most once per window), so a Lago outage plus forged tokens cannot turn
        into a burst of GETs.
        """
        template = f"{API}/webhooks/json_public_key"
        endpoint = f"GET {template}"
        body = self._get_json(template, template, retry=False)
        webhook = body.get("webhook") if isinstance(body, dict) else None
        encoded = webhook.get("public_key") if isinstance(webhook, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise LagoMalformedResponseError(
                "missing 'webhook.public_key'", endpoint=endpoint, field="webhook.public_key"
            )
        try:
            pem = base64.b64decode(encoded, validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise LagoMalformedResponseError(
                "'webhook.public_key' is not base64 text",
                endpoint=endpoint,
                field="webhook.public_key",
            ) from None
        if "-----BEGIN" not in pem:
            raise LagoMalformedResponseError(
                "'webhook.public_key' is not a PEM key",
                endpoint=endpoint,
                field="webhook.public_key",
            )
        return pem

    # -- helpers ---------------------------------------------------------------------------

    def _iter_sequential(
        self,
        template: str,
        key: str,
        model: type[M],
        params: QueryParams,
        per_page: int,
    ) -> Iterator[M]:
        """Page 1, 2, ... until a page shorter than `per_page` (never trusting `next_page`)."""
        if per_page < 1:
            raise ValueError("per_page must be >= 1")
        page_number = 1
        while True:
            query = [*params, ("page", str(page_number)), ("per_page", str(per_page))]
            body = self._get_json(template, template, query)
            page = parse_page(body, key, model, endpoint=f"GET {template}")
            yield from page.items
            if page.size < per_page:
                return
            page_number += 1


def _segment(value: str) -> str:
    """Percent-encode one path segment so an id can never change the path."""
    if value in {"", ".", ".."}:
        raise ValueError(f"invalid id {value!r}")
    return quote(value, safe="")


def _ambiguous(endpoint: str, cause: LagoError) -> LagoAmbiguousError:
    return LagoAmbiguousError(
        f"outcome unknown, it may have taken effect in Lago ({cause.message})",
        endpoint=endpoint,
        cause=cause,
    )
