"""The Celery tasks, run in-process against the sandbox and a real database.

Fan-out goes through a real (in-memory) broker so the messages the sweep publishes are
checked as they would reach a worker: by task name, carrying an intent id only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from celery import Celery
from sqlalchemy import Engine

import tasks.dunning as dunning_tasks
from config import Settings, load_settings
from tasks.runtime import use_runtime
from tasks.slots import tick_slot
from tests.fixtures.sandbox import SandboxHandle
from tests.tasks.support import (
    assert_no_invoice_requested_twice,
    intent_statuses,
    runs_by_slot,
    write_policy,
)
from worker.services.runtime import Runtime, open_runtime
from worker.store import intents

pytestmark = pytest.mark.timeout(120)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(tmp_path: Path, sandbox: SandboxHandle, db_url: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        policy_file=write_policy(tmp_path),
        lago_api_url=sandbox.url,
        lago_api_key=sandbox.api_key,
        rate_limit_rps=0,
        lease_seconds=10,
        settle_seconds=0,
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def runtime(settings: Settings, clock: Clock) -> Iterator[Runtime]:
    rt = open_runtime(settings, clock=clock)
    use_runtime(rt)
    try:
        yield rt
    finally:
        use_runtime(None)
        rt.close()


@pytest.fixture
def app() -> Iterator[Celery]:
    """An app on the in-memory broker; the shared dunning tasks bind to it."""
    celery = Celery("dunning-test", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True
    celery.finalize()
    try:
        yield celery
    finally:
        celery.close()


def published(app: Celery) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting on the default queue, consumed."""
    found: list[tuple[str, list[Any]]] = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                args, kwargs, _ = message.decode()
                assert kwargs == {}
                found.append((message.headers["task"], list(args)))
                message.ack()
        finally:
            queue.close()
    return found


def run(app: Celery, name: str, **kwargs: Any) -> Any:
    result = app.tasks[name].apply(**kwargs)
    assert result.successful(), result.traceback
    return result.result


def test_tasks_are_registered_under_their_stable_names(app: Celery) -> None:
    assert {
        "dunning.sweep",
        "dunning.send_payment_request",
        "dunning.send_payment_requests",
        "dunning.reconcile",
    } <= set(app.tasks)


def test_beat_sweep_owns_its_slot_and_fans_out_its_intents_in_send_batches(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle, db_url: str
) -> None:
    first = run(app, "dunning.sweep", kwargs={"trigger": "beat"})
    assert first["status"] == "done"
    slot = tick_slot("*/15 * * * *", NOW)
    assert first["slot"] == slot
    created = first["intents"]
    assert created
    assert sorted(created) == sorted(intent_statuses(db_url))
    assert published(app) == [("dunning.send_payment_requests", [created])]

    # the same cron firing delivered again (a second beat, a redelivery): nothing happens
    again = run(app, "dunning.sweep", kwargs={"trigger": "beat"})
    assert again == {"status": "slot_taken", "slot": slot}
    assert published(app) == []
    assert runs_by_slot(db_url) == {slot: 1}
    assert sandbox.request_count("POST /api/v1/payment_requests") == 0


def test_manual_sweeps_claim_no_slot(app: Celery, runtime: Runtime, db_url: str) -> None:
    first = run(app, "dunning.sweep", kwargs={"trigger": "celery"})
    second = run(app, "dunning.sweep", kwargs={"trigger": "celery"})
    assert first["slot"] is None
    assert second["status"] == "done"
    assert second["intents"] == []  # the open intents of the first sweep still stand
    assert runs_by_slot(db_url) == {None: 2}


def test_one_customer_sweep(app: Celery, runtime: Runtime, db_url: str) -> None:
    result = run(app, "dunning.sweep", kwargs={"trigger": "celery", "customer": "cus_00001"})
    assert len(result["intents"]) == 1
    published(app)


