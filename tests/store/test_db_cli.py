"""`dunning db ...` through Typer's runner, on a SQLite file chosen by DUNNING_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlalchemy import create_engine, inspect
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


def _no_tables(url: str) -> bool:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("bogusopt=1", 'invalid DUNNING_DATABASE_URL: invalid connection option "bogusopt"'),
        ("connect_timeout=abc", "invalid DUNNING_DATABASE_URL: bad value for connect_timeout"),
        ("sslmode=bogus", "invalid DUNNING_DATABASE_URL: invalid sslmode value"),
        (
            "sslmode=require&sslmode=disable",
            "invalid DUNNING_DATABASE_URL: option 'sslmode' is given more than once",
        ),
    ],
)
def test_a_connection_option_the_driver_refuses_is_one_line_exit_2_and_writes_nothing(
    app: typer.Typer,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    expected: str,
) -> None:
    secret_url = postgres_url.replace("://postgres@", "://postgres:Tq7-vault@")
    monkeypatch.setenv("DUNNING_DATABASE_URL", f"{secret_url}?{query}")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: {expected}")
    assert "Tq7-vault" not in result.output
    assert _no_tables(postgres_url)


def test_sqlite_options_are_refused_and_no_file_is_made(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("DUNNING_DATABASE_URL", f"sqlite:///{database}?bogusopt=1")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: invalid DUNNING_DATABASE_URL: a SQLite URL takes no options after '?'; "
        "remove them\n"
    )
    assert not database.exists()


def test_a_sqlite_file_under_a_missing_directory_is_refused_not_created(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo" / "state"
    monkeypatch.setenv("DUNNING_DATABASE_URL", f"sqlite:///{missing / 'dunning.sqlite3'}")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"error: invalid DUNNING_DATABASE_URL: the directory {str(missing)!r} of the SQLite "
        "file does not exist; create it or fix the path\n"
    )
    assert not (tmp_path / "typo").exists()


def test_the_embedded_default_database_gets_its_data_dir(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DUNNING_DATABASE_URL", raising=False)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "fresh" / "data"))
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fresh" / "data" / "dunning.sqlite3").is_file()
