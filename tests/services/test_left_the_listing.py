"""Which unsettled requests left the overdue listing: the whole ledger is scanned in chunks (a
server-side cursor on PostgreSQL), and a scan the cap stops early leaves the session usable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, update

from tests.fixtures.intents import add_group_intents
from worker.services.reconcile_outcomes import _STREAM_ROWS, due_intents, left_the_listing
from worker.store.db import make_engine, read_session, write_tx
from worker.store.migrate import upgrade
from worker.store.models import PaymentRequestIntent

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
#: More than two fetches' worth, so the scan crosses chunk boundaries.
COUNT = 2 * _STREAM_ROWS + 500


def _sent_intents(engine: Engine) -> dict[int, frozenset[str]]:
    groups = [((f"cus_{n:05d}", "USD", None), [f"inv_{n:05d}"]) for n in range(COUNT)]
    added = add_group_intents(engine, groups, now=NOW)
    with write_tx(engine) as session:
        session.execute(update(PaymentRequestIntent).values(status="sent", sent_at=NOW))
    return added


def test_every_intent_with_an_invoice_gone_from_the_listing_is_found(engine: Engine) -> None:
    added = _sent_intents(engine)
    by_invoice = {next(iter(ids)): intent_id for intent_id, ids in added.items()}
    gone = {f"inv_{n:05d}" for n in (3, _STREAM_ROWS + 7, COUNT - 1)}
    still_overdue = set(by_invoice) - gone
    with read_session(engine) as session:
        found = left_the_listing(session, still_overdue=still_overdue, cap=COUNT)
    assert sorted(found) == sorted(by_invoice[lago_id] for lago_id in gone)


def test_a_scan_stopped_by_the_cap_leaves_the_session_usable(engine: Engine) -> None:
    added = _sent_intents(engine)
    with read_session(engine) as session:
        found = left_the_listing(session, still_overdue=set(), cap=5)
        assert len(found) == 5
        assert set(found) <= added.keys()
        # The same transaction goes on reading after the early stop.
        due = due_intents(session, now=NOW, limit=10, also=found)
    assert {intent.id for intent in due} >= set(found)


def test_the_superseded_check_finds_the_group_by_index_on_sqlite(sqlite_url: str) -> None:
    # SQLite asks "is there a newer intent of this group?" for every unsettled intent before
    # it sorts and keeps the due ones: without an index on the group that was a scan of every
    # tracked intent per intent (2.6 s at 20,000 of them, growing with the square).
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        _sent_intents(engine)
        executed: list[tuple[str, Any]] = []

        def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if "superseded" in statement:
                executed.append((statement, params))

        event.listen(engine, "before_cursor_execute", keep)
        with read_session(engine) as session:
            assert len(due_intents(session, now=NOW, limit=10)) == 10
        event.remove(engine, "before_cursor_execute", keep)
        [(statement, params)] = executed
        with engine.connect() as connection:
            plan = [
                str(row[-1])
                for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            ]
    finally:
        engine.dispose()
    subquery = plan[plan.index(next(line for line in plan if "CORRELATED" in line)) + 1]
    assert "ix_intents_group_key_id" in subquery, plan
