"""Migrations on both engines: from empty to head, one step down and up, schema checks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import worker.store
from worker.store.db import make_engine
from worker.store.errors import SchemaError
from worker.store.migrate import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    current_revision,
    downgrade,
    ensure_schema_current,
    head_revision,
    upgrade,
)
from worker.store.models import Base


def _previous(revision: str) -> str | None:
    script = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision)
    assert script is not None
    down = script.down_revision
    assert down is None or isinstance(down, str)
    return down


def _import_all_store_modules() -> None:
    """Every model module registers its tables on `Base.metadata` when imported."""
    for module in pkgutil.iter_modules(worker.store.__path__):
        importlib.import_module(f"worker.store.{module.name}")


TABLES = {
    "sweep_runs",
    "payment_request_intents",
    "group_states",
    "customer_controls",
    "decisions",
    "webhook_events",
    "operator_actions",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


def test_upgrade_from_empty_then_down_one_step_and_up_again(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        with pytest.raises(SchemaError, match=r"no schema: run `dunning db upgrade`"):
            ensure_schema_current(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        ensure_schema_current(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("payment_request_intents")}
        assert {"uq_intents_open_group", "ix_intents_status_next_attempt"} <= indexes

        downgrade(engine, "-1")
        assert current_revision(engine) == _previous(head_revision())
        with pytest.raises(SchemaError, match="out of date"):
            ensure_schema_current(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()

        downgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("payment_request_intents")}
        assert "ix_intents_status_next_attempt" not in indexes
        assert "uq_intents_open_group" in indexes

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(engine)
        ensure_schema_current(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(empty_url: str) -> None:
    _import_all_store_modules()
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_the_partial_indexes_name_their_where_clause_for_the_engine_in_use(
    empty_url: str,
) -> None:
    # The clauses are given when an engine is built (`make_engine`), not at import: the
    # model's DDL then matches the migrations' partial indexes on that engine.
    from sqlalchemy.schema import CreateIndex

    engine = make_engine(empty_url)
    try:
        indexes = {
            index.name: index
            for table in Base.metadata.tables.values()
            for index in table.indexes
            if index.info.get("where")
        }
        assert set(indexes) == {"uq_intents_open_group", "uq_holdout_entries_open_group"}
        ddl = {
            name: " ".join(str(CreateIndex(index).compile(dialect=engine.dialect)).split())
            for name, index in indexes.items()
        }
        assert ddl["uq_intents_open_group"].endswith(
            "(group_key) WHERE status IN ('pending', 'sending')"
        )
        assert ddl["uq_holdout_entries_open_group"].endswith(
            "(group_key) WHERE resolved_at IS NULL"
        )
    finally:
        engine.dispose()


def test_a_newer_schema_is_refused_with_one_line(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaError) as caught:
            ensure_schema_current(engine)
        message = str(caught.value)
        assert "migrated by a newer lago-dunning" in message
        assert "\n" not in message
    finally:
        engine.dispose()


def test_unknown_revision_is_a_schema_error(sqlite_url: str) -> None:
    with pytest.raises(SchemaError, match="cannot upgrade to 'nope'"):
        upgrade(sqlite_url, "nope")


def test_the_webhook_digest_column_comes_and_goes_keeping_the_events(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0003_outcome_checks")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO webhook_events (unique_key, webhook_type, received_at) "
                    "VALUES ('before-0004', 'x', CURRENT_TIMESTAMP)"
                )
            )
        upgrade(engine, "0004_webhook_payload_digest")
        columns = {column["name"] for column in inspect(engine).get_columns("webhook_events")}
        assert "payload_digest" in columns
        unique = {
            index["name"]
            for index in inspect(engine).get_indexes("webhook_events")
            if index["unique"]
        }
        assert "uq_webhook_events_payload_digest" in unique
        downgrade(engine, "0003_outcome_checks")
        columns = {column["name"] for column in inspect(engine).get_columns("webhook_events")}
        assert "payload_digest" not in columns
        with engine.connect() as connection:
            keys = connection.execute(text("SELECT unique_key FROM webhook_events")).scalars()
            assert list(keys) == ["before-0004"]
    finally:
        engine.dispose()


def test_the_head_the_start_check_compares_with_is_the_newest_migration() -> None:
    assert head_revision() == HEAD_REVISION
