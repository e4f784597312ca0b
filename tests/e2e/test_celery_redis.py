"""Real Celery processes on a real Redis broker and PostgreSQL ledger, against the sandbox.

- Two RedBeat beats and one worker: each cron slot is swept once, the sweep's payment requests
  are created exactly once, and `celery -A worker call dunning.sweep` works as documented.
- A worker SIGKILLed while its POSTs hang, then restarted: nothing duplicated, nothing lost.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from config import Settings
from tests.fixtures.sandbox import SandboxHandle
from tests.tasks.support import (
    CeleryProcesses,
    all_sent,
    assert_no_invoice_requested_twice,
    celery_command,
    count_runs,
    intent_statuses,
    kill_group,
    posts_in_flight,
    redis_postgres_env,
    runs_by_slot,
    settings_of,
    wait_for,
)
from worker.cli.ops_cmd import enqueue_reconcile, enqueue_sweep

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(400)]

POST = "POST /api/v1/payment_requests"


@pytest.fixture
def env(
    tmp_path: Path, sandbox: SandboxHandle, postgres_url: str, redis_url: str
) -> dict[str, str]:
    return redis_postgres_env(tmp_path, sandbox, postgres_url, redis_url)


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_of(env)


def json_events(text: str) -> list[dict[str, object]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def received(log: str, task: str) -> int:
    return sum(
        1
        for e in json_events(log)
        if str(e.get("event", "")).startswith(f"Task {task}[")
        and str(e["event"]).endswith("received")
    )


def test_two_redbeat_beats_sweep_each_slot_once(
    processes: CeleryProcesses, sandbox: SandboxHandle, postgres_url: str, env: dict[str, str]
) -> None:
    processes.worker("worker")
    processes.start("beat-a", "beat", "--loglevel", "INFO")
    processes.start("beat-b", "beat", "--loglevel", "INFO")

    wait_for(
        lambda: count_runs(postgres_url, trigger="beat") >= 2,
        timeout=180,
        what="two beat ticks",
    )
    statuses = wait_for(lambda: all_sent(postgres_url), timeout=60, what="every intent sent")

    by_slot = runs_by_slot(postgres_url)
    beat_slots = [slot for slot in by_slot if slot is not None]
    assert len(beat_slots) >= 2
    assert all(count == 1 for count in by_slot.values())
    # one beat held the RedBeat lock; the other waited: the broker saw one message per slot
    leaders = [n for n in ("beat-a", "beat-b") if "Acquired lock" in processes.log(n)]
    assert len(leaders) == 1
    assert received(processes.log("worker"), "dunning.sweep") == count_runs(
        postgres_url, trigger="beat"
    )
    # the first tick asked every overdue group once; later ticks asked nobody again
    assert sandbox.request_count(POST, 200) == len(statuses)
    assert assert_no_invoice_requested_twice(sandbox) == len(statuses)

    # documented manual trigger: `celery -A worker call dunning.sweep`
    call = subprocess.run(
        celery_command("call", "dunning.sweep"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert call.returncode == 0, call.stderr
    wait_for(
        lambda: count_runs(postgres_url, trigger="celery") == 1,
        timeout=60,
        what="the called sweep",
    )
    assert sandbox.request_count(POST) == len(statuses)


def test_worker_killed_mid_send_loses_nothing_and_duplicates_nothing(
    processes: CeleryProcesses, sandbox: SandboxHandle, postgres_url: str, settings: Settings
) -> None:
    # every POST creates the request in Lago, then hangs: the worker never learns the answer
    sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=60)
    first = processes.worker("worker-1")
    enqueue_sweep(settings)
    wait_for(
        lambda: len(sandbox.payment_requests()) >= 2,
        timeout=90,
        what="two payment requests created while their POSTs hang",
    )
    kill_group(first)
    created_before_restart = len(sandbox.payment_requests())
    # A batch claims its intents together and posts a few at a time: only those whose POST
    # was stamped may have reached Lago; the others are claimed, never posted.
    in_flight = posts_in_flight(postgres_url)
    assert in_flight

    sandbox.set_faults(timeout_after_commit_rate=0.0)
    processes.worker("worker-2")

    def settled() -> dict[int, str] | None:
        # the periodic reconcile, asked for by hand: takes over expired leases and adopts
        enqueue_reconcile(settings)
        return all_sent(postgres_url)

    statuses = wait_for(settled, timeout=120, interval=3.0, what="every intent settled")
    assert {statuses[i] for i in in_flight} == {"adopted"}
    # every request Lago had made when the worker died was adopted, none made again
    assert list(statuses.values()).count("adopted") >= created_before_restart
    assert len(sandbox.payment_requests()) == len(statuses)
    assert len(sandbox.payment_requests()) >= created_before_restart
    assert assert_no_invoice_requested_twice(sandbox) == len(statuses)


def test_sigterm_lets_the_running_send_finish(
    processes: CeleryProcesses, sandbox: SandboxHandle, postgres_url: str, settings: Settings
) -> None:
    sandbox.set_faults(latency_ms=4000)
    worker = processes.worker("worker")
    enqueue_sweep(settings, "cus_00001")

    def sending() -> bool:
        return "sending" in intent_statuses(postgres_url).values()

    wait_for(sending, timeout=90, interval=0.1, what="a send in flight")
    worker.terminate()  # SIGTERM to the main process only: warm shutdown
    assert worker.wait(timeout=60) == 0
    assert set(intent_statuses(postgres_url).values()) == {"sent"}
    assert sandbox.request_count(POST, 200) == 1
    assert "Warm shutdown" in processes.log("worker")
