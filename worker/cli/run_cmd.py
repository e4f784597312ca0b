"""`dunning run`: the whole worker on one machine, in the foreground (what `make run` starts).

With nothing configured it is self-contained: SQLite and the `filesystem://` broker under
DUNNING_DATA_DIR, migrations applied, and the sandbox (demo data, some customers paying on
their own) standing in for Lago. With LAGO_API_URL / DUNNING_DATABASE_URL / DUNNING_BROKER_URL
set, the same command runs against a real Lago, PostgreSQL and Redis.

Before anything starts: the policy file and its schedule, the data dir, the database and
the Lago API key are checked, each failure one line (exit 2 for configuration, 1 otherwise).
Then `celery worker -B` runs until Ctrl-C, which stops everything cleanly: only the Celery
main process is signalled (a warm shutdown lets a running send finish). On a terminal a live
panel shows what happens (figures from the ledger) and every log line goes to a file under
the data dir; off a terminal the logs stream as JSON lines. What runs is recorded in the data
dir, so other commands agree with it; a worker task that meets a rejected key or a missing
licence makes this command stop with that one line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, NoReturn

import typer

from config import Settings, load_settings, mask_url
from worker.cli.children import free_port, port_is_free, start_child, stop_child
from worker.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, fail
from worker.cli.live_view import Header, LivePanel, NoPanel
from worker.cli.run_plan import (
    Pool,
    RunOptions,
    child_env,
    demo_settings,
    sandbox_command,
    worker_command,
)

SANDBOX_START_TIMEOUT_S = 30.0
#: Celery's soft-shutdown window (30 s) plus time to exit; then the worker is killed.
WORKER_STOP_TIMEOUT_S = 45.0
CHILD_STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
LOG_FILE = Path("logs") / "dunning.log"


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


def _wait_for_sandbox(
    url: str, process: subprocess.Popen[bytes], stopping: Callable[[], bool], where: str
) -> None:
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT_S
    while time.monotonic() < deadline and not stopping():
        if process.poll() is not None:
            fail(f"the sandbox exited at start (code {process.returncode}); see {where}")
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


def prepare_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(
            f"cannot create the data directory {settings.data_dir} "
            f"({exc.strerror or exc}): set DUNNING_DATA_DIR to a writable directory",
            exit_code=EXIT_USAGE,
        )


def wants_live_view(settings: Settings) -> bool:
    from config import LogFormat

    terminal = sys.stdout.isatty() and sys.stderr.isatty()
    return terminal and settings.log_format is LogFormat.AUTO


@contextlib.contextmanager
def _log_file(settings: Settings, live: bool) -> Iterator[tuple[Path | None, IO[bytes] | None]]:
    """With the live view, every log line (ours and the children's) goes to one file."""
    if not live:
        yield None, None
        return
    path = (settings.data_dir / LOG_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab", buffering=0) as raw, path.open("a", encoding="utf-8") as text:
        from worker.logging import configure_logging

        configure_logging(settings, force_json=True)
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        for handler in handlers:
            handler.setStream(text)
        try:
            yield path, raw
        finally:
            for handler in handlers:
                handler.setStream(sys.stderr)


def run_stack(settings: Settings, options: RunOptions) -> int:
    """Check, start everything, supervise, stop cleanly. Returns the process exit code."""
    from config.policies import load_policies
    from worker.celery import crontab_from_cron
    from worker.cli.ops_cmd import enqueue_sweep
    from worker.logging import configure_logging, get_logger
    from worker.services.check_lago import check_lago_access
    from worker.services.instance import (
        InstanceRecord,
        clear_halt,
        remove_record,
        write_record,
    )
    from worker.store.migrate import upgrade

    configure_logging(settings)
    log = get_logger("dunning.run")
    settings = demo_settings(settings)
    policies = load_policies(settings.policy_file)  # a bad policy file fails here, in one line
    crontab_from_cron(policies.cron)  # so does a schedule Celery beat cannot follow
    prepare_data_dir(settings)
    upgrade(settings.resolved_database_url)
    live = wants_live_view(settings) if options.live is None else options.live

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = _Children()
    with _log_file(settings, live) as (log_path, output):
        where = str(log_path) if log_path else "its output above"
        log.info("policy_file", path=str(settings.policy_file))
        log.info("database_ready", url=mask_url(settings.resolved_database_url))
        clear_halt(settings.data_dir)
        try:
            lago_url = settings.lago_api_url
            if settings.uses_sandbox:
                port = options.sandbox_port if port_is_free(options.sandbox_port) else free_port()
                lago_url = f"http://127.0.0.1:{port}"
                children.sandbox = start_child(
                    sandbox_command(settings, options, port), child_env(settings, None), output
                )
                _wait_for_sandbox(
                    lago_url, children.sandbox, lambda: stop.signum is not None, where
                )
                log.info("sandbox_started", url=lago_url, customers=options.sandbox_customers)
            if stop.signum is not None:
                return _interrupted(stop)
            assert lago_url is not None
            check_lago_access(settings, base_url=lago_url)  # a rejected key: one line, exit 1
            write_record(
                settings.data_dir,
                InstanceRecord.for_this_process(settings, lago_url=lago_url, log_file=log_path),
            )
            if options.initial_sweep:
                log.info("initial_sweep_enqueued", task_id=enqueue_sweep(settings, None))
            children.worker = start_child(
                worker_command(settings, options), child_env(settings, lago_url), output
            )
            log.info(
                "worker_started",
                pid=children.worker.pid,
                broker=mask_url(settings.resolved_broker_url),
                lago=lago_url,
                pool=options.pool.value,
                concurrency=options.concurrency,
            )
            panel: LivePanel | NoPanel = NoPanel()
            if live:
                from worker.cli.common import out

                panel = LivePanel(
                    _header(settings, lago_url, options, log_path),
                    database_url=settings.resolved_database_url,
                    cron=policies.cron,
                    console=out,
                )
            return _supervise(children, stop, settings, panel, where)
        finally:

            def hurry() -> bool:
                return stop.count >= 2

            stop_child(children.worker, WORKER_STOP_TIMEOUT_S, hurry)
            stop_child(children.sandbox, CHILD_STOP_TIMEOUT_S, hurry)
            remove_record(settings.data_dir)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _header(settings: Settings, lago_url: str, options: RunOptions, logs: Path | None) -> Header:
    from worker.services.instance import key_reference

    lago = f"{lago_url}  (key: {key_reference(settings)})"
    if settings.uses_sandbox:
        lago = (
            f"{lago_url}  (sandbox: {options.sandbox_customers} demo customers, "
            f"{options.sandbox_pay_rate:.0%} of them pay some time after being asked)"
        )
        if options.sandbox_no_premium:
            lago += "  [no premium licence: payment requests refused]"
    broker = mask_url(settings.resolved_broker_url)
    if not settings.broker_is_redis:
        broker += f"  ({settings.broker_folder})"
    policy = Path(settings.policy_file).resolve()
    with contextlib.suppress(ValueError):
        policy = policy.relative_to(Path.cwd())
    return Header(
        lago=lago,
        policy=str(policy),
        broker=broker,
        database=mask_url(settings.resolved_database_url),
        logs=str(logs) if logs else None,
    )


def _supervise(
    children: _Children, stop: _Stop, settings: Settings, panel: LivePanel | NoPanel, where: str
) -> int:
    """Until a signal: watch the children and the halt file; refresh the live view."""
    from worker.services.instance import read_halt

    def stop_for(message: str) -> NoReturn:
        panel.refresh(state="stopping: see the line below", force=True)
        fail(message)

    with panel:
        while stop.signum is None:
            for name, process in (("worker", children.worker), ("sandbox", children.sandbox)):
                if process is not None and process.poll() is not None:
                    stop_for(
                        f"the {name} exited unexpectedly (code {process.returncode}); see {where}"
                    )
            halt = read_halt(settings.data_dir)
            if halt is not None:
                stop_for(halt.message)
            panel.refresh()
            time.sleep(POLL_INTERVAL_S)
        panel.refresh(
            state="stopping: running sends may finish (Ctrl-C again to kill now)", force=True
        )
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
    sandbox_pay_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of the sandbox's payment requests its customers pay on their own, "
            "20 s to 2 min later (0 = nobody pays).",
        ),
    ] = 0.3,
    sandbox_no_premium: Annotated[
        bool,
        typer.Option(
            "--sandbox-no-premium",
            help="The sandbox acts as a Lago without the premium licence (payment requests "
            "refused): shows the retry-and-email fallback, messages in <data dir>/outbox/.",
        ),
    ] = False,
    initial_sweep: Annotated[
        bool,
        typer.Option("--initial-sweep/--no-initial-sweep", help="Sweep once right at start."),
    ] = True,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live",
            help="The live panel (logs to a file) instead of the log stream. "
            "Default: on a terminal.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the worker and its scheduler in the foreground (Ctrl-C stops everything)."""
    settings = load_settings()
    options = RunOptions(
        concurrency=concurrency,
        pool=pool,
        sandbox_port=sandbox_port,
        sandbox_customers=sandbox_customers,
        sandbox_seed=sandbox_seed,
        sandbox_pay_rate=sandbox_pay_rate,
        sandbox_no_premium=sandbox_no_premium,
        initial_sweep=initial_sweep,
        live=live,
    )
    code = run_stack(settings, options)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Run worker + beat in the foreground; starts the sandbox when LAGO_API_URL is unset.",
    )(run_command)


__all__ = [
    "Pool",
    "RunOptions",
    "free_port",
    "port_is_free",
    "register",
    "run_stack",
    "worker_command",
]
