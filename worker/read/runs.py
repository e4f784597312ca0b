"""Sweeps and sends: the last runs with their figures, the send queue, intents per status."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from worker.store.controls import active_pause_clause
from worker.store.models import (
    INTENT_STATUSES,
    ChannelStep,
    CustomerControl,
    DecisionRow,
    PaymentRequestIntent,
    SweepRun,
)
from worker.store.runs import SendFigures, send_figures

ELIGIBLE = "eligible"


@dataclass(frozen=True, slots=True)
class RunLine:
    """One sweep: what it saw, what it decided, and what became of the intents it created."""

    id: int
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    invoices_seen: int
    groups: int
    intents_created: int
    sends: SendFigures
    skips: dict[str, int] = field(default_factory=dict)  # decision reason -> groups
    api_calls: int = 0
    error: str | None = None

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())


@dataclass(frozen=True, slots=True)
class SendQueue:
    """Intents not settled yet, across all runs.

    `sending`: claimed by a worker right now; `due`: pending and due now (the next worker or
    reconcile pass takes them); `waiting`: pending with a later `next_attempt_at` (a retry, or
    a paused customer's); `needs_review` and `blocked` wait for a human."""

    sending: int = 0
    due: int = 0
    waiting: int = 0
    needs_review: int = 0
    blocked: int = 0

    @property
    def in_flight(self) -> int:
        return self.sending + self.due


def recent_runs(session: Session, *, limit: int = 5) -> list[RunLine]:
    """The newest `limit` sweeps, newest first."""
    runs = session.scalars(
        select(SweepRun).order_by(SweepRun.started_at.desc(), SweepRun.id.desc()).limit(limit)
    ).all()
    ids = [run.id for run in runs]
    figures = send_figures(session, run_ids=ids)
    skips = _skips_by_reason(session, ids)
    return [
        RunLine(
            id=run.id,
            trigger=run.trigger,
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            invoices_seen=run.invoices_seen,
            groups=run.groups,
            intents_created=run.intents_created,
            sends=figures.get(run.id, SendFigures()),
            skips=skips.get(run.id, {}),
            api_calls=run.api_calls,
            error=run.error,
        )
        for run in runs
    ]


def _skips_by_reason(session: Session, run_ids: list[int]) -> dict[int, dict[str, int]]:
    if not run_ids:
        return {}
    rows = session.execute(
        select(DecisionRow.run_id, DecisionRow.reason, func.count())
        .where(DecisionRow.run_id.in_(run_ids), DecisionRow.reason != ELIGIBLE)
        .group_by(DecisionRow.run_id, DecisionRow.reason)
    ).all()
    result: dict[int, dict[str, int]] = defaultdict(dict)
    for run_id, reason, count in rows:
        if run_id is not None:
            result[int(run_id)][reason] = int(count)
    return {run_id: dict(sorted(reasons.items())) for run_id, reasons in result.items()}


def send_queue(session: Session, *, now: datetime) -> SendQueue:
    intent = PaymentRequestIntent
    paused = select(CustomerControl.external_customer_id).where(active_pause_clause(now))
    due = and_(
        intent.status == "pending",
        intent.next_attempt_at <= now,
        intent.external_customer_id.not_in(paused),
    )
    rows = session.execute(
        select(
            func.count().filter(intent.status == "sending"),
            func.count().filter(due),
            func.count().filter(and_(intent.status == "pending", ~due)),
            func.count().filter(intent.status == "needs_review"),
            func.count().filter(intent.status == "blocked"),
        ).where(intent.status.in_(("sending", "pending", "needs_review", "blocked")))
    ).one()
    return SendQueue(*(int(value or 0) for value in rows))


def intent_counts(session: Session) -> dict[str, int]:
    """Intents per status (every known status present, zero included)."""
    rows = session.execute(
        select(PaymentRequestIntent.status, func.count()).group_by(PaymentRequestIntent.status)
    ).all()
    counts = dict.fromkeys(INTENT_STATUSES, 0)
    counts.update({status: int(count) for status, count in rows})
    return counts


def intent_counts_by_channel(session: Session) -> dict[str, dict[str, int]]:
    """{channel: {status: count}} for the channels and statuses that have intents."""
    intent = PaymentRequestIntent
    rows = session.execute(
        select(intent.channel, intent.status, func.count()).group_by(intent.channel, intent.status)
    ).all()
    found: dict[str, dict[str, int]] = {}
    for channel, status, count in sorted(rows):
        found.setdefault(str(channel), {})[str(status)] = int(count)
    return found


def channel_step_counts(session: Session) -> dict[str, dict[str, int]]:
    """{kind: {status: count}} of the retry-and-email steps (retry, link, email)."""
    rows = session.execute(
        select(ChannelStep.kind, ChannelStep.status, func.count()).group_by(
            ChannelStep.kind, ChannelStep.status
        )
    ).all()
    found: dict[str, dict[str, int]] = {}
    for kind, status, count in sorted(rows):
        found.setdefault(str(kind), {})[str(status)] = int(count)
    return found


def last_successful_sweep(session: Session) -> datetime | None:
    """When the newest sweep that succeeded finished (None: none has yet)."""
    finished: datetime | None = session.scalar(
        select(func.max(SweepRun.finished_at)).where(SweepRun.status == "succeeded")
    )
    return finished
