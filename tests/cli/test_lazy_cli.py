"""The `dunning` group lists its commands from a table and imports a command's module only
when that command runs: `dunning --help` never loads the database, broker or HTTP stacks."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import typer

from worker.cli.lazy import COMMANDS, load_command

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "celery", "httpx", "redis", "alembic", "pydantic", "sandbox")

_PROBE = """
import json, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["dunning", *args]
from worker.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & watched)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _probe(*args: str) -> tuple[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        cwd=REPO,
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
