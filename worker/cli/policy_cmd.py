"""`dunning policy check [FILE]`: validate a policy file and show what it will do."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from config.policies import Policy, PolicyFileError, PolicySet, describe_email, load_policies

EXIT_INVALID = 2


def _thresholds(policy: Policy) -> str:
    return ", ".join(f"{cur} {cents}" for cur, cents in sorted(policy.min_overdue_cents.items()))


def _max_attempts(policy: Policy) -> str:
    if isinstance(policy.max_attempts, dict):
        return ", ".join(f"{cur} {n}" for cur, n in sorted(policy.max_attempts.items()))
    return str(policy.max_attempts)


def _match(policy: Policy) -> str:
    text = policy.match.describe()
    if policy.exclude is not None:
        text += f"\nexcept {policy.exclude.describe()}"
    return text


def _window(policy: Policy) -> str:
    return policy.send_window.describe() if policy.send_window else "any time"


def _schedule(policy: Policy) -> str:
    """`>3d x3` for a gap schedule; one line per step for a step schedule."""
    if policy.steps is not None:
        return "\n".join(step.describe() for step in policy.steps)
    return f">{policy.days_between_attempts}d x{_max_attempts(policy)}"


def _guards(policy: Policy) -> str:
    parts = [f"version {policy.version}"] if policy.version else []
    if policy.contact_cap is not None:
        parts.append(f"cap {policy.contact_cap.describe()}")
    if policy.holdout_percent > 0:
        parts.append(f"holdout {policy.holdout_percent:g}%")
    return "\n".join(parts) or "-"


def summary_table(policies: PolicySet) -> Table:
    """One row per policy, in matching order."""
    table = Table(title=f"{policies.source} (version {policies.version_hash})")
    for column in (
        "#", "policy", "match", "min due (cents)", "grace", "schedule", "window",
        "email", "cap / holdout", "on_exhausted",
    ):  # fmt: skip
        table.add_column(column, overflow="fold")
    for index, policy in enumerate(policies.policies, start=1):
        table.add_row(
            str(index),
            policy.name,
            _match(policy),
            _thresholds(policy),
            f"{policy.grace_days}d",
            _schedule(policy),
            _window(policy),
            describe_email(policy.email),
            _guards(policy),
            policy.on_exhausted.describe(),
        )
    return table


def check(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Policy file to check (default: $DUNNING_POLICY_FILE, the file a running "
            "`dunning run` uses, or config/policies.yaml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Validate a policy file and print a summary of its policies and schedule."""
    if file is None:
        from worker.cli.common import cli_settings

        file = cli_settings(quiet_logs=True).policy_file
    try:
        policies = load_policies(file)
    except PolicyFileError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    # Full-width tables off a terminal, like every other command's output.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(summary_table(policies))
    console.print(f"schedule: cron {policies.cron!r}", markup=False)
    console.print(f"{len(policies.policies)} policies OK", markup=False)


def register(app: typer.Typer) -> None:
    """Add the `policy` command group to the `dunning` CLI."""
    policy_app = typer.Typer(help="Dunning policy files.", no_args_is_help=True)
    policy_app.command("check")(check)
    app.add_typer(policy_app, name="policy")
