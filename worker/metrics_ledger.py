"""Gauges of what the ledger holds, read from the database on each scrape, and of the sweep
schedule (the interval between the last two ticks of the policy file's cron).

They are computed where they are exposed (`dunning serve`, a worker's or beat's metrics
port) through the read models in `worker.read`, so they never depend on which process last
touched the ledger, and prefork children need no gauge files of their own. Every process
that exposes metrics reports the same values: alerts and dashboards take `max()` across them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config.cron import Cron
from worker.logging import get_logger
from worker.read import reading
from worker.read.intents import oldest_open_intent_created_at
from worker.read.runs import intent_counts, last_successful_sweep
from worker.store.errors import StoreError

log = get_logger(__name__)

INTENTS = "dunning_intents"
OLDEST_OPEN_INTENT_AGE = "dunning_oldest_open_intent_age_seconds"
LAST_SUCCESSFUL_SWEEP = "dunning_last_successful_sweep_timestamp_seconds"
LEDGER_UP = "dunning_ledger_up"
SWEEP_INTERVAL = "dunning_sweep_interval_seconds"


def metric_families() -> dict[str, GaugeMetricFamily]:
    """The gauge families this collector reports, empty (what `describe` and tests list)."""
    return {
        INTENTS: GaugeMetricFamily(
            INTENTS,
            "Payment-request intents in the ledger, by status (needs_review: waiting for a human).",
            labels=["status"],
        ),
        OLDEST_OPEN_INTENT_AGE: GaugeMetricFamily(
            OLDEST_OPEN_INTENT_AGE,
            "Age of the oldest intent not sent yet (pending or being sent); 0 when none is open.",
        ),
        LAST_SUCCESSFUL_SWEEP: GaugeMetricFamily(
            LAST_SUCCESSFUL_SWEEP,
            "Unix time the newest succeeded sweep finished (absent until one has).",
        ),
        LEDGER_UP: GaugeMetricFamily(
            LEDGER_UP, "1 when the ledger answered this scrape, 0 when it could not be read."
        ),
        SWEEP_INTERVAL: GaugeMetricFamily(
            SWEEP_INTERVAL,
            "Seconds between the last two ticks of the sweep cron (the policy file's schedule).",
        ),
    }


def sweep_interval(cron: Cron, now: datetime) -> float:
    """Seconds between the latest tick at or before `now` and the one before it."""
    last = cron.previous(now)
    return (last - cron.previous(last - timedelta(minutes=1))).total_seconds()


class LedgerCollector(Collector):
    """A prometheus_client collector: one read transaction per scrape.

    `engine` is called on each scrape (a process that forks after building its engine must
    not hand the parent's pool to a child: `forked_engine` takes care of that)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        clock: Callable[[], datetime],
        cron: Cron | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._cron = cron

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without reading the ledger (what a registry asks on register)."""
        yield from metric_families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = metric_families()
        now = self._clock()
        if self._cron is not None:
            families[SWEEP_INTERVAL].add_metric([], sweep_interval(self._cron, now))
            yield families[SWEEP_INTERVAL]
        try:
            with reading(self._engine()) as session:
                counts = intent_counts(session)
                oldest = oldest_open_intent_created_at(session)
                last_sweep = last_successful_sweep(session)
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("cannot read the ledger for metrics", reason=type(exc).__name__)
            families[LEDGER_UP].add_metric([], 0)
            yield families[LEDGER_UP]
            return
        for status, count in sorted(counts.items()):
            families[INTENTS].add_metric([status], count)
        age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
        families[OLDEST_OPEN_INTENT_AGE].add_metric([], age)
        if last_sweep is not None:
            families[LAST_SUCCESSFUL_SWEEP].add_metric([], last_sweep.timestamp())
        families[LEDGER_UP].add_metric([], 1)
        yield from (family for name, family in families.items() if name != SWEEP_INTERVAL)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def single_process_registry(ledger: LedgerCollector) -> CollectorRegistry:
    """What a one-process server (`dunning serve`) exposes: its own metrics (the default
    registry) and the ledger gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(REGISTRY))
    registry.register(ledger)
    return registry


def forked_engine(build: Callable[[], Engine]) -> Callable[[], Engine]:
    """An engine built on first use and rebuilt in a process forked after that (the child
    drops the parent's pooled connections without closing them, as SQLAlchemy advises)."""
    state: dict[str, tuple[int, Engine]] = {}
    lock = threading.Lock()

    def engine() -> Engine:
        with lock:
            held = state.get("engine")
            if held is not None and held[0] == os.getpid():
                return held[1]
            if held is not None:
                held[1].dispose(close=False)
            built = build()
            state["engine"] = (os.getpid(), built)
            return built

    return engine
