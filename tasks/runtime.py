"""One `Runtime` per worker process, built lazily on first use (after the prefork fork).

The pooled Lago client and the database engine must not cross a fork, so the parent never
builds one and a child drops anything it inherited (`worker_process_init`).
"""

from __future__ import annotations

import threading

from celery import signals

from config import load_settings
from worker.services.runtime import Runtime, open_runtime

_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - the process-wide runtime, guarded by _lock
    with _lock:
        if _runtime is None:
            _runtime = open_runtime(load_settings())
        return _runtime


def use_runtime(runtime: Runtime | None) -> None:
    """Install a runtime built elsewhere (in-process callers and tests); None forgets it."""
    global _runtime  # noqa: PLW0603
    with _lock:
        _runtime = runtime


def close_runtime() -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()


def _forget_inherited_runtime(**_: object) -> None:
    global _runtime  # noqa: PLW0603
    _runtime = None


def _close_at_child_exit(**_: object) -> None:
    close_runtime()


def _close_at_exit(**_: object) -> None:
    close_runtime()


signals.worker_process_init.connect(_forget_inherited_runtime, weak=False)
signals.worker_process_shutdown.connect(_close_at_child_exit, weak=False)
signals.worker_shutdown.connect(_close_at_exit, weak=False)
