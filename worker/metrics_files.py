"""The metric files of a worker or beat process tree (prometheus_client multiprocess mode).

With the prefork pool every task runs in a child process, so counters kept in memory would
be split between children that nothing serves. In multiprocess mode each process writes its
values to small memory-mapped files named after its pid in one directory, and the process
that serves `/metrics` sums them on each scrape: a child that exits keeps its counts, a new
child starts from zero, and no process has to ask another anything.

prometheus_client chooses the mode from PROMETHEUS_MULTIPROC_DIR when it is imported, and
each metric takes its value class when it is built; so `enable_multiprocess` runs in the
Celery bootstrap, before the task modules (which build our metrics) are loaded. This module
does not import prometheus_client itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

#: The variable prometheus_client reads to choose multiprocess mode and find the directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsSetupError(Exception):
    """Metrics cannot be served as configured. One-line `str()`."""


def _pid_of(path: Path) -> int | None:
    """The pid in a metric file name (`counter_1234.db`, `gauge_livesum_1234.db`)."""
    tail = path.stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def enable_multiprocess(directory: Path) -> None:
    """Make this process (and the children it forks) write metrics into `directory`.

    Call it before `worker.metrics` is imported. prometheus_client itself may be loaded
    already (Celery's command line loads plugins such as Flower, which import it): its
    value class is then chosen again, as its own tests do, before our metrics exist.
    Files already named after this pid are left over from an earlier process that had the
    same pid (a restarted container starts its pids again): they are removed, since no live
    process can share our pid."""
    if "worker.metrics" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(directory):
        raise MetricsSetupError(
            "metrics were defined before DUNNING_METRICS_PORT took effect; start the worker "
            "with `celery -A worker worker` (or beat with `celery -A worker beat`)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_files(directory, keep=lambda pid: pid != os.getpid())
    except OSError as exc:
        raise MetricsSetupError(
            f"cannot prepare the metrics directory {directory} ({exc.strerror or exc}): "
            "set DUNNING_METRICS_DIR or DUNNING_DATA_DIR to a writable directory"
        ) from None
    os.environ[MULTIPROC_ENV] = str(directory)
    if "prometheus_client.values" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def clear_other_processes(directory: Path) -> int:
    """At the start of a worker or beat: drop the files of every other pid (the processes of
    an earlier run; counters then restart from zero, which Prometheus reads as a reset).
    Returns how many files were removed."""
    return remove_files(directory, keep=lambda pid: pid == os.getpid())


def remove_files(directory: Path, *, keep: Callable[[int], bool]) -> int:
    """Remove the metric files whose pid `keep` does not accept; returns how many."""
    removed = 0
    for path in directory.glob("*.db"):
        pid = _pid_of(path)
        if pid is None or keep(pid):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed
