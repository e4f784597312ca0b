"""Helpers shared by the Celery tests (in-process here, subprocess workers in tests/e2e)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import redis
from sqlalchemy import func, select

from config import Settings, load_settings
from tests.fixtures.sandbox import SandboxHandle
from worker.store.db import make_engine, read_session
from worker.store.migrate import upgrade
from worker.store.models import PaymentRequestIntent, SweepRun

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST_URL = "redis://127.0.0.1:6379"
#: Databases the Celery tests may take; each test claims an empty one and flushes it after.
REDIS_TEST_DBS = range(8, 16)

PERMISSIVE_POLICY = """\
version: 1
schedule:
  cron: "{cron}"
policies:
  - name: everyone
    min_overdue_cents: {{USD: 0, EUR: 0, GBP: 0, AUD: 0, SGD: 0, INR: 0}}
    max_attempts: 3
"""

T = TypeVar("T")


def write_policy(directory: Path, cron: str = "*/15 * * * *") -> Path:
    """A policy that duns every overdue group at any time, beat on `cron`."""
    path = directory / "policies.yaml"
    path.write_text(PERMISSIVE_POLICY.format(cron=cron))
    return path


def _others_connected(client: redis.Redis, number: int) -> bool:
    """Is any other connection using database `number`? (A process left over from an
    earlier test would consume this test's messages.)"""
    me = client.client_id()
    return any(
        int(entry.get("db", -1)) == number and int(entry["id"]) != me
        for entry in client.client_list()
    )


#: Other test runs on the same Redis (a second checkout, a benchmark) may hold every test
#: database for a while: wait this long for one to come free.
CLAIM_WAIT_S = 180.0


def _claim_free_db(marker: str) -> int | None:
    for number in REDIS_TEST_DBS:
        client = redis.Redis.from_url(f"{REDIS_HOST_URL}/{number}")
        try:
            if (
                client.dbsize() == 0
                and not _others_connected(client, number)
                and client.set("lago-dunning-test-claim", marker, nx=True)
            ):
                return number
        finally:
            client.close()
    return None


@contextmanager
def claimed_redis_db() -> Iterator[str]:
    """A Redis URL on a database nobody uses right now; flushed afterwards."""
    marker = f"lago-dunning-test:{uuid.uuid4().hex}"
    deadline = time.monotonic() + CLAIM_WAIT_S
    while (number := _claim_free_db(marker)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("no free Redis test database (8-15): flush a stale one")
        time.sleep(0.5)
    url = f"{REDIS_HOST_URL}/{number}"
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.25, what: str
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def count_runs(db_url: str, *, trigger: str | None = None) -> int:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            query = select(func.count()).select_from(SweepRun)
            if trigger is not None:
                query = query.where(SweepRun.trigger == trigger)
            return int(session.scalar(query) or 0)
    finally:
        engine.dispose()


def runs_by_slot(db_url: str) -> dict[str | None, int]:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.execute(
                select(SweepRun.slot, func.count()).group_by(SweepRun.slot)
            ).all()
            return {slot: int(count) for slot, count in rows}
    finally:
        engine.dispose()


def intent_statuses(db_url: str) -> dict[int, str]:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.execute(select(PaymentRequestIntent.id, PaymentRequestIntent.status))
            return {int(intent_id): status for intent_id, status in rows}
    finally:
        engine.dispose()


def posts_in_flight(db_url: str) -> set[int]:
    """Intents being sent whose POST was stamped as started (it may have reached Lago). An
    intent a send batch has claimed but not yet posted is `sending` without the stamp."""
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(
                select(PaymentRequestIntent.id).where(
                    PaymentRequestIntent.status == "sending",
                    PaymentRequestIntent.post_started_at.is_not(None),
                )
            )
            return {int(intent_id) for intent_id in rows}
    finally:
        engine.dispose()


def assert_no_invoice_requested_twice(sandbox: SandboxHandle) -> int:
    """Every invoice is in at most one payment request; returns how many requests exist."""
    requests = sandbox.payment_requests()
    seen: list[str] = [inv["lago_id"] for pr in requests for inv in pr["invoices"]]
    duplicates = sorted({lago_id for lago_id in seen if seen.count(lago_id) > 1})
    assert duplicates == [], f"invoices requested twice: {duplicates}"
    return len(requests)


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


def start_process(
    command: list[str], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """A child in its own session (so a test can signal its whole process group)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    """SIGTERM the main process (warm shutdown); SIGKILL the group if it lingers."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, 9)
    process.wait(timeout=10)


DUNNING = str(Path(sys.executable).with_name("dunning"))


def run_dunning(
    env: dict[str, str], *args: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """The installed `dunning` command in a child process, from the repository root."""
    return subprocess.run(
        [DUNNING, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def child_env(**values: str) -> dict[str, str]:
    """The test process's environment without any DUNNING_/LAGO_ setting, plus `values`."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DUNNING_", "LAGO_"))
    }
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def all_sent(db_url: str) -> dict[int, str] | None:
    """Intent statuses once every intent is sent or adopted (None before)."""
    statuses = intent_statuses(db_url)
    finished = statuses and set(statuses.values()) <= {"sent", "adopted"}
    return statuses if finished else None


def redis_postgres_env(
    tmp_path: Path, sandbox: SandboxHandle, postgres_url: str, redis_url: str, **extra: str
) -> dict[str, str]:
    """The environment of Celery children on Redis and a migrated PostgreSQL ledger, with
    the sandbox as Lago and a permissive policy swept every minute; `extra` adds or wins."""
    upgrade(postgres_url)
    values = {
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
        "DUNNING_DATABASE_URL": postgres_url,
        "DUNNING_BROKER_URL": redis_url,
        "DUNNING_POLICY_FILE": str(write_policy(tmp_path, cron="* * * * *")),
        "LAGO_API_URL": sandbox.url,
        "LAGO_API_KEY": sandbox.api_key,
        "DUNNING_RATE_LIMIT_RPS": "0",
        "DUNNING_LEASE_SECONDS": "10",
        "DUNNING_SETTLE_SECONDS": "0",
        "DUNNING_LOG_FORMAT": "json",
        "DUNNING_LOG_LEVEL": "INFO",
    }
    values.update(extra)
    return child_env(**values)


def settings_of(env: dict[str, str]) -> Settings:
    """The settings this test process uses to reach the children's broker and data dir."""
    return load_settings(
        broker_url=env["DUNNING_BROKER_URL"], data_dir=Path(env["DUNNING_DATA_DIR"])
    )


class CeleryProcesses:
    """Celery children of one test, each logging to `<logs>/<name>.log`; `stop_all` ends
    them (warm shutdown first)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        process = start_process(celery_command(*args), env or self.env, self.logs / f"{name}.log")
        self.started.append(process)
        return process

    def worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        """A prefork worker with two children."""
        return self.start(
            name,
            "worker",
            "--pool", "prefork",
            "--concurrency", "2",
            "--hostname", f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel", "INFO",
            *extra,
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started:
            stop_process(process)
