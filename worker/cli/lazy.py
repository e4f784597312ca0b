"""The `dunning` command group, importing a command's module only when that command runs.

`COMMANDS` names every command, the module whose `register(app)` adds it, and the one-line help
`dunning --help` shows. Listing the commands reads only this table, so `dunning --help` starts
without SQLAlchemy, Celery, httpx or the sandbox; `dunning status` imports what status needs.
A test checks that each help line here is the one the command itself declares.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup


@dataclass(frozen=True, slots=True)
class CommandEntry:
    module: str
    help: str


COMMANDS: dict[str, CommandEntry] = {
    "run": CommandEntry(
        "worker.cli.run_cmd",
        "Run worker + beat in the foreground; starts the sandbox when LAGO_API_URL is unset.",
    ),
    "sweep": CommandEntry(
        "worker.cli.sweep_cmd",
        "Run one sweep: list overdue invoices, decide per policy, create payment requests.",
    ),
    "plan": CommandEntry(
        "worker.cli.sweep_cmd",
        "Show what a sweep would do for each group, and why. Changes nothing.",
    ),
    "retry": CommandEntry(
        "worker.cli.ops_cmd",
        "Re-queue an intent (needs_review, refused, blocked or pending) and send it again.",
    ),
    "pause": CommandEntry(
        "worker.cli.ops_cmd",
        "Stop dunning a customer: no new payment requests, open intents are not sent.",
    ),
    "resume": CommandEntry(
        "worker.cli.ops_cmd", "Dun a paused customer again from the next sweep on."
    ),
    "status": CommandEntry(
        "worker.cli.report_cmd",
        "Intents, the send queue, the last sweeps and who needs a human.",
    ),
    "report": CommandEntry(
        "worker.cli.report_cmd",
        "Overdue now (ageing), recovery per policy/currency/attempt, who needs a human, "
        "next sweep.",
    ),
    "serve": CommandEntry(
        "worker.cli.serve_cmd",
        "Serve Lago webhooks (POST /webhooks/lago), Prometheus /metrics, /healthz and the "
        "ops console (/console).",
    ),
    "console-password": CommandEntry(
        "worker.cli.console_cmd",
        "Read a password on stdin (no echo on a terminal) and print its scrypt hash.",
    ),
    "preview-email": CommandEntry(
        "worker.cli.email_cmd",
        "Render the dunning email of each of the customer's overdue groups. Sends nothing.",
    ),
    "backtest": CommandEntry(
        "worker.cli.backtest_cmd",
        "Replay policies over Lago's history: touches, amount asked, how soon touched groups paid.",
    ),
    "sandbox": CommandEntry(
        "worker.cli.sandbox_cmd",
        "Run a local stand-in for Lago's API (demo data, faults, webhooks).",
    ),
    "enqueue": CommandEntry(
        "worker.cli.ops_cmd", "Send a task to the running workers through the broker."
    ),
    "policy": CommandEntry("worker.cli.policy_cmd", "Dunning policy files."),
    "db": CommandEntry(
        "worker.cli.db_cmd",
        "Create or migrate the state database (SQLite file or PostgreSQL).",
    ),
}


def load_command(name: str) -> Any:
    """The click command `name`, built from its module's `register()` (imported now)."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    module: Any = importlib.import_module(entry.module)
    holder = typer.Typer()
    module.register(holder)
    group = typer.main.get_group(holder)
    return group.commands.get(name)


class LazyGroup(TyperGroup):
    """Lists `COMMANDS` without importing them; imports one module when its command runs.

    Its own help is plain (no rich markup): importing the rich renderer alone costs more than
    the whole start budget of `dunning --help`. Each command keeps its rich help.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return load_command(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, entry.help) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def build_cli() -> typer.Typer:
    """The `dunning` app: a Typer whose group is a `LazyGroup` (no command registered here)."""
    app = typer.Typer(
        cls=LazyGroup,
        name="dunning",
        help="Dunning for Lago: find overdue invoices, apply policies, ask for payment "
        "exactly once.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def _root() -> None:
        """The group itself does nothing: each command is loaded when it runs."""

    return app
