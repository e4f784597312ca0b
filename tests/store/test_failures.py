"""A full disk and a locked SQLite file give a one-line StoreError and keep earlier rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from worker.store import decisions, runs
from worker.store.db import make_engine, read_session, write_tx
from worker.store.errors import StoreError
from worker.store.migrate import upgrade
from worker.store.models import DecisionRow, SweepRun

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _record(i: int) -> decisions.DecisionRecord:
    return decisions.DecisionRecord(
        external_customer_id=f"cus_{i}",
        currency="EUR",
        billing_entity_code=None,
        policy="p",
        kind="skip",
        reason="below_threshold",
        detail="x" * 400,
        amount_cents=i,
        invoice_count=1,
        next_eligible_at=None,
        decided_at=T0,
    )


def test_full_disk_is_a_clear_store_error_and_keeps_earlier_rows(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=T0)
        decisions.record_decisions(
            session, run_id=run_id, decisions=[_record(i) for i in range(10)]
        )

    # Cap the file at its current size: the next big write cannot grow it (a full disk).
    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    engine.dispose()  # reconnect so the cap applies
    with pytest.raises(StoreError) as caught, write_tx(engine) as session:
        decisions.record_decisions(
            session, run_id=run_id, decisions=[_record(i) for i in range(5000)]
        )
    message = str(caught.value)
    assert "full" in message
    assert "free disk space" in message
    assert "\n" not in message
    engine.dispose()

    fresh = make_engine(sqlite_url)
    with read_session(fresh) as session:
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == 10
        assert session.scalar(select(func.count()).select_from(SweepRun)) == 1
    fresh.dispose()


def test_locked_sqlite_file_is_a_clear_store_error(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url, busy_timeout_ms=200)
    with write_tx(engine) as session:
        runs.start_run(session, trigger="cli", now=T0)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(StoreError) as caught, write_tx(engine) as session:
            runs.start_run(session, trigger="cli", now=T0)
        message = str(caught.value)
        assert "locked" in message
        assert "stop the other writer" in message
        assert "\n" not in message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with read_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(SweepRun)) == 1
    engine.dispose()


def test_unreachable_postgres_is_a_clear_store_error() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    with (
        pytest.raises(StoreError, match="cannot reach the state database"),
        read_session(engine) as session,
    ):
        session.execute(select(1))
    engine.dispose()


def test_unsupported_url_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        make_engine("mysql://u@h/db")
