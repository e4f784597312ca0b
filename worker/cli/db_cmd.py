"""`dunning db upgrade|downgrade|current`: manage the state database schema (Alembic)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import Engine

from config import mask_url
from worker.cli.common import cli_settings
from worker.cli.errors import EXIT_FAILURE, EXIT_USAGE
from worker.store.db import engine_for
from worker.store.errors import StoreConfigError, StoreError
from worker.store.migrate import current_revision, downgrade, head_revision, upgrade

db_app = typer.Typer(
    name="db",
    help="Create or migrate the state database (SQLite file or PostgreSQL).",
    no_args_is_help=True,
)


@contextmanager
def _engine() -> Iterator[tuple[Engine, str]]:
    settings = cli_settings()
    if settings.log_level != "DEBUG":
        # Alembic narrates each step at INFO; our one-line summary says what happened.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = engine_for(settings)
    try:
        yield engine, mask_url(settings.resolved_database_url)
    finally:
        engine.dispose()


def _one_line_errors(action: Callable[[], None]) -> None:
    try:
        action()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(
            EXIT_USAGE if isinstance(exc, StoreConfigError) else EXIT_FAILURE
        ) from None


@db_app.command("upgrade")
def upgrade_command(
    revision: Annotated[
        str, typer.Option("--revision", help="Target revision (default: the newest).")
    ] = "head",
) -> None:
    """Migrate the state database up (creates it on first use)."""

    def run() -> None:
        with _engine() as (engine, shown):
            before = current_revision(engine)
            upgrade(engine, revision)
            after = current_revision(engine)
        if before == after:
            typer.echo(f"{shown}: already at {after}")
        else:
            typer.echo(f"{shown}: upgraded {before or 'empty'} -> {after}")

    _one_line_errors(run)


# `ignore_unknown_options` lets a relative revision such as "-1" through as the argument.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def downgrade_command(
    revision: Annotated[str, typer.Argument(help='Target revision, e.g. "-1", "0001", "base".')],
) -> None:
    """Migrate the state database down (dropping tables loses their data)."""

    def run() -> None:
        with _engine() as (engine, shown):
            before = current_revision(engine)
            if before is None:
                raise StoreError("the database has no schema: nothing to downgrade")
            downgrade(engine, revision)
            after = current_revision(engine)
        typer.echo(f"{shown}: downgraded {before} -> {after or 'empty'}")

    _one_line_errors(run)


@db_app.command("current")
def current_command() -> None:
    """Show the schema revision of the state database and whether it is current."""

    def run() -> None:
        with _engine() as (engine, shown):
            current = current_revision(engine)
        head = head_revision()
        if current is None:
            typer.echo(f"{shown}: no schema (run `dunning db upgrade`)")
        elif current == head:
            typer.echo(f"{shown}: {current} (current)")
        else:
            typer.echo(f"{shown}: {current} (newest known: {head}; run `dunning db upgrade`)")

    _one_line_errors(run)


def register(app: typer.Typer) -> None:
    """Add the `db` command group to the `dunning` CLI."""
    app.add_typer(db_app, name="db")
