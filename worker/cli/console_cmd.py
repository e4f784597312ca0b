"""`dunning console-password`: read a password on stdin, print the hash for the console.

Put the printed line in `DUNNING_CONSOLE_PASSWORD_HASH`; `dunning serve` then serves the
console under /console. On a terminal the password is asked twice and not echoed; from a
pipe the first line is the password.
"""

from __future__ import annotations

import getpass
import sys

import typer

from worker.cli.errors import EXIT_USAGE, fail
from worker.web.console.passwords import MIN_PASSWORD_LENGTH, hash_password


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Console password: ")
        if getpass.getpass("Again: ") != first:
            fail("the two passwords differ: run the command again", exit_code=EXIT_USAGE)
        return first
    return sys.stdin.readline().removesuffix("\n").removesuffix("\r")


def console_password() -> None:
    """Read a password on stdin (no echo on a terminal) and print its scrypt hash."""
    password = _read_password()
    if len(password) < MIN_PASSWORD_LENGTH:
        fail(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
            exit_code=EXIT_USAGE,
        )
    if not password.isprintable():
        fail("the password must not contain control characters", exit_code=EXIT_USAGE)
    typer.echo(hash_password(password))


def register(app: typer.Typer) -> None:
    app.command("console-password")(console_password)
