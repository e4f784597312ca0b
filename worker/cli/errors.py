"""Turn every expected failure into one line on stderr and a non-zero exit code.

Exit codes: 1 = a runtime failure (Lago, database, licence); 2 = bad input or configuration
(bad flag, invalid setting, invalid policy file); 130 = interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import typer

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the CLI reports as one line. `exit_code` defaults to 1."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, *, exit_code: int = EXIT_FAILURE) -> NoReturn:
    raise CliError(message, exit_code=exit_code)


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception we know how to explain."""
    # Imported on a failure only: `dunning --help` starts without them.
    from config import SettingsError
    from config.policies import PolicyFileError
    from worker.celery import ScheduleError
    from worker.lago.errors import (
        LagoConnectionError,
        LagoError,
        LagoRequestError,
        LagoTimeoutError,
        LagoUnauthorizedError,
    )
    from worker.services.runtime import RuntimeSetupError
    from worker.store.errors import StoreConfigError, StoreError

    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    if isinstance(exc, SettingsError):
        return f"configuration error: {exc}", EXIT_USAGE
    if isinstance(exc, LagoUnauthorizedError):
        return "Lago rejected the API key: check LAGO_API_KEY", EXIT_FAILURE
    if isinstance(exc, LagoRequestError):
        return f"cannot send requests to Lago ({exc}): check LAGO_API_KEY", EXIT_FAILURE
    if isinstance(exc, LagoConnectionError | LagoTimeoutError):
        return (
            f"cannot reach Lago ({exc}): check LAGO_API_URL and that Lago is up",
            EXIT_FAILURE,
        )
    if isinstance(exc, LagoError):
        return f"Lago error: {exc}", EXIT_FAILURE
    if isinstance(exc, PolicyFileError):
        return f"invalid policy file: {exc}", EXIT_USAGE
    if isinstance(exc, ScheduleError):
        return f"invalid policy file schedule: {exc}", EXIT_USAGE
    if isinstance(exc, StoreConfigError):
        return f"configuration error: {exc}", EXIT_USAGE
    if isinstance(exc, StoreError):
        return str(exc), EXIT_FAILURE
    if isinstance(exc, RuntimeSetupError):
        return str(exc), EXIT_USAGE
    raise exc


def run_cli(app: Callable[[], object]) -> NoReturn:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        message, code = describe(exc)
        typer.echo(f"error: {message}", err=True)
        sys.exit(code)
    sys.exit(0)
