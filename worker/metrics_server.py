"""`DUNNING_METRICS_PORT`: the Prometheus endpoint of a Celery worker or of beat.

The process that starts the tree (the worker's main process, before it forks its pool, or a
standalone beat) serves every path of `http://DUNNING_METRICS_ADDR:DUNNING_METRICS_PORT/`
from a background thread: the counters of all its processes, summed from their files
(`worker.metrics_files`), and the ledger gauges read on each scrape
(`worker.metrics_ledger`). The pool's children only write their files; when one exits,
`mark_child_dead` drops what only a live process may report.
"""

from __future__ import annotations

import os
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from config import Settings
from config.cron import Cron
from worker.logging import get_logger
from worker.metrics_files import MetricsSetupError, clear_other_processes
from worker.metrics_ledger import LedgerCollector, forked_engine
from worker.services.runtime import utc_now
from worker.store.db import engine_for

log = get_logger(__name__)


def process_tree_registry(directory: Path, ledger: LedgerCollector | None) -> CollectorRegistry:
    """A registry of the metric files in `directory`, plus the ledger gauges."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    if ledger is not None:
        registry.register(ledger)
    return registry


def serve_process_metrics(
    settings: Settings, role: str, cron: Cron | None = None
) -> tuple[WSGIServer, Thread]:
    """Bind the metrics port, then clear the files an earlier run left (only the process
    that holds the port does). Raises `MetricsSetupError` (one line) when it cannot."""
    port, directory = settings.metrics_port, settings.resolved_metrics_dir
    if port is None or directory is None:
        raise MetricsSetupError("DUNNING_METRICS_PORT is not set")
    ledger = LedgerCollector(forked_engine(lambda: engine_for(settings)), utc_now, cron)
    registry = process_tree_registry(directory, ledger)
    # One scrape here, before the server thread exists: it imports everything a scrape needs
    # (the database driver is imported lazily). A prefork child forked while the server thread
    # held an import lock would otherwise wait on that lock for ever.
    generate_latest(registry)
    try:
        server, thread = start_http_server(port, addr=settings.metrics_addr, registry=registry)
    except OSError as exc:
        raise MetricsSetupError(
            f"cannot serve metrics on {settings.metrics_addr}:{port} "
            f"({exc.strerror or exc}): set DUNNING_METRICS_PORT to a free port"
        ) from None
    removed = clear_other_processes(directory)
    log.info(
        "metrics_serving",
        role=role,
        url=f"http://{settings.metrics_addr}:{port}/metrics",
        directory=str(directory),
        stale_files_removed=removed,
    )
    return server, thread


def mark_child_dead(directory: Path, pid: int | None = None) -> None:
    """A pool child exits: its live gauges go (its counters stay in the sums)."""
    mark_process_dead(pid if pid is not None else os.getpid(), str(directory))  # type: ignore[no-untyped-call]
