"""Prometheus metrics of the dunning worker (prometheus_client, default registry).

Who updates what:
- the Lago client reports every HTTP attempt through its `observer` callback: pass
  `observe_lago_call` (`LagoClient(..., observer=observe_lago_call)`);
- services count sweeps, sends, adoptions, ambiguous outcomes, recoveries and webhooks with
  the small `record_*` helpers below;
- gauges of the ledger (intents by status, outcomes) are refreshed from the database by
  whoever exposes them (`dunning serve` on each scrape of `/metrics`, reconciliation after
  each pass) through `set_intent_counts`.

Exposition:
- `dunning serve` answers `GET /metrics`.
- A Celery worker has no HTTP server of its own: set `DUNNING_METRICS_PORT` and call
  `start_metrics_server(port)` once in the worker process (e.g. on `worker_init`). With the
  threads or solo pool every task runs in that process and all counters are exact. With the
  prefork pool each child has its own counters: run one worker per port, or use the threads
  pool for the dunning queue (its work is I/O bound).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.registry import REGISTRY

SWEEPS = Counter("dunning_sweeps", "Sweeps finished, by final status.", ["status"])
SWEEP_SECONDS = Histogram(
    "dunning_sweep_duration_seconds",
    "Wall time of one sweep.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
LAGO_CALLS = Counter(
    "dunning_lago_api_calls",
    "HTTP attempts against the Lago API, by endpoint template and status (or error kind).",
    ["endpoint", "status"],
)
LAGO_CALL_SECONDS = Histogram(
    "dunning_lago_api_call_duration_seconds",
    "Duration of one HTTP attempt against the Lago API.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAGO_RATE_LIMITED = Counter(
    "dunning_lago_rate_limited", "Answers 429 (rate limited) from Lago.", ["endpoint"]
)
PAYMENT_REQUESTS_SENT = Counter(
    "dunning_payment_requests_sent", "Payment requests created by our POST.", ["currency"]
)
ADOPTIONS = Counter(
    "dunning_adoptions", "Payment requests found in Lago and adopted instead of re-sent."
)
AMBIGUOUS_OUTCOMES = Counter(
    "dunning_ambiguous_outcomes",
    "POSTs whose outcome was unknown (timeout, dropped connection, 5xx).",
)
OUTCOMES = Counter(
    "dunning_outcomes", "Outcomes recorded for sent or adopted intents.", ["outcome", "source"]
)
RECOVERED_CENTS = Counter(
    "dunning_recovered_cents", "Amount recovered after a payment request, in cents.", ["currency"]
)
RECONCILE_CHECKS = Counter(
    "dunning_reconcile_checks", "Intent outcome checks, by how they were done.", ["method"]
)
WEBHOOKS = Counter(
    "dunning_webhooks",
    "Lago webhooks received, by type and result (processed, duplicate, ignored, rejected).",
    ["webhook_type", "result"],
)
INTENTS = Gauge("dunning_intents", "Payment-request intents in the ledger, by status.", ["status"])
ANSWER_MISMATCHES = Counter(
    "dunning_answer_mismatches",
    "Payment requests Lago answered with (stage=sent) or we found to adopt (stage=adopted) that "
    "did not name our customer, our currency and a subset of our invoices: sent to review.",
    ["stage", "problem"],
)
INVOICES_JUDGED = Counter(
    "dunning_invoices_judged",
    "Listed invoices judged from their own fields, by result (eligible or a skip reason).",
    ["reason"],
)

# Label values we accept for webhook types; anything else is counted as "other" so a sender
# cannot grow the number of time series.
KNOWN_WEBHOOK_TYPES = frozenset(
    {
        "invoice.payment_status_updated",
        "invoice.payment_overdue",
        "payment_request.payment_status_updated",
        "payment_request.payment_failure",
        "payment_receipt.created",
        "unverified",
    }
)


def observe_lago_call(endpoint: str, status: str, seconds: float) -> None:
    """`LagoClient` observer: one call per HTTP attempt."""
    LAGO_CALLS.labels(endpoint=endpoint, status=status).inc()
    LAGO_CALL_SECONDS.labels(endpoint=endpoint).observe(max(seconds, 0.0))
    if status == "429":
        LAGO_RATE_LIMITED.labels(endpoint=endpoint).inc()


def record_sweep(status: str, seconds: float) -> None:
    SWEEPS.labels(status=status).inc()
    SWEEP_SECONDS.observe(max(seconds, 0.0))


def record_sent(currency: str) -> None:
    PAYMENT_REQUESTS_SENT.labels(currency=currency).inc()


def record_adoption() -> None:
    ADOPTIONS.inc()


def record_ambiguous() -> None:
    AMBIGUOUS_OUTCOMES.inc()


def record_outcome(outcome: str, *, source: str, currency: str, recovered_cents: int) -> None:
    """An intent's outcome was recorded (`source`: reconcile or webhook)."""
    OUTCOMES.labels(outcome=outcome, source=source).inc()
    if recovered_cents > 0:
        RECOVERED_CENTS.labels(currency=currency).inc(recovered_cents)


def record_answer_mismatch(stage: str, problem: str) -> None:
    """`stage`: sent (our POST's answer), adopted (a request found while reconciling), or
    invoice / link (an invoice read back, a payment link, on the retry_and_email channel)."""
    ANSWER_MISMATCHES.labels(stage=stage, problem=problem).inc()


def record_invoices_judged(counts: Mapping[str, int]) -> None:
    for reason, count in counts.items():
        if count > 0:
            INVOICES_JUDGED.labels(reason=reason).inc(count)


def record_check(method: str, count: int = 1) -> None:
    """`method`: get (confirmed with Lago), listing (seen overdue by the sweep), webhook."""
    if count > 0:
        RECONCILE_CHECKS.labels(method=method).inc(count)


def record_webhook(webhook_type: str, result: str) -> None:
    label = webhook_type if webhook_type in KNOWN_WEBHOOK_TYPES else "other"
    WEBHOOKS.labels(webhook_type=label, result=result).inc()


def set_intent_counts(counts: Mapping[str, int], statuses: tuple[str, ...] = ()) -> None:
    """Set the intents gauge; statuses listed in `statuses` but absent from `counts` get 0."""
    for status in {*statuses, *counts}:
        INTENTS.labels(status=status).set(counts.get(status, 0))


def render_latest(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve `/metrics` from a background thread of this process (for Celery workers)."""
    start_http_server(port, addr=addr)
