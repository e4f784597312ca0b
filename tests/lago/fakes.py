"""Small builders for Lago-shaped JSON and a client wired to an `httpx.MockTransport`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from worker.lago import LagoClient
from worker.lago.retry import RetryPolicy

API_KEY = "sk-test-very-secret-key"
BASE_URL = "http://lago.test"

Handler = Callable[[httpx.Request], httpx.Response]


def customer_json(external_id: str = "cust-1") -> dict[str, Any]:
    return {
        "lago_id": f"lago-{external_id}",
        "external_id": external_id,
        "name": "Acme",
        "email": "billing@acme.test",
        "currency": "EUR",
        "applicable_timezone": "Europe/Paris",
        "metadata": [],
    }


def invoice_json(number: int, **overrides: Any) -> dict[str, Any]:
    invoice: dict[str, Any] = {
        "lago_id": f"inv-{number:05d}",
        "number": f"ACME-{number:05d}",
        "issuing_date": "2026-10-01",
        "payment_due_date": "2026-10-31",
        "status": "finalized",
        "payment_status": "pending",
        "payment_overdue": True,
        "currency": "EUR",
        "total_amount_cents": 10_000,
        "total_due_amount_cents": 10_000,
        "total_paid_amount_cents": 0,
        "billing_entity_code": "acme-fr",
        "self_billed": False,
        "customer": customer_json(),
        "created_at": "2026-10-01T00:00:00Z",
    }
    invoice.update(overrides)
    return invoice


def payment_request_json(
    lago_id: str = "pr-1", invoice_ids: tuple[str, ...] = ("inv-00001",)
) -> dict[str, Any]:
    return {
        "lago_id": lago_id,
        "email": "billing@acme.test",
        "amount_cents": 10_000 * len(invoice_ids),
        "amount_currency": "EUR",
        "payment_status": "pending",
        "created_at": "2026-11-01T10:00:00Z",
        "customer": customer_json(),
        "invoices": [invoice_json(1, lago_id=i) for i in invoice_ids],
    }


def payment_json(lago_id: str = "pay-1", invoice_id: str = "inv-00001") -> dict[str, Any]:
    return {
        "lago_id": lago_id,
        "invoice_ids": [invoice_id],
        "amount_cents": 10_000,
        "amount_currency": "EUR",
        "payment_status": "succeeded",
        "type": "manual",
        "reference": "wire 42",
        "created_at": "2026-11-02T10:00:00Z",
    }


def meta_json(page: int, per_page: int, total_count: int) -> dict[str, Any]:
    total_pages = -(-total_count // per_page) if total_count else 0
    return {
        "current_page": page if total_count else 0,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total_count,
    }


class InvoiceServer:
    """Serves `count` invoices; announces `announced_count` in meta (a stale cached count)."""

    def __init__(self, count: int, *, announced_count: int | None = None) -> None:
        self.count = count
        self.announced_count = count if announced_count is None else announced_count
        self.pages_served: list[int] = []
        self.overrides: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/invoices"
        page = int(request.url.params["page"])
        per_page = int(request.url.params["per_page"])
        with self._lock:
            self.pages_served.append(page)
        start = (page - 1) * per_page
        numbers = range(start + 1, min(self.count, start + per_page) + 1)
        rows = [self.overrides.get(n, invoice_json(n)) for n in numbers]
        body = {"invoices": rows, "meta": meta_json(page, per_page, self.announced_count)}
        return httpx.Response(200, json=body)


class Sleeps:
    """A fake `sleep` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(
    handler: Handler,
    *,
    sleep: Callable[[float], None] | None = None,
    max_retries: int = 4,
    concurrency: int = 4,
    jitter: float | None = None,
    **kwargs: Any,
) -> LagoClient:
    return LagoClient(
        BASE_URL,
        SecretStr(API_KEY),
        transport=httpx.MockTransport(handler),
        concurrency=concurrency,
        retry_policy=(
            RetryPolicy(max_retries=max_retries)
            if jitter is None
            else RetryPolicy(max_retries=max_retries, jitter=lambda: jitter)
        ),
        sleep=sleep or Sleeps(),
        **kwargs,
    )
