"""A running sweep says it is alive; a sweep that stopped saying so died.

While a sweep runs, a daemon thread stamps its run's `heartbeat_at` every
`HEARTBEAT_SECONDS` in a short transaction of its own. A run still `running` whose last sign
of life is older than `ABANDONED_AFTER` was killed (SIGKILL, a lost host): the next sweep marks
it `abandoned` so `dunning status` stops showing it as running. (A run that was only slow and
finishes after all still records its real final status.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from worker.logging import get_logger
from worker.store import runs
from worker.store.db import write_tx
from worker.store.errors import StoreError

log = get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
ABANDONED_AFTER = timedelta(minutes=10)


class Heartbeat:
    """`with Heartbeat(engine, run_id, clock):` keeps the run's heartbeat fresh."""

    def __init__(
        self,
        engine: Engine,
        run_id: int | None,
        clock: Callable[[], datetime],
        *,
        interval_s: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._engine = engine
        self._run_id = run_id
        self._clock = clock
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self._run_id is not None:
            self._thread = threading.Thread(
                target=self._beat, name=f"sweep-heartbeat-{self._run_id}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)

    def _beat(self) -> None:
        assert self._run_id is not None
        while not self._stop.wait(self._interval):
            try:
                with write_tx(self._engine) as session:
                    runs.heartbeat(session, run_id=self._run_id, now=self._clock())
            except StoreError as exc:
                log.warning("sweep.heartbeat_failed", run_id=self._run_id, error=str(exc))


def abandon_dead_runs(session: Session, *, now: datetime) -> list[int]:
    """Mark the runs that stopped beating as abandoned (in the caller's transaction)."""
    dead = runs.mark_abandoned(session, now=now, silent_since=now - ABANDONED_AFTER)
    if dead:
        log.warning("sweep.runs_abandoned", run_ids=dead, silent_for=str(ABANDONED_AFTER))
    return dead