def test_send_creates_the_payment_request_once_even_when_redelivered(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle, db_url: str
) -> None:
    created = run(app, "dunning.sweep", kwargs={"trigger": "celery"})["intents"]
    messages = published(app)
    for name, args in messages:
        assert run(app, name, args=args) == {"sent": len(args[0])}
    assert sandbox.request_count("POST /api/v1/payment_requests", 200) == len(created)
    # every message delivered a second time (visibility timeout, lost worker)
    for name, args in messages:
        assert run(app, name, args=args) == {"not_claimed": len(args[0])}
    assert sandbox.request_count("POST /api/v1/payment_requests") == len(created)
    assert set(intent_statuses(db_url).values()) == {"sent"}
    assert assert_no_invoice_requested_twice(sandbox) == len(created)


def test_missing_licence_is_logged_once_and_not_retried(
    app: Celery,
    runtime: Runtime,
    sandbox: SandboxHandle,
    db_url: str,
) -> None:
    sandbox.set_faults(premium=False)
    dunning_tasks._licence_warned.clear()
    created = run(app, "dunning.sweep", kwargs={"trigger": "celery"})["intents"]
    assert len(created) >= 2
    with structlog.testing.capture_logs() as logs:
        statuses = [run(app, name, args=args) for name, args in published(app)]
    assert statuses == [{"blocked": len(created)}]
    warnings = [e for e in logs if e["event"] == "lago_premium_licence_missing"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "error"
    assert published(app) == []  # nothing re-queued itself
    assert set(intent_statuses(db_url).values()) == {"blocked"}


def test_reconcile_takes_over_an_expired_lease_and_sends(
    app: Celery, runtime: Runtime, clock: Clock, sandbox: SandboxHandle, db_url: str
) -> None:
    run(app, "dunning.sweep", kwargs={"trigger": "celery", "customer": "cus_00001"})
    ((_, [[intent_id]]),) = published(app)
    engine: Engine = runtime.engine
    # a worker claimed it and died before posting
    claimed = intents.claim_intents(
        engine,
        owner="dead-worker",
        now=clock.now,
        lease_seconds=10,
        limit=1,
        intent_ids=[intent_id],
    )
    assert [c.id for c in claimed] == [intent_id]
    assert run(app, "dunning.reconcile")["due"] == 0  # lease still running: hands off

    clock.now = NOW + timedelta(seconds=11)
    result = run(app, "dunning.reconcile")
    assert result["due"] == 1
    assert result["by_status"] == {"sent": 1}
    assert intent_statuses(db_url) == {intent_id: "sent"}
    assert sandbox.request_count("POST /api/v1/payment_requests", 200) == 1


def test_unknown_trigger_is_rejected_without_a_run(
    app: Celery, runtime: Runtime, db_url: str
) -> None:
    assert run(app, "dunning.sweep", kwargs={"trigger": "cron"}) == {
        "status": "rejected",
        "trigger": "cron",
    }
    assert runs_by_slot(db_url) == {}


def test_unreachable_lago_fails_the_task_with_one_log_line_and_no_fan_out(
    app: Celery, settings: Settings, db_url: str
) -> None:
    rt = open_runtime(
        settings.model_copy(update={"lago_max_retries": 0, "lago_timeout_s": 2.0}),
        lago_url="http://127.0.0.1:9",
    )
    use_runtime(rt)
    try:
        with structlog.testing.capture_logs() as logs:
            result = app.tasks["dunning.sweep"].apply(kwargs={"trigger": "celery"})
    finally:
        use_runtime(None)
        rt.close()
    assert result.failed()
    assert "LagoConnectionError" in repr(result.result)
    failures = [e for e in logs if e["event"] == "sweep_failed"]
    assert len(failures) == 1
    assert "127.0.0.1:9" in failures[0]["error"]
    assert published(app) == []
    assert app.tasks["dunning.sweep"].throws == dunning_tasks.EXPECTED_ERRORS


def test_fanned_out_sends_settle_their_run_and_say_when_they_are_done(
    app: Celery, runtime: Runtime, db_url: str
) -> None:
    from worker.read import reading
    from worker.read.runs import recent_runs
    from worker.store.db import read_session
    from worker.store.models import SweepRun

    result = run(app, "dunning.sweep", kwargs={"trigger": "celery"})
    created = result["intents"]
    messages = published(app)
    with structlog.testing.capture_logs() as logs:
        for name, args in messages:
            run(app, name, args=args)
    finished = [e for e in logs if e["event"] == "sweep.sends_finished"]
    assert len(finished) == 1  # said once, by the send that left nothing in flight
    assert finished[0]["sent"] == len(created)
    with read_session(runtime.engine) as session:
        row = session.get(SweepRun, result["run_id"])
        assert row is not None
        assert row.requests_sent == len(created)  # the run's row, not 0
    with reading(runtime.engine) as session:
        (line,) = recent_runs(session, limit=1)
    assert (line.sends.sent, line.sends.in_flight) == (len(created), 0)


def test_a_missing_licence_in_a_task_asks_dunning_run_to_stop(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle, settings: Settings
) -> None:
    from worker.services.instance import read_halt

    sandbox.set_faults(premium=False)
    run(app, "dunning.sweep", kwargs={"trigger": "celery", "customer": "cus_00001"})
    assert read_halt(settings.data_dir) is None
    for name, args in published(app):
        assert run(app, name, args=args) == {"blocked": 1}
    halt = read_halt(settings.data_dir)
    assert halt is not None
    assert halt.code == "licence_missing"


def test_a_rejected_key_in_a_task_asks_dunning_run_to_stop_and_pickles_cleanly(
    app: Celery, settings: Settings
) -> None:
    from pydantic import SecretStr

    from worker.lago.errors import LagoUnauthorizedError
    from worker.services.instance import read_halt

    rt = open_runtime(settings.model_copy(update={"lago_api_key": SecretStr("wrong")}))
    use_runtime(rt)
    try:
        result = app.tasks["dunning.sweep"].apply(kwargs={"trigger": "celery"})
    finally:
        use_runtime(None)
        rt.close()
    assert result.failed()
    # Celery keeps the error itself, not an UnpickleableExceptionWrapper around it
    assert isinstance(result.result, LagoUnauthorizedError)
    halt = read_halt(settings.data_dir)
    assert halt is not None
    assert halt.code == "api_key_rejected"
    assert halt.message == "Lago rejected the API key: check LAGO_API_KEY"


def test_the_single_intent_send_task_still_sends_what_a_batch_would(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle, db_url: str
) -> None:
    created = run(app, "dunning.sweep", kwargs={"trigger": "celery"})["intents"]
    published(app)
    first, *rest = created
    assert run(app, "dunning.send_payment_request", args=[first]) == "sent"
    assert run(app, "dunning.send_payment_requests", args=[created]) == {
        "sent": len(rest),
        "not_claimed": 1,
    }
    assert set(intent_statuses(db_url).values()) == {"sent"}
    assert assert_no_invoice_requested_twice(sandbox) == len(created)


def test_a_batch_larger_than_a_send_batch_is_refused_without_a_call(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle
) -> None:
    ids = list(range(1, dunning_tasks.SEND_BATCH + 2))
    assert run(app, "dunning.send_payment_requests", args=[ids]) == {"rejected": len(ids)}
    assert sandbox.request_count("POST /api/v1/payment_requests") == 0


def test_a_large_sweep_fans_out_batches_of_at_most_a_send_batch(
    app: Celery, runtime: Runtime, sandbox: SandboxHandle
) -> None:
    sandbox.reset(customers=120, invoices_per_customer=1, seed=3)
    created = run(app, "dunning.sweep", kwargs={"trigger": "celery"})["intents"]
    batches = [args[0] for name, args in published(app) if name == "dunning.send_payment_requests"]
    assert len(created) > dunning_tasks.SEND_BATCH
    assert all(0 < len(batch) <= dunning_tasks.SEND_BATCH for batch in batches)
    assert [i for batch in batches for i in batch] == created


def test_a_low_rate_limit_makes_smaller_batches_that_end_inside_their_lease() -> None:
    assert dunning_tasks.batch_size(0) == dunning_tasks.SEND_BATCH  # no limit
    assert dunning_tasks.batch_size(50) == dunning_tasks.SEND_BATCH
    assert dunning_tasks.batch_size(2) == 20
    assert dunning_tasks.batch_size(0.1) == 1
