"""Runs and sends: what became of a run's intents (whoever sent them), skips by reason, the
send queue; and the run's row settled from the same figures."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.fixtures.ledger_rows import T0, add_decision, add_intent_row, add_run
from worker.read import reading
from worker.read.runs import SendQueue, recent_runs, send_queue
from worker.store import runs
from worker.store.controls import pause_customer
from worker.store.db import write_tx
from worker.store.models import SweepRun
from worker.store.runs import SendFigures


def _ledger(engine: Engine) -> tuple[int, int]:
    older = add_run(engine, started_at=T0 - timedelta(minutes=1))
    newer = add_run(engine, started_at=T0)
    for status in ("sent", "sent", "adopted", "refused", "needs_review", "blocked", "cancelled"):
        add_intent_row(engine, run_id=older, status=status)
    add_intent_row(engine, run_id=older, status="pending", tries=2)  # rescheduled
    add_intent_row(engine, run_id=older, status="pending", tries=0)  # not tried yet
    add_intent_row(engine, run_id=older, status="sending")
    add_intent_row(engine, run_id=newer, status="sent")
    for reason in ("below_threshold", "below_threshold", "too_soon", "eligible"):
        add_decision(engine, run_id=older, customer="c", reason=reason)
    return older, newer


def test_send_figures_come_from_the_intents_status(engine: Engine) -> None:
    older, newer = _ledger(engine)
    with reading(engine) as session:
        lines = recent_runs(session, limit=5)
    assert [line.id for line in lines] == [newer, older]
    assert lines[1].sends == SendFigures(
        created=10,
        sent=3,
        rescheduled=1,
        refused=1,
        in_flight=2,
        needs_review=1,
        blocked=1,
        cancelled=1,
    )
    assert not lines[1].sends.settled
    assert lines[0].sends == SendFigures(created=1, sent=1)
    assert lines[1].skips == {"below_threshold": 2, "too_soon": 1}  # eligible is no skip
    assert lines[1].skipped == 3


def test_settling_writes_the_figures_on_the_row_once(engine: Engine) -> None:
    older, _ = _ledger(engine)
    with write_tx(engine) as session:
        first = runs.settle_send_figures(session, run_id=older)
    with write_tx(engine) as session:
        again = runs.settle_send_figures(session, run_id=older)
        row = session.get(SweepRun, older)
        assert row is not None
        assert (row.requests_sent, row.requests_rescheduled, row.requests_refused) == (3, 1, 1)
    assert first is not None
    assert first.sent == 3
    assert again is None  # nothing changed: no second "sends finished"


def test_the_send_queue(engine: Engine) -> None:
    add_intent_row(engine, status="sending")
    add_intent_row(engine, status="pending", next_attempt_at=T0 - timedelta(minutes=1))
    add_intent_row(engine, status="pending", next_attempt_at=T0 + timedelta(hours=1))
    add_intent_row(
        engine, customer="cus_paused", status="pending", next_attempt_at=T0 - timedelta(hours=1)
    )
    add_intent_row(engine, status="needs_review")
    add_intent_row(engine, status="sent")
    with write_tx(engine) as session:
        pause_customer(session, external_customer_id="cus_paused", reason=None, now=T0)
    with reading(engine) as session:
        queue = send_queue(session, now=T0)
    # a paused customer's due intent waits: no worker claims it
    assert queue == SendQueue(sending=1, due=1, waiting=2, needs_review=1, blocked=0)
    assert queue.in_flight == 2
