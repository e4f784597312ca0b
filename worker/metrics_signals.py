"""The Celery signals that serve and keep the metrics of a worker or beat process tree.

Connected once by worker/celery.py. Imported before the task modules, so nothing here
imports prometheus_client (or a module that does) at import time: see worker/metrics_files.py.

- `worker_init` (the main worker process, before its pool forks) and `beat_init` (a
  standalone beat): serve DUNNING_METRICS_PORT (worker/metrics_server.py);
- `worker_process_shutdown` (a pool child exits): mark it dead in the metric files;
- `beat_embedded_init` (the beat a worker forks for `worker -B`): record nothing there;
- `before_task_publish`: count the tasks this process publishes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import signals

from config import Settings
from config.cron import CronError, parse_cron
from config.policies import PolicyFileError, load_policies
from worker.metrics_files import MetricsSetupError

SettingsOf = Callable[[], Settings | None]
"""The settings the process was booted with (`celery -A worker`), or None: an app built by
other means (tests, `dunning` commands) serves no metrics port."""

_served = threading.Event()
_in_embedded_beat = threading.Event()


def serve(settings_of: SettingsOf, role: str) -> None:
    """Serve DUNNING_METRICS_PORT from this process, once. A beat embedded in a worker is a
    child of a process already serving (the flag is inherited): the worker's port covers
    it. A port that cannot be served stops the process with one line."""
    settings = settings_of()
    if settings is None or settings.metrics_port is None or _served.is_set():
        return
    from worker.metrics_server import serve_process_metrics

    try:
        cron = parse_cron(load_policies(settings.policy_file).cron)
        serve_process_metrics(settings, role, cron)
    except (MetricsSetupError, PolicyFileError, CronError) as exc:
        raise SystemExit(f"error: {exc}") from None
    _served.set()


def child_exited(settings_of: SettingsOf, pid: int | None) -> None:
    settings = settings_of()
    directory = settings.resolved_metrics_dir if settings is not None else None
    if directory is not None:
        from worker.metrics_server import mark_child_dead

        mark_child_dead(directory, pid)


def embedded_beat_started() -> None:
    """Celery closes every inherited file descriptor in the embedded beat, those of the
    metric files included, so that process must not touch a metric (prometheus_client would
    close the old files' descriptors again, which may by then belong to the beat's own files
    or sockets). Its ticks are not counted; the sweeps they start are, in the pool."""
    _in_embedded_beat.set()


def count_published(task: str) -> None:
    if _in_embedded_beat.is_set():
        return
    from worker import metrics

    metrics.record_task_published(task)


def connect_metric_signals(settings_of: SettingsOf) -> None:
    def on_worker_init(**_: Any) -> None:
        serve(settings_of, "worker")

    def on_beat_init(**_: Any) -> None:
        serve(settings_of, "beat")

    def on_child_shutdown(pid: int | None = None, **_: Any) -> None:
        child_exited(settings_of, pid)

    def on_embedded_beat(**_: Any) -> None:
        embedded_beat_started()

    def on_publish(sender: Any = None, **_: Any) -> None:
        count_published(str(sender))

    signals.worker_init.connect(on_worker_init, weak=False)
    signals.beat_init.connect(on_beat_init, weak=False)
    signals.worker_process_shutdown.connect(on_child_shutdown, weak=False)
    signals.beat_embedded_init.connect(on_embedded_beat, weak=False)
    signals.before_task_publish.connect(on_publish, weak=False)
