"""Metrics from real Celery processes: a prefork worker and a standalone beat, each serving
DUNNING_METRICS_PORT, scraped over HTTP while they work on Redis, PostgreSQL and the sandbox.

The worker's pool children are recycled after a few tasks (`--max-tasks-per-child`), so the
counts on the port must add up over children that are still alive and children that exited.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from config import Settings
from tasks.dunning import batch_size
from tests.fixtures.sandbox import SandboxHandle, free_port
from tests.fixtures.scrape import Samples, sample_total, sample_value, scrape
from tests.tasks.support import (
    DUNNING,
    CeleryProcesses,
    all_sent,
    child_env,
    count_runs,
    intent_statuses,
    redis_postgres_env,
    settings_of,
    start_process,
    stop_process,
    wait_for,
    write_policy,
)
from worker.cli.ops_cmd import enqueue_sweep

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(300)]

POST = "POST /api/v1/payment_requests"
RATE_LIMIT_RPS = 1
LIST = "GET /api/v1/invoices"


@pytest.fixture
def ports() -> dict[str, int]:
    return {"worker": free_port(), "beat": free_port()}


@pytest.fixture
def env(
    tmp_path: Path,
    sandbox: SandboxHandle,
    postgres_url: str,
    redis_url: str,
    ports: dict[str, int],
) -> dict[str, str]:
    # 1 call/s: sends go in batches of 10 (tasks.dunning.batch_size), so the sweep's intents
    # take several send tasks and several prefork children share the work.
    return redis_postgres_env(
        tmp_path,
        sandbox,
        postgres_url,
        redis_url,
        DUNNING_METRICS_PORT=str(ports["worker"]),
        DUNNING_RATE_LIMIT_RPS=str(RATE_LIMIT_RPS),
    )


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_of(env)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


def sends_by_pid(directory: Path) -> dict[int, float]:
    """What each process wrote to its own counter file: the parts the port sums."""
    found: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        for family in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in family.samples:
                if sample.name == "dunning_sends_total":
                    found[pid] = found.get(pid, 0.0) + sample.value
    return found


def test_prefork_children_add_up_on_the_worker_port(
    processes: CeleryProcesses,
    sandbox: SandboxHandle,
    postgres_url: str,
    settings: Settings,
    ports: dict[str, int],
) -> None:
    worker = processes.worker("worker", "--max-tasks-per-child", "3")
    before = wait_for(lambda: scrape(url(ports["worker"])), timeout=60, what="the worker port")
    assert sample_value(before, "dunning_ledger_up") == 1
    assert sample_total(before, "dunning_sends_total") == 0

    enqueue_sweep(settings)
    statuses = wait_for(lambda: all_sent(postgres_url), timeout=120, what="every intent sent")
    assert len(statuses) >= 4

    def settled() -> Samples | None:
        samples = scrape(url(ports["worker"]))
        done = samples and sample_value(samples, "dunning_sends_total", outcome="sent") == len(
            statuses
        )
        return samples if done else None

    samples = wait_for(settled, timeout=30, what="every send counted on the port")

    # the port's figures are Lago's and the ledger's, not one child's share
    posts = sandbox.request_count(POST, 200)
    assert posts == len(statuses)
    assert (
        sample_value(samples, "dunning_lago_api_calls_total", endpoint=POST, status="200") == posts
    )
    assert sample_value(samples, "dunning_lago_api_calls_total", endpoint=LIST, status="200") == (
        sandbox.request_count(LIST, 200)
    )
    assert (
        sample_value(samples, "dunning_lago_api_call_duration_seconds_count", endpoint=POST)
        == posts
    )
    assert sample_value(samples, "dunning_sweeps_total", status="succeeded") == 1
    assert sample_value(samples, "dunning_sweep_duration_seconds_count") == 1
    assert sample_total(samples, "dunning_sweep_decisions_total") >= len(statuses)
    assert sample_value(samples, "dunning_sweep_decisions_total", reason="eligible") == len(
        statuses
    )
    per_task = batch_size(RATE_LIMIT_RPS)
    assert len(statuses) > per_task  # more than one send task
    assert sample_value(
        samples, "dunning_tasks_published_total", task="dunning.send_payment_requests"
    ) == math.ceil(len(statuses) / per_task)
    assert sample_value(samples, "dunning_intents", status="sent") == len(statuses)
    assert sample_value(samples, "dunning_intents", status="pending") == 0
    assert sample_value(samples, "dunning_oldest_open_intent_age_seconds") == 0
    assert sample_value(samples, "dunning_last_successful_sweep_timestamp_seconds") > 0
    assert sample_value(samples, "dunning_sweep_interval_seconds") == 60  # * * * * *

    # several children did the work, some of them already gone: the port summed them all
    directory = settings.model_copy(update={"metrics_port": ports["worker"]}).resolved_metrics_dir
    assert directory is not None
    parts = sends_by_pid(directory)
    children = {pid: count for pid, count in parts.items() if pid != worker.pid and count}
    assert len(children) >= 2, parts
    assert sum(parts.values()) == sample_total(samples, "dunning_sends_total")


def test_beat_serves_its_own_port_and_counts_its_ticks(
    processes: CeleryProcesses,
    postgres_url: str,
    env: dict[str, str],
    ports: dict[str, int],
) -> None:
    processes.worker("worker")
    processes.start(
        "beat",
        "beat",
        "--loglevel",
        "INFO",
        env={**env, "DUNNING_METRICS_PORT": str(ports["beat"])},
    )
    first = wait_for(lambda: scrape(url(ports["beat"])), timeout=60, what="the beat port")
    assert sample_value(first, "dunning_ledger_up") == 1

    def ticked() -> Samples | None:
        samples = scrape(url(ports["beat"]))
        ticks = samples and sample_value(
            samples, "dunning_tasks_published_total", task="dunning.sweep"
        )
        return samples if ticks and ticks == count_runs(postgres_url, trigger="beat") else None

    samples = wait_for(ticked, timeout=150, interval=1.0, what="a beat tick counted")
    assert sample_value(samples, "dunning_tasks_published_total", task="dunning.sweep") >= 1
    # beat sends no payment requests itself: those are counted on the worker's port
    assert sample_total(samples, "dunning_sends_total") == 0

    def swept() -> Samples | None:
        # the tick's sweep runs in the worker: counted on the worker's port once it finished
        samples = scrape(url(ports["worker"]))
        done = samples and sample_value(samples, "dunning_sweeps_total", status="succeeded")
        return samples if done else None

    worker_samples = wait_for(swept, timeout=60, what="the tick's sweep on the worker port")
    assert sample_total(worker_samples, "dunning_tasks_published_total", task="dunning.sweep") == 0


def test_a_busy_metrics_port_stops_the_worker_with_one_line(
    processes: CeleryProcesses, ports: dict[str, int]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["worker"]))
        taken.listen()
        worker = processes.worker("worker")
        code = worker.wait(timeout=60)
    assert code != 0
    log = processes.log("worker")
    line = f"error: cannot serve metrics on 127.0.0.1:{ports['worker']}"
    assert line in log
    assert "Traceback" not in log


def test_dunning_run_serves_the_whole_embedded_stack_on_one_port(tmp_path: Path) -> None:
    data_dir, port, sandbox_port = tmp_path / "var", free_port(), free_port()
    env = child_env(
        DUNNING_DATA_DIR=str(data_dir),
        DUNNING_POLICY_FILE=str(write_policy(tmp_path, cron="* * * * *")),
        DUNNING_METRICS_PORT=str(port),
        DUNNING_LOG_FORMAT="json",
    )
    run = start_process(
        [DUNNING, "run", "--sandbox-port", str(sandbox_port), "--no-live"],
        env,
        tmp_path / "run.log",
    )
    db_url = f"sqlite:///{data_dir / 'dunning.sqlite3'}"
    try:

        def two_beat_sweeps_counted() -> Samples | None:
            assert run.poll() is None, (tmp_path / "run.log").read_text()
            samples = scrape(url(port))
            if not samples or sample_value(samples, "dunning_ledger_up") != 1:
                return None
            sent = sum(status == "sent" for status in intent_statuses(db_url).values())
            counted = (
                count_runs(db_url, trigger="beat") >= 2
                and sample_value(samples, "dunning_sweeps_total", status="succeeded")
                == count_runs(db_url)
                and sample_value(samples, "dunning_sends_total", outcome="sent") == sent
                and sample_value(samples, "dunning_intents", status="sent") == sent
            )
            return samples if counted and sent else None

        samples = wait_for(
            two_beat_sweeps_counted, timeout=200, interval=1.0, what="two beat sweeps counted"
        )
    finally:
        stop_process(run, timeout=60)
    # the sweeps beat started ran in the pool: counted; the embedded beat itself counts nothing
    assert sample_value(samples, "dunning_tasks_published_total", task="dunning.sweep") == 0
    assert sample_value(samples, "dunning_sweep_interval_seconds") == 60
