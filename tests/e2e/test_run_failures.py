"""Fail fast and say it once: `dunning run` and the other commands on broken settings, a
rejected key, a Lago without licence, a missing database. Real `dunning` processes; each
failure is ONE line on stderr and the documented exit code (2 configuration, 1 runtime)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.db import POSTGRES_ADMIN_URL
from tests.fixtures.sandbox import SandboxProcess, free_port
from tests.tasks.support import child_env, run_dunning, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line (off a terminal, log records stream as JSON lines beside it)."""
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def unwritable_data_dir(tmp_path: Path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return str(blocker / "var")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--sandbox-port", "0"],
        ["status"],
        ["report"],
        ["sweep", "--once"],
    ],
)
def test_a_data_dir_that_cannot_be_created_is_one_configuration_line(
    unwritable_data_dir: str, args: list[str]
) -> None:
    env = child_env(DUNNING_DATA_DIR=unwritable_data_dir, LAGO_API_URL="http://127.0.0.1:9")
    line = one_line(run_dunning(env, *args), 2)
    assert "DUNNING_DATA_DIR" in line


@pytest.mark.parametrize("args", [["run"], ["status"], ["report"]])
def test_a_postgres_scheme_url_is_a_configuration_error(tmp_path: Path, args: list[str]) -> None:
    env = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_DATABASE_URL="postgres://dunning:secret@127.0.0.1:5432/dunning",
    )
    line = one_line(run_dunning(env, *args), 2)
    assert "postgresql+psycopg://" in line
    assert "secret" not in line


@pytest.mark.postgres
def test_a_missing_database_is_told_apart_from_a_server_that_is_down(tmp_path: Path) -> None:
    server = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    missing = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_DATABASE_URL=f"{server}/dunning_no_such_database",
    )
    line = one_line(run_dunning(missing, "status"), 1)
    assert 'the PostgreSQL server is up but has no database "dunning_no_such_database"' in line
    assert "createdb dunning_no_such_database" in line

    down = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
    )
    line = one_line(run_dunning(down, "status"), 1)
    assert "cannot reach the state database server" in line


def test_a_schedule_celery_cannot_follow_stops_run_before_anything_starts(
    tmp_path: Path,
) -> None:
    env = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_POLICY_FILE=str(write_policy(tmp_path, cron="0 0 * * 7")),
    )
    line = one_line(run_dunning(env, "run", "--sandbox-port", str(free_port())), 2)
    # The policy loader and beat read crons with one parser: refused when the file is read.
    assert "weekday 7 is out of range 0-6; use 0 for Sunday" in line
    assert not (tmp_path / "var" / "broker").exists()


def test_a_rejected_api_key_stops_run_at_once(
    tmp_path: Path, sandbox_process: Callable[..., SandboxProcess]
) -> None:
    lago = sandbox_process(api_key="the-right-key")
    env = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "var"),
        DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
        LAGO_API_URL=lago.url,
        LAGO_API_KEY="a-wrong-key",
        LAGO_MAX_RETRIES="0",
    )
    started = time.monotonic()
    line = one_line(run_dunning(env, "run"), 1)
    assert line == "error: Lago rejected the API key: check LAGO_API_KEY"
    assert time.monotonic() - started < 30  # no worker was started and left to fail
    assert "a-wrong-key" not in line
    assert not (tmp_path / "var" / "instance.json").exists()


def test_a_missing_licence_met_by_a_worker_task_stops_run(
    tmp_path: Path, sandbox_process: Callable[..., SandboxProcess]
) -> None:
    lago = sandbox_process("--no-premium", "--customers", "5", "--seed", "3")
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "halt.json").write_text('{"code": "api_key_rejected", "message": "old", "at": ""}')
    env = child_env(
        DUNNING_DATA_DIR=str(data_dir),
        DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
        LAGO_API_URL=lago.url,
        LAGO_API_KEY=lago.api_key,
        DUNNING_LOG_FORMAT="json",
    )
    result = run_dunning(env, "run", "--concurrency", "1", timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: this Lago instance lacks the premium licence")
    assert "old" not in result.stderr  # a halt left by an earlier run was cleared at start
    assert "Traceback" not in result.stderr
    assert "UnpickleableExceptionWrapper" not in result.stderr
    assert not (data_dir / "instance.json").exists()
