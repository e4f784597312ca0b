"""`dunning run` (what `make run` starts) on the embedded default: from an empty data dir with
no Redis, no PostgreSQL and no Lago, it starts the sandbox, migrates SQLite, runs worker + beat
on the filesystem broker, creates the demo's payment requests, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.fixtures.sandbox import SandboxHandle, free_port
from tests.tasks.support import (
    REPO_ROOT,
    assert_no_invoice_requested_twice,
    child_env,
    claimed_redis_db,
    intent_statuses,
    wait_for,
    write_policy,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DUNNING = str(Path(sys.executable).with_name("dunning"))


def test_embedded_default_runs_the_demo_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = free_port()
    env = child_env(
        DUNNING_DATA_DIR=str(data_dir),
        # the demo policy duns every overdue group at any hour, so the test does not depend
        # on the time of day
        DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
        DUNNING_LOG_FORMAT="json",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [DUNNING, "run", "--sandbox-port", str(port), "--sandbox-customers", "20"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sandbox = SandboxHandle(f"http://127.0.0.1:{port}", "sandbox-key")
    db_url = f"sqlite:///{data_dir / 'dunning.sqlite3'}"
    children: list[psutil.Process] = []
    try:

        def settled() -> dict[int, str] | None:
            assert run.poll() is None, log_path.read_text()
            # The file appears before the migrations have created the tables.
            if not (data_dir / "dunning.sqlite3").exists() or not _migrated(db_url):
                return None
            statuses = intent_statuses(db_url)
            return statuses if statuses and set(statuses.values()) == {"sent"} else None

        statuses = wait_for(settled, timeout=180, interval=0.5, what="the demo's requests")
        assert sandbox.request_count("POST /api/v1/payment_requests", 200) == len(statuses)
        assert assert_no_invoice_requested_twice(sandbox) == len(statuses)
        assert (data_dir / "broker" / "queue").is_dir()
        assert any(data_dir.glob("celerybeat-schedule*"))  # beat's schedule in the data dir

        children.extend(psutil.Process(run.pid).children(recursive=True))
        assert len(children) >= 3  # sandbox, celery main, pool/beat processes
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=90) == 130, log_path.read_text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [p.pid for p in alive]
        output = log_path.read_text()
        assert "Traceback" not in output
        assert '"event": "stopping"' in output
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
        for child in children:
            if child.is_running():
                child.kill()


def test_bad_policy_file_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    policy = tmp_path / "policies.yaml"
    policy.write_text("version: 1\npolicies: [{name: x}]\n")
    result = subprocess.run(
        [DUNNING, "run", "--sandbox-port", str(free_port())],
        cwd=REPO_ROOT,
        env=child_env(DUNNING_DATA_DIR=str(tmp_path / "var"), DUNNING_POLICY_FILE=str(policy)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "policies.yaml" in lines[0]
    assert not (tmp_path / "var" / "broker").exists()


@pytest.mark.redis
@pytest.mark.postgres
def test_production_shape_uses_the_given_lago_postgres_and_redis(
    tmp_path: Path, sandbox: SandboxHandle, postgres_url: str
) -> None:
    """With LAGO_API_URL / DUNNING_DATABASE_URL / DUNNING_BROKER_URL set, no sandbox is
    started and the same command works against them; SIGTERM stops it with exit 0."""
    with claimed_redis_db() as redis_url:
        env = child_env(
            LAGO_API_URL=sandbox.url,
            LAGO_API_KEY=sandbox.api_key,
            DUNNING_DATABASE_URL=postgres_url,
            DUNNING_BROKER_URL=redis_url,
            DUNNING_DATA_DIR=str(tmp_path / "var"),
            DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
            DUNNING_LOG_FORMAT="json",
        )
        log_path = tmp_path / "run.log"
        with log_path.open("wb") as log:
            run = subprocess.Popen(
                [DUNNING, "run", "--concurrency", "1"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:

            def settled() -> dict[int, str] | None:
                # Every intent sent, and exactly one request in Lago per intent. Beat may add
                # intents meanwhile, so both sides are read until they agree; a duplicate
                # POST would keep them apart and the wait would fail.
                assert run.poll() is None, log_path.read_text()
                statuses = intent_statuses(postgres_url) if _migrated(postgres_url) else {}
                posts = sandbox.request_count("POST /api/v1/payment_requests", 200)
                if statuses and set(statuses.values()) == {"sent"} and posts == len(statuses):
                    return statuses
                return None

            wait_for(settled, timeout=120, interval=0.5, what="one request per sent intent")
            commands = [" ".join(p.cmdline()) for p in psutil.Process(run.pid).children(True)]
            assert not any("sandbox" in command for command in commands), commands
            assert not (tmp_path / "var" / "broker").exists()
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=90) == 0, log_path.read_text()
        finally:
            if run.poll() is None:
                # The worker runs in its own session: kill every descendant, not just the group.
                for child in psutil.Process(run.pid).children(recursive=True):
                    child.kill()
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=10)


def _migrated(db_url: str) -> bool:
    from worker.store.db import make_engine
    from worker.store.migrate import current_revision

    engine = make_engine(db_url)
    try:
        return current_revision(engine) is not None
    finally:
        engine.dispose()
