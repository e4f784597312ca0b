"""`dunning run`: the whole worker on one machine, in the foreground (what `make run` starts).

With nothing configured it is self-contained: SQLite and the `filesystem://` broker under
DUNNING_DATA_DIR, migrations applied, and the sandbox (demo data) standing in for Lago. With
LAGO_API_URL / DUNNING_DATABASE_URL / DUNNING_BROKER_URL set, the same command runs against a
real Lago, PostgreSQL and Redis. Then `celery worker -B` runs until Ctrl-C, which stops
everything cleanly: only the Celery main process is signalled (a warm shutdown lets a running
send finish), and children run in their own sessions so the terminal's SIGINT reaches us only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

import config
from config import Settings, load_settings, mask_url
from worker.cli.errors import EXIT_INTERRUPTED, fail

SANDBOX_START_TIMEOUT_S = 30.0
#: Celery's soft-shutdown window (30 s) plus time to exit; then the worker is killed.
WORKER_STOP_TIMEOUT_S = 45.0
CHILD_STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
PR_SET_PDEATHSIG = 1  # prctl(2) option


class Pool(StrEnum):
    PREFORK = "prefork"
    THREADS = "threads"
    SOLO = "solo"


@dataclass(frozen=True, slots=True)
class RunOptions:
    concurrency: int = 2
    pool: Pool = Pool.PREFORK
    sandbox_port: int = 8765
    sandbox_customers: int = 50
    sandbox_seed: int = 1
    initial_sweep: bool = True


@dataclass(slots=True)
class _Stop:
    """Which signal asked us to stop (the first one), and how many arrived."""

    signum: int | None = None
    count: int = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum


@dataclass(slots=True)
class _Children:
    sandbox: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def sandbox_command(settings: Settings, options: RunOptions, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        str(port),
        "--customers",
        str(options.sandbox_customers),
        "--seed",
        str(options.sandbox_seed),
        "--api-key",
        settings.lago_api_key.get_secret_value(),
    ]


def worker_command(settings: Settings, options: RunOptions) -> list[str]:
    """`celery -A worker worker -B ...` for this machine."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--beat",
        "--pool",
        options.pool.value,
        "--concurrency",
        str(options.concurrency),
        "--loglevel",
        settings.log_level,
        "--hostname",
        "dunning@%h",
    ]
    if not settings.broker_is_redis:
        # One node by construction: no peers to gossip with or sync from, and the filesystem
        # transport would keep their fanout messages as files nobody reads.
        command += ["--without-gossip", "--without-mingle"]
        command += ["--schedule", str((settings.data_dir / "celerybeat-schedule").resolve())]
    return command


def _wait_for_sandbox(
    url: str, process: subprocess.Popen[bytes], stopping: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT_S
    while time.monotonic() < deadline and not stopping():
        if process.poll() is not None:
            fail(f"the sandbox exited at start (code {process.returncode}); see its output above")
        try:
            with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=1.0) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    if stopping():
        return
    fail(f"the sandbox did not answer on {url} within {SANDBOX_START_TIMEOUT_S:.0f} s")


