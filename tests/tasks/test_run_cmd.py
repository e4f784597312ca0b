"""`dunning run`'s process plan: which worker command for which broker, the sandbox port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from config import load_settings
from tests.fixtures.sandbox import SandboxHandle
from tests.tasks.support import child_env, write_policy
from worker.cli.run_cmd import Pool, RunOptions, free_port, port_is_free, worker_command

DUNNING = str(Path(sys.executable).with_name("dunning"))


def test_embedded_worker_runs_beat_with_its_schedule_in_the_data_dir(tmp_path: Path) -> None:
    command = worker_command(load_settings(data_dir=tmp_path), RunOptions())
    assert command[1:7] == ["-m", "celery", "-A", "worker", "--quiet", "worker"]  # no banner
    assert "--beat" in command
    assert command[command.index("--pool") + 1] == "prefork"
    assert command[command.index("--concurrency") + 1] == "2"
    assert command[command.index("--schedule") + 1] == str(tmp_path / "celerybeat-schedule")
    assert {"--without-gossip", "--without-mingle"} <= set(command)


def test_redis_worker_leaves_scheduling_to_redbeat(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/9")
    command = worker_command(settings, RunOptions(pool=Pool.THREADS, concurrency=4))
    assert "--beat" in command  # RedBeat's lock makes an embedded beat safe on every node
    assert "--schedule" not in command
    assert "--without-gossip" not in command
    assert command[command.index("--pool") + 1] == "threads"
    assert command[command.index("--concurrency") + 1] == "4"


def test_a_busy_sandbox_port_is_detected() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_is_free(port)
    other = free_port()
    assert port_is_free(other)


@pytest.mark.postgres
@pytest.mark.slow
def test_run_shows_the_database_and_broker_with_their_passwords_masked(
    postgres_url: str, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    # The server trusts local connections, so any password is accepted: the point is where
    # the URL is shown. Written as is ('/' '#' '?' ':' '%' need no encoding for SQLAlchemy).
    password = "Tq7/mZ9#vQ?aR:uS%lt"
    database = postgres_url.replace("://postgres@", f"://postgres:{password}@")
    broker = f"redis://:{quote(password, safe='')}@127.0.0.1:{free_port()}/0"
    env = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "data"),
        DUNNING_DATABASE_URL=database,
        DUNNING_BROKER_URL=broker,
        DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
        # A Lago that accepts the key (`run` checks it first), so the broker is reached next.
        LAGO_API_URL=sandbox.url,
        LAGO_API_KEY=sandbox.api_key,
        DUNNING_LOG_FORMAT="json",
    )
    done = subprocess.run(
        [DUNNING, "run"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    ready = next(record for record in records if record["event"] == "database_ready")
    assert ready["url"] == postgres_url.replace("://postgres@", "://postgres:***@")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "cannot reach the broker redis://:***@127.0.0.1:" in errors[0]
    for fragment in ("Tq7", "mZ9", "vQ", "aR", "uS", "%lt", quote(password, safe="")):
        assert fragment not in done.stderr + done.stdout


def test_a_port_left_in_time_wait_by_a_stopped_server_counts_as_free() -> None:
    """Restarted within a minute, `dunning run` kept moving the sandbox off its port: the
    probe bound without SO_REUSEADDR, and the stopped server's connections in TIME-WAIT made
    the port look busy. The sandbox itself binds with SO_REUSEADDR, so it could listen."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection is in TIME-WAIT
    client.close()
    server.close()
    assert port_is_free(port)
    # and the sandbox's own listening socket can take it
    again = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", port))
    again.close()
