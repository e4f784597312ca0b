"""`dunning serve`: as a real process it listens, answers and stops on SIGTERM; bad input is
one line (checked in-process: starting the interpreter is the slow part)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import typer

from tests.fixtures.ledger_rows import T0, add_intent_row, add_run
from tests.fixtures.sandbox import SandboxHandle, free_port
from tests.fixtures.scrape import sample_total, sample_value, scrape
from tests.fixtures.serving import wait_for_health
from tests.web.keys import lago_hmac
from worker.cli import serve_cmd
from worker.cli.errors import run_cli
from worker.store.db import make_engine
from worker.store.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parents[2]
# The command module on its own Typer app, exactly as the `dunning` entry point runs it.
LAUNCH = (
    "import typer\n"
    "from worker.cli import serve_cmd\n"
    "from worker.cli.errors import run_cli\n"
    "app = typer.Typer(pretty_exceptions_enable=False)\n"
    "serve_cmd.register(app)\n"
    "app.command('version', hidden=True)(lambda: None)\n"
    "run_cli(app)\n"
)


def _env(sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DUNNING_DATABASE_URL": sqlite_url,
        "DUNNING_DATA_DIR": str(tmp_path),
        "LAGO_API_URL": sandbox.url,
        "LAGO_API_KEY": sandbox.api_key,
        "DUNNING_WEBHOOK_HMAC_KEY": "serve-test-key",
        "DUNNING_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


def _start_serve(
    sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `dunning serve` on a free port, answering /healthz; (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "serve", "--port", str(port)],
        cwd=REPO_ROOT,
        env=_env(sqlite_url, sandbox, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(process, base)
    except AssertionError:
        process.kill()
        raise
    return process, base


def _stop_serve(process: subprocess.Popen[bytes]) -> bytes:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    return stderr


def _ignored_webhook(base: str, unique_key: str) -> httpx.Response:
    body = b'{"webhook_type":"customer.created","customer":{}}'
    return httpx.post(
        f"{base}/webhooks/lago",
        content=body,
        headers={
            "X-Lago-Signature-Algorithm": "hmac",
            "X-Lago-Signature": lago_hmac(body, "serve-test-key"),
            "X-Lago-Unique-Key": unique_key,
        },
    )


@pytest.mark.slow
def test_serve_answers_and_stops(sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    process, base = _start_serve(sqlite_url, sandbox, tmp_path)
    try:
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.json() == {"status": "ok", "database": "ok"}
        assert _ignored_webhook(base, "evt-serve").json() == {"result": "ignored"}
        assert "dunning_webhooks_total" in httpx.get(f"{base}/metrics").text
    finally:
        stderr = _stop_serve(process)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells the truth.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b"Finished server process" in stderr
    assert b"serve-test-key" not in stderr  # the HMAC key is never logged


@pytest.mark.slow
def test_serve_metrics_count_its_webhooks_and_read_the_ledger(
    sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        run_id = add_run(engine, started_at=T0)
        add_run(engine, started_at=T0 + timedelta(hours=1), status="failed")
        for _ in range(2):
            add_intent_row(engine, status="needs_review", run_id=run_id)
        add_intent_row(engine, status="pending", run_id=run_id, sent_at=T0)
        add_intent_row(engine, status="sent", run_id=run_id)
    finally:
        engine.dispose()
    process, base = _start_serve(sqlite_url, sandbox, tmp_path)
    try:
        for n in range(3):
            assert _ignored_webhook(base, f"evt-{n}").status_code == 200
        samples = scrape(f"{base}/metrics")
    finally:
        _stop_serve(process)
    assert samples is not None
    # the same signed body three times: applied once, then recognised as a replay
    assert sample_total(samples, "dunning_webhooks_total") == 3
    assert sample_total(samples, "dunning_webhooks_total", result="ignored") == 1
    assert sample_value(samples, "dunning_intents", status="needs_review") == 2
    assert sample_value(samples, "dunning_intents", status="pending") == 1
    assert sample_value(samples, "dunning_intents", status="sent") == 1
    assert sample_value(samples, "dunning_intents", status="blocked") == 0
    # the pending intent was created at T0; the failed sweep after it does not count
    age = sample_value(samples, "dunning_oldest_open_intent_age_seconds")
    assert age >= (datetime.now(UTC) - T0).total_seconds() - 60
    finished = (T0 + timedelta(seconds=2)).timestamp()
    assert sample_value(samples, "dunning_last_successful_sweep_timestamp_seconds") == finished
    assert sample_value(samples, "dunning_ledger_up") == 1
    assert sample_value(samples, "dunning_sweep_interval_seconds") == 15 * 60  # */15 * * * *


def _run_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> int:
    for name, value in env.items():
        if name.startswith(("DUNNING_", "LAGO_")):
            monkeypatch.setenv(name, value)
    if "LAGO_API_URL" not in env:
        monkeypatch.delenv("LAGO_API_URL", raising=False)
    monkeypatch.setattr(sys, "argv", ["dunning", *argv])
    app = typer.Typer(pretty_exceptions_enable=False)
    serve_cmd.register(app)
    app.command("version", hidden=True)(lambda: None)
    with pytest.raises(SystemExit) as exited:
        run_cli(app)
    return int(exited.value.code or 0)


def test_serve_without_a_lago_url_is_one_line(
    sqlite_url: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(sqlite_url, sandbox, tmp_path)
    del env["LAGO_API_URL"]
    assert _run_in_process(["serve"], monkeypatch, env) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: LAGO_API_URL is not set")
    assert err.count("\n") == 1


@pytest.mark.parametrize("port", ["0", "70000"])
def test_serve_rejects_a_bad_port(
    sqlite_url: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
    port: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(sqlite_url, sandbox, tmp_path)
    assert _run_in_process(["serve", "--port", port], monkeypatch, env) == 2
    assert capsys.readouterr().err == f"error: invalid --port {port}: use 1-65535\n"


@pytest.fixture
def serve_fails(
    sqlite_url: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, list[str], str]]:
    """Run `dunning serve ARGS` in-process on a migrated ledger (keyword arguments: more
    environment): (exit code, the stderr lines that are not JSON logs, all of stderr)."""
    upgrade(sqlite_url)
    env = _env(sqlite_url, sandbox, tmp_path)

    def run(*args: str, **extra_env: str) -> tuple[int, list[str], str]:
        code = _run_in_process(["serve", *args], monkeypatch, {**env, **extra_env})
        err = capsys.readouterr().err
        return code, [line for line in err.splitlines() if not line.startswith("{")], err

    return run


def test_serve_on_a_busy_port_is_one_line_with_exit_1(
    serve_fails: Callable[..., tuple[int, list[str], str]],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, errors, err = serve_fails("--port", str(port))
    assert code == 1, err
    assert errors == [
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another process listens there: stop it or choose another --port)"
    ]
    assert "Traceback" not in err
    assert "uvicorn" not in err


def test_serve_on_a_host_that_does_not_resolve_is_one_line_with_exit_2(
    serve_fails: Callable[..., tuple[int, list[str], str]],
) -> None:
    code, errors, err = serve_fails("--host", "no such host")
    assert code == 2, err
    assert len(errors) == 1
    assert errors[0].startswith("error: invalid --host 'no such host': ")


def test_serve_with_a_damaged_console_hash_is_one_line_with_exit_2(
    serve_fails: Callable[..., tuple[int, list[str], str]],
) -> None:
    damaged = "scrypt$n=32768,r=8,p=1$not-base64$also-not"
    code, errors, err = serve_fails(
        "--port", str(free_port()), DUNNING_CONSOLE_PASSWORD_HASH=damaged
    )
    assert code == 2, err
    assert errors == [
        "error: invalid DUNNING_CONSOLE_PASSWORD_HASH: the hash is damaged: run "
        "`dunning console-password` again"
    ]
    assert damaged not in err