def _die_with_parent() -> None:
    """In the child, before exec (Linux): get SIGTERM when `dunning run` dies, even by
    SIGKILL, so no worker or sandbox outlives the command that started it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A new session: the terminal's Ctrl-C reaches only us; we signal the children ourselves.
    # preexec_fn is safe here: this process starts no threads before its children.
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def _stop_child(
    process: subprocess.Popen[bytes] | None, timeout: float, hurry: Callable[[], bool]
) -> None:
    """SIGTERM the child's main process only; SIGKILL its whole group if it lingers past
    `timeout` or as soon as `hurry()` (a second Ctrl-C)."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline and not hurry():
            time.sleep(POLL_INTERVAL_S / 2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers (pool children, embedded beat)
    process.wait()


#: The policy of the embedded demo (sandbox data, a sweep every minute), used when neither
#: LAGO_API_URL nor DUNNING_POLICY_FILE is set.
DEMO_POLICY_FILE = Path(config.__file__).resolve().parent / "policies.demo.yaml"


def demo_settings(settings: Settings) -> Settings:
    """With the sandbox standing in for Lago and no policy file chosen, use the demo policy."""
    if settings.uses_sandbox and "policy_file" not in settings.model_fields_set:
        return settings.model_copy(update={"policy_file": DEMO_POLICY_FILE})
    return settings


def _child_env(settings: Settings, lago_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["DUNNING_DATA_DIR"] = str(settings.data_dir.resolve())
    env["DUNNING_POLICY_FILE"] = str(settings.policy_file)
    if lago_url is not None:
        env["LAGO_API_URL"] = lago_url
    return env


def run_stack(settings: Settings, options: RunOptions) -> int:
    """Start everything, supervise, stop cleanly. Returns the process exit code."""
    from config.policies import load_policies
    from worker.cli.ops_cmd import enqueue_sweep
    from worker.logging import configure_logging, get_logger
    from worker.store.migrate import upgrade

    configure_logging(settings)
    log = get_logger("dunning.run")
    settings = demo_settings(settings)
    load_policies(settings.policy_file)  # a bad policy file fails here, in one line
    log.info("policy_file", path=str(settings.policy_file))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    log.info("database_ready", url=mask_url(settings.resolved_database_url))

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = _Children()
    try:
        lago_url = settings.lago_api_url
        if settings.uses_sandbox:
            port = options.sandbox_port
            if not port_is_free(port):
                port = free_port()
            lago_url = f"http://127.0.0.1:{port}"
            children.sandbox = _start(
                sandbox_command(settings, options, port), _child_env(settings, None)
            )
            _wait_for_sandbox(lago_url, children.sandbox, lambda: stop.signum is not None)
            log.info(
                "sandbox_started",
                url=lago_url,
                customers=options.sandbox_customers,
                seed=options.sandbox_seed,
            )
        if stop.signum is not None:
            return _interrupted(stop)
        if options.initial_sweep:
            task_id = enqueue_sweep(settings, None)
            log.info("initial_sweep_enqueued", task_id=task_id)
        children.worker = _start(worker_command(settings, options), _child_env(settings, lago_url))
        log.info(
            "worker_started",
            pid=children.worker.pid,
            broker=mask_url(settings.resolved_broker_url),
            lago=lago_url,
            pool=options.pool.value,
            concurrency=options.concurrency,
        )
        return _supervise(children, stop)
    finally:

        def hurry() -> bool:
            return stop.count >= 2

        _stop_child(children.worker, WORKER_STOP_TIMEOUT_S, hurry)
        _stop_child(children.sandbox, CHILD_STOP_TIMEOUT_S, hurry)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(children: _Children, stop: _Stop) -> int:
    while stop.signum is None:
        for name, process in (("worker", children.worker), ("sandbox", children.sandbox)):
            if process is not None and process.poll() is not None:
                fail(f"the {name} exited unexpectedly (code {process.returncode}); see above")
        time.sleep(POLL_INTERVAL_S)
    return _interrupted(stop)


def _interrupted(stop: _Stop) -> int:
    """Log the stop; exit 130 after Ctrl-C, 0 after SIGTERM (a normal service stop)."""
    from worker.logging import get_logger

    signum = stop.signum or signal.SIGTERM
    get_logger("dunning.run").info(
        "stopping", signal=signal.Signals(signum).name, hint="Ctrl-C again to kill now"
    )
    return EXIT_INTERRUPTED if signum == signal.SIGINT else 0


def run_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=64, help="Worker processes.")
    ] = 2,
    pool: Annotated[Pool, typer.Option(help="Celery pool.")] = Pool.PREFORK,
    sandbox_port: Annotated[
        int, typer.Option(help="Sandbox port when LAGO_API_URL is unset (a free one if busy).")
    ] = 8765,
    sandbox_customers: Annotated[int, typer.Option(help="Sandbox demo customers.")] = 50,
    sandbox_seed: Annotated[int, typer.Option(help="Sandbox demo data seed.")] = 1,
    initial_sweep: Annotated[
        bool,
        typer.Option("--initial-sweep/--no-initial-sweep", help="Sweep once right at start."),
    ] = True,
) -> None:
    """Run the worker and its scheduler in the foreground (Ctrl-C stops everything)."""
    settings = load_settings()
    options = RunOptions(
        concurrency=concurrency,
        pool=pool,
        sandbox_port=sandbox_port,
        sandbox_customers=sandbox_customers,
        sandbox_seed=sandbox_seed,
        initial_sweep=initial_sweep,
    )
    code = run_stack(settings, options)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Run worker + beat in the foreground; starts the sandbox when LAGO_API_URL is unset.",
    )(run_command)


__all__ = ["Pool", "RunOptions", "register", "run_stack", "worker_command"]
