"""The `dunning` group lists its commands from a table and imports a command's module only
when that command runs: `dunning --help` never loads the database, broker or HTTP stacks."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from worker.cli.lazy import COMMANDS, load_command
from worker.store.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "celery", "httpx", "redis", "alembic", "pydantic", "sandbox")
#: What `dunning status` does not need: the report's modules (policies, cron, holdout
#: statistics, renderers), logging (status logs nothing), psutil (no run record to check).
NOT_FOR_STATUS = (
    "worker.services.report",
    "worker.services.report_html",
    "worker.cli.report_view",
    "config.policies",
    "croniter",
    "holidays",
    "structlog",
    "psutil",
    "celery",
    "httpx",
    "alembic",
    # A SQLite ledger never loads the PostgreSQL dialect (see `worker.store.models`).
    "sqlalchemy.dialects.postgresql",
)

_PROBE = """
import json, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["dunning", *args]
from worker.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(name for name in watched if sys.modules.get(name) is not None)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _probe(
    *args: str, watched: tuple[str, ...] = HEAVY, env: dict[str, str] | None = None
) -> tuple[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(watched)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return done.stdout, report


def test_help_lists_every_command_without_importing_the_heavy_stacks() -> None:
    stdout, report = _probe("--help")
    assert report == {"code": 0, "heavy": []}
    listed = [
        line.split()[0] for line in stdout.split("Commands:")[1].splitlines() if line[:3].strip()
    ]
    assert listed == list(COMMANDS)


def test_running_a_command_imports_what_it_needs() -> None:
    _stdout, report = _probe("policy", "--help")
    assert report["code"] == 0
    assert "pydantic" in report["heavy"]  # type: ignore[operator]
    assert "celery" not in report["heavy"]  # type: ignore[operator]


def test_status_imports_none_of_the_report_logging_or_worker_stacks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dunning.sqlite3'}"
    upgrade(url)
    env = {"DUNNING_DATA_DIR": str(tmp_path), "DUNNING_DATABASE_URL": url}
    for args in (("status",), ("status", "--json")):
        stdout, report = _probe(*args, watched=NOT_FOR_STATUS, env=env)
        assert report == {"code": 0, "heavy": []}, args
    assert json.loads(stdout)["intent_counts"]["pending"] == 0


def test_an_unknown_command_fails_with_usage_exit_2() -> None:
    _stdout, report = _probe("no-such-command")
    assert report["code"] == 2


def test_each_help_line_is_the_one_the_command_declares() -> None:
    for name, entry in COMMANDS.items():
        command = load_command(name)
        assert command is not None, name
        declared = " ".join((command.help or "").split("\n\n")[0].split())
        assert declared == entry.help, name


def test_the_table_names_every_command_each_module_registers() -> None:
    for module_name in {entry.module for entry in COMMANDS.values()}:
        holder = typer.Typer()
        importlib.import_module(module_name).register(holder)
        registered = set(typer.main.get_group(holder).commands)
        tabled = {name for name, entry in COMMANDS.items() if entry.module == module_name}
        assert registered == tabled, module_name


def test_the_lago_client_loads_httpx_without_its_command_line_client() -> None:
    _stdout, report = _probe("sweep", "--help", watched=("httpx", "httpx._main", "click"))
    assert report == {"code": 0, "heavy": ["httpx"]}


_LOG_PROBE = """
import logging, sys
import worker.logging
from config import load_settings
loaded = sorted(
    m for m in ("rich.console", "rich.traceback", "rich.pretty", "pygments") if sys.modules.get(m)
)
worker.logging.configure_logging(load_settings(log_format="console"))
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("probe").exception("failed")
import rich.traceback  # still importable for anyone else
print(loaded)
"""


def test_logging_loads_no_rich_tracebacks_and_still_prints_plain_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOG_PROBE],
        cwd=REPO,
        env={**os.environ, "DUNNING_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "Traceback (most recent call last):" in done.stderr
    assert "ValueError: boom" in done.stderr
