"""Prometheus metrics of the dunning worker (prometheus_client, default registry).

Who updates what:
- the Lago client reports every HTTP attempt through its `observer` callback: pass
  `observe_lago_call` (`LagoClient(..., observer=observe_lago_call)`); the rate limiter
  reports the time it held a request back through `observe_limiter_wait`;
- services count sweeps, decisions, sends, lease expiries, adoptions, ambiguous outcomes,
  recoveries and webhooks with the small `record_*` helpers below; Celery counts the tasks
  each process publishes (`record_task_published`, beat's ticks among them);
- nothing here is a gauge: what the ledger holds (intents by status, the oldest open
  intent, the last successful sweep) is read from the database on each scrape by
  `worker.metrics_ledger.LedgerCollector`, so every process reports the same truth.

Exposition: `dunning serve` answers `GET /metrics`; Celery workers and beat serve
`DUNNING_METRICS_PORT` (`worker.metrics_server`: prometheus_client multiprocess mode, so the
counters of every prefork child are summed). Only counters and histograms are defined here,
which multiprocess mode sums across processes without a `multiprocess_mode` to choose.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
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
LAGO_UNAUTHORIZED = Counter(
    "dunning_lago_unauthorized",
    "Answers 401 (API key rejected) from Lago: nothing works until LAGO_API_KEY is fixed.",
    ["endpoint"],
)
RATE_LIMITER_WAIT = Counter(
    "dunning_rate_limiter_wait_seconds",
    "Seconds requests to Lago were held back by the shared rate limiter (pauses after a 429 "
    "included).",
)
DECISIONS = Counter(
    "dunning_sweep_decisions",
    "Decisions of finished sweeps, one per customer group, by reason (eligible or a skip).",
    ["reason"],
)
SENDS = Counter(
    "dunning_sends",
    "Send attempts of an intent, by outcome (sent, adopted, refused, blocked, needs_review, "
    "rescheduled, not_claimed, lease_lost).",
    ["outcome"],
)
LEASE_EXPIRIES = Counter(
    "dunning_lease_expiries",
    "Intents claimed after the previous holder's lease expired (a worker died or stalled).",
)
TASKS_PUBLISHED = Counter(
    "dunning_tasks_published",
    "Celery tasks published by this process, by task name (beat's ticks among them).",
    ["task"],
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


#: Task names we label as themselves; any other is counted as "other".
KNOWN_TASKS = frozenset(
    {
        "dunning.sweep",
        "dunning.send_payment_request",
        "dunning.send_payment_requests",
        "dunning.reconcile",
    }
)


def observe_lago_call(endpoint: str, status: str, seconds: float) -> None:
    """`LagoClient` observer: one call per HTTP attempt (`endpoint` is a template)."""
    LAGO_CALLS.labels(endpoint=endpoint, status=status).inc()
    LAGO_CALL_SECONDS.labels(endpoint=endpoint).observe(max(seconds, 0.0))
    if status == "429":
        LAGO_RATE_LIMITED.labels(endpoint=endpoint).inc()
    elif status == "401":
        LAGO_UNAUTHORIZED.labels(endpoint=endpoint).inc()


def observe_limiter_wait(seconds: float) -> None:
    """Rate limiter observer: a request was held back for `seconds`."""
    if seconds > 0:
        RATE_LIMITER_WAIT.inc(seconds)


def record_sweep(status: str, seconds: float) -> None:
    SWEEPS.labels(status=status).inc()
    SWEEP_SECONDS.observe(max(seconds, 0.0))


def record_decisions(counts: Mapping[str, int]) -> None:
    for reason, count in counts.items():
        if count > 0:
            DECISIONS.labels(reason=reason).inc(count)


def record_send(outcome: str) -> None:
    SENDS.labels(outcome=outcome).inc()


def record_lease_expiries(count: int) -> None:
    if count > 0:
        LEASE_EXPIRIES.inc(count)


def record_task_published(task: str) -> None:
    TASKS_PUBLISHED.labels(task=task if task in KNOWN_TASKS else "other").inc()


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


def render_latest(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
