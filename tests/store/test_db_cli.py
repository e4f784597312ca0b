"""`dunning db ...` through Typer's runner, on a SQLite file chosen by DUNNING_DATABASE_URL."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from worker.cli import db_cmd
from worker.store.migrate import head_revision


@pytest.fixture
def app() -> typer.Typer:
    built = typer.Typer()
    db_cmd.register(built)
    return built


@pytest.fixture
def runner(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DUNNING_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DUNNING_LOG_FORMAT", "json")
    return CliRunner()


def test_upgrade_current_downgrade(app: typer.Typer, runner: CliRunner) -> None:
    empty = runner.invoke(app, ["db", "current"])
    assert empty.exit_code == 0
    assert "no schema" in empty.output

    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    assert f"upgraded empty -> {head_revision()}" in up.output
    again = runner.invoke(app, ["db", "upgrade"])
    assert "already at" in again.output

    current = runner.invoke(app, ["db", "current"])
    assert f"{head_revision()} (current)" in current.output

    down = runner.invoke(app, ["db", "downgrade", "0001"])
    assert down.exit_code == 0, down.output
    assert "-> 0001" in down.output
    behind = runner.invoke(app, ["db", "current"])
    assert "run `dunning db upgrade`" in behind.output


def test_errors_are_one_line_with_exit_1(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["db", "downgrade", "-1"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: the database has no schema: nothing to downgrade"

    runner.invoke(app, ["db", "upgrade"])
    bad = runner.invoke(app, ["db", "upgrade", "--revision", "nope"])
    assert bad.exit_code == 1
    assert bad.output.count("\n") == 1
    assert bad.output.startswith("error: cannot upgrade to 'nope'")
    assert "Traceback" not in bad.output


@pytest.mark.postgres
def test_current_shows_the_url_with_a_password_that_has_a_slash_masked(
    app: typer.Typer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trust authentication: the server never asks for the password, so any one connects.
    monkeypatch.setenv(
        "DUNNING_DATABASE_URL", postgres_url.replace("://postgres@", "://postgres:Tq7/mZ9-vault@")
    )
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 0, result.output
    shown = postgres_url.replace("://postgres@", "://postgres:***@")
    assert result.output == f"{shown}: no schema (run `dunning db upgrade`)\n"
    assert "mZ9" not in result.output
