"""`dunning run`'s process plan: which worker command for which broker, the sandbox port."""

from __future__ import annotations

import socket
from pathlib import Path

from config import load_settings
from worker.cli.run_cmd import Pool, RunOptions, free_port, port_is_free, worker_command


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
