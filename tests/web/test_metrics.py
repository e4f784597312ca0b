"""Metrics helpers: what the Lago client observer and the services count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from config.cron import parse_cron
from worker import metrics
from worker.metrics_ledger import sweep_interval


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_lago_calls_are_counted_by_endpoint_and_status_and_429s_separately() -> None:
    endpoint = "GET /api/v1/invoices/{lago_id}"
    before_ok = sample("dunning_lago_api_calls_total", endpoint=endpoint, status="200")
    before_429 = sample("dunning_lago_rate_limited_total", endpoint=endpoint)
    metrics.observe_lago_call(endpoint, "200", 0.02)
    metrics.observe_lago_call(endpoint, "429", 0.01)
    metrics.observe_lago_call(endpoint, "timeout", 5.0)
    assert sample("dunning_lago_api_calls_total", endpoint=endpoint, status="200") == before_ok + 1
    assert sample("dunning_lago_rate_limited_total", endpoint=endpoint) == before_429 + 1
    assert sample("dunning_lago_api_calls_total", endpoint=endpoint, status="timeout") >= 1


def test_recovered_amount_is_counted_per_currency_only_when_positive() -> None:
    before = sample("dunning_recovered_cents_total", currency="NZD")
    metrics.record_outcome("paid", source="webhook", currency="NZD", recovered_cents=1234)
    metrics.record_outcome("voided", source="reconcile", currency="NZD", recovered_cents=0)
    assert sample("dunning_recovered_cents_total", currency="NZD") == before + 1234
    assert sample("dunning_outcomes_total", outcome="voided", source="reconcile") >= 1


def test_unknown_webhook_types_share_one_label() -> None:
    before = sample("dunning_webhooks_total", webhook_type="other", result="ignored")
    metrics.record_webhook("made.up.type.1", "ignored")
    metrics.record_webhook("made.up.type.2", "ignored")
    assert sample("dunning_webhooks_total", webhook_type="other", result="ignored") == before + 2
    assert sample("dunning_webhooks_total", webhook_type="made.up.type.1", result="ignored") == 0


def test_401s_are_counted_apart_and_limiter_waits_add_up() -> None:
    endpoint = "GET /api/v1/invoices"
    before_401 = sample("dunning_lago_unauthorized_total", endpoint=endpoint)
    before_wait = sample("dunning_rate_limiter_wait_seconds_total")
    metrics.observe_lago_call(endpoint, "401", 0.01)
    metrics.observe_lago_call(endpoint, "200", 0.01)
    metrics.observe_limiter_wait(0.25)
    metrics.observe_limiter_wait(0.0)
    metrics.observe_limiter_wait(0.5)
    assert sample("dunning_lago_unauthorized_total", endpoint=endpoint) == before_401 + 1
    assert sample("dunning_rate_limiter_wait_seconds_total") == before_wait + 0.75


def test_published_tasks_outside_ours_share_one_label() -> None:
    before = sample("dunning_tasks_published_total", task="other")
    metrics.record_task_published("celery.backend_cleanup")
    metrics.record_task_published("dunning.sweep")
    assert sample("dunning_tasks_published_total", task="other") == before + 1
    assert sample("dunning_tasks_published_total", task="celery.backend_cleanup") == 0


def test_exposition_is_prometheus_text() -> None:
    payload, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    assert b"# TYPE dunning_sweeps_total counter" in payload


def test_the_sweep_interval_is_the_gap_between_the_last_two_ticks() -> None:
    monday_10am = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert sweep_interval(parse_cron("*/15 * * * *"), monday_10am) == 900
    # weekdays at 9: on a Monday the last gap is the weekend's
    assert sweep_interval(parse_cron("0 9 * * 1-5"), monday_10am) == 3 * 86400
    assert sweep_interval(parse_cron("0 9 * * 1-5"), monday_10am + timedelta(days=1)) == 86400
