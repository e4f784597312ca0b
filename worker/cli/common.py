"""Helpers shared by CLI commands: settings, the runtime, time parsing, consoles."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from config import Settings, load_settings
from worker.cli.errors import EXIT_USAGE, fail
from worker.cli.instance import adopt_instance

if TYPE_CHECKING:
    from rich.console import Console

    from worker.services.runtime import Runtime


class _ConsoleOnFirstUse:
    """A rich `Console`, built (and rich imported, about 15 ms) when first used: a command
    that prints only JSON, such as `sweep --json`, never pays for it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _built(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._built(), name)

    # `with console:` (rich's Live and Progress do it) looks these up on the class.
    def __enter__(self) -> Console:
        return self._built().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._built().__exit__(*exc_info)


# Command output goes to stdout; progress, logs and errors to stderr.
# Off a terminal, tables keep their full width instead of rich's 80-column default.
# No markup and no emoji codes: what is printed is data (customer ids, Lago's messages, the
# user's input), shown as it is. A customer `acme[/eu]` must not end the command with a markup
# error, nor `:x:` turn into a picture. (Emoji off also spares `status` a 20 ms import.)
out = cast(
    "Console",
    _ConsoleOnFirstUse(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False),
)
err = cast("Console", _ConsoleOnFirstUse(stderr=True, markup=False, emoji=False))


def cli_settings(
    *, policy: Path | None = None, quiet_logs: bool = False, logs: bool = True
) -> Settings:
    """Settings from the environment, with `--policy` applied, completed from a running
    `dunning run` (said on one line); logging configured.

    `logs=False` leaves logging unconfigured, for a command whose code logs nothing
    (`dunning status`): configuring it imports structlog, ~35 ms of a ~0.6 s start.
    """
    settings = load_settings(policy_file=policy) if policy else load_settings()
    settings, note = adopt_instance(settings)
    if note is not None:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if logs:
        from worker.logging import configure_logging

        configure_logging(settings, force_json=quiet_logs)
    return settings


def cli_runtime(settings: Settings) -> Runtime:
    # Imported here: the runtime brings the Lago client, the broker and the limiter, which
    # read-only commands (`status`, `report`) never use.
    from worker.services.runtime import open_runtime

    if settings.lago_api_url is None:
        fail(
            "LAGO_API_URL is not set and no `dunning run` is running with data dir "
            f"{settings.data_dir}: point LAGO_API_URL at your Lago API, or start `dunning run` "
            "(it starts the sandbox) and run this again",
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
