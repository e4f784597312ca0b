"""`dunning sandbox`: run the local Lago API stand-in (see sandbox/README.md)."""

from __future__ import annotations

import typer

from sandbox.cli import sandbox_command


def register(app: typer.Typer) -> None:
    """Add the `sandbox` command to the `dunning` CLI."""
    app.command(
        "sandbox",
        help="Run a local stand-in for Lago's API (demo data, faults, webhooks).",
    )(sandbox_command)
