"""The `dunning` command line. Each command group lives in its own module with `register()`.

Commands call services directly (in-process) and reach Celery tasks by name only.
"""

from __future__ import annotations

import typer

from worker.cli.errors import run_cli

app = typer.Typer(
    name="dunning",
    help="Dunning for Lago: find overdue invoices, apply policies, ask for payment exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    from worker.cli import (
        backtest_cmd,
        console_cmd,
        db_cmd,
        email_cmd,
        ops_cmd,
        policy_cmd,
        report_cmd,
        run_cmd,
        sandbox_cmd,
        serve_cmd,
        sweep_cmd,
    )

    run_cmd.register(app)
    sweep_cmd.register(app)
    ops_cmd.register(app)
    report_cmd.register(app)
    serve_cmd.register(app)
    console_cmd.register(app)
    policy_cmd.register(app)
    backtest_cmd.register(app)
    sandbox_cmd.register(app)
    db_cmd.register(app)
    email_cmd.register(app)


def main() -> None:
    """Console-script entry point: one-line errors and meaningful exit codes."""
    _register_commands()
    run_cli(app)
