"""Helpers shared by CLI commands: settings, the runtime, time parsing, consoles."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from config import Settings, load_settings
from worker.cli.errors import EXIT_USAGE, fail
from worker.logging import configure_logging
from worker.services.runtime import Runtime, open_runtime

# Command output goes to stdout; progress, logs and errors to stderr.
# Off a terminal, tables keep their full width instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def cli_settings(*, policy: Path | None = None, quiet_logs: bool = False) -> Settings:
    """Settings from the environment, with `--policy` applied; logging configured."""
    settings = load_settings(policy_file=policy) if policy else load_settings()
    configure_logging(settings, force_json=quiet_logs)
    return settings


def cli_runtime(settings: Settings) -> Runtime:
    if settings.lago_api_url is None:
        fail(
            "LAGO_API_URL is not set: point it at your Lago API "
            "(or run `dunning sandbox` and set LAGO_API_URL=http://127.0.0.1:8765)",
            exit_code=EXIT_USAGE,
        )
    return open_runtime(settings)


def parse_now(value: str | None) -> datetime | None:
    """`--now` as ISO 8601; a value without a timezone is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"invalid --now {value!r}: use ISO 8601, e.g. 2026-11-22T09:30:00Z", exit_code=2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
