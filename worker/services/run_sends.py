"""Keep a run's send figures true whoever sends its intents, and say when its sends are done.

A Celery sweep only fans its intents out: the tasks that send them finish later, one by one,
in other processes. After each send (and after a reconcile pass) the run's row is settled
from the intents' current status (`worker.store.runs.settle_send_figures`); the send that
leaves nothing of the run in flight logs `sweep.sends_finished` with the figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, select

from worker.logging import get_logger
from worker.store import runs
from worker.store.db import read_session, write_tx
from worker.store.models import PaymentRequestIntent
from worker.store.runs import SendFigures

log = get_logger(__name__)


def settle_runs(engine: Engine, run_ids: Iterable[int]) -> dict[int, SendFigures]:
    """Settle each run's row; return the figures of the rows that changed."""
    changed: dict[int, SendFigures] = {}
    for run_id in sorted(set(run_ids)):
        with write_tx(engine) as session:
            figures = runs.settle_send_figures(session, run_id=run_id)
        if figures is None:
            continue
        changed[run_id] = figures
        if figures.settled:
            log.info(
                "sweep.sends_finished",
                run_id=run_id,
                intents=figures.created,
                sent=figures.sent,
                rescheduled=figures.rescheduled,
                refused=figures.refused,
                needs_review=figures.needs_review,
                blocked=figures.blocked,
                cancelled=figures.cancelled,
            )
    return changed


def settle_run_of(engine: Engine, intent_id: int) -> dict[int, SendFigures]:
    """Settle the run that created intent `intent_id` (if any)."""
    with read_session(engine) as session:
        run_id = session.scalar(
            select(PaymentRequestIntent.run_id).where(PaymentRequestIntent.id == intent_id)
        )
    return settle_runs(engine, [run_id] if run_id is not None else [])


def settle_runs_of(engine: Engine, intent_ids: Iterable[int]) -> dict[int, SendFigures]:
    """Settle the runs that created these intents (a batch of sends)."""
    ids = sorted(set(intent_ids))
    if not ids:
        return {}
    intent = PaymentRequestIntent
    with read_session(engine) as session:
        run_ids = session.scalars(
            select(intent.run_id).where(intent.id.in_(ids), intent.run_id.is_not(None)).distinct()
        ).all()
    return settle_runs(engine, [run_id for run_id in run_ids if run_id is not None])


def settle_runs_touched_since(engine: Engine, since: datetime) -> dict[int, SendFigures]:
    """Settle every run whose intents changed since `since` (after a reconcile pass)."""
    intent = PaymentRequestIntent
    with read_session(engine) as session:
        run_ids = session.scalars(
            select(intent.run_id)
            .where(intent.updated_at >= since, intent.run_id.is_not(None))
            .distinct()
        ).all()
    return settle_runs(engine, [run_id for run_id in run_ids if run_id is not None])
