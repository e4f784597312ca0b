"""Sweeps that died (SIGKILL) are marked abandoned once their heartbeat is gone; live ones
keep beating and are left alone."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from tests.e2e.sweep_support import GENERATED_POLICY, sweep_runtime, test_settings, write_policy
from tests.fixtures.sandbox import SandboxHandle
from worker.services.run_heartbeat import ABANDONED_AFTER, Heartbeat
from worker.services.sweep import run_sweep
from worker.store import runs
from worker.store.db import make_engine, read_session, write_tx


def _run_row(engine: Engine, run_id: int) -> tuple[str, datetime | None, str | None]:
    with read_session(engine) as session:
        run = runs.get_run(session, run_id)
        assert run is not None
        return run.status, run.heartbeat_at, run.error


def test_the_heartbeat_keeps_a_running_sweep_fresh(engine: Engine) -> None:
    start = datetime.now(UTC)
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=start)
    with Heartbeat(engine, run_id, lambda: datetime.now(UTC), interval_s=0.05):
        time.sleep(0.3)
    status, beat, _ = _run_row(engine, run_id)
    assert status == "running"
    assert beat is not None
    assert beat > start


def test_a_sweep_marks_runs_that_stopped_beating_as_abandoned(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with write_tx(engine) as session:
            killed = runs.start_run(
                session, trigger="beat", now=now - ABANDONED_AFTER - timedelta(minutes=1)
            )
            alive = runs.start_run(session, trigger="cli", now=now - timedelta(minutes=1))
        sandbox.reset(customers=5, seed=1)
        settings = test_settings(db_url, sandbox, write_policy(tmp_path, text=GENERATED_POLICY))
        with sweep_runtime(settings) as rt:
            summary = run_sweep(rt, trigger="cli")

        status, _, error = _run_row(engine, killed)
        assert status == "abandoned"
        assert error is not None
        assert error.startswith("abandoned: no heartbeat")
        assert _run_row(engine, alive)[0] == "running"
        assert summary.run_id is not None
        assert _run_row(engine, summary.run_id)[0] == "succeeded"
    finally:
        engine.dispose()


def test_a_slow_run_marked_abandoned_still_records_its_real_end(engine: Engine) -> None:
    long_ago = datetime.now(UTC) - ABANDONED_AFTER - timedelta(minutes=5)
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=long_ago)
        assert runs.mark_abandoned(
            session, now=datetime.now(UTC), silent_since=datetime.now(UTC) - ABANDONED_AFTER
        ) == [run_id]
        runs.finish_run(
            session,
            run_id=run_id,
            now=datetime.now(UTC),
            status="succeeded",
            counts=runs.RunCounts(invoices_seen=3),
        )
    assert _run_row(engine, run_id)[0] == "succeeded"
