"""Sweep runs: start, claim a beat tick slot (insert-or-nothing), finish, send figures.

A run's send figures (`requests_sent`, `requests_rescheduled`, `requests_refused`) are read
from the current status of the intents it created, whoever sent them: the run itself
(`dunning sweep --once`) or the tasks it fanned out. `settle_send_figures` writes them on the
run's row; `send_figures` reads them for any runs.

The caller owns the transaction (pass a Session from `write_tx`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import RUN_STATUSES, RUN_TRIGGERS, PaymentRequestIntent, SweepRun


@dataclass(frozen=True, slots=True)
class RunCounts:
    """A run's own figures. `requests_sent` is superseded by `settle_send_figures`."""

    invoices_seen: int = 0
    groups: int = 0
    intents_created: int = 0
    requests_sent: int = 0
    skipped: int = 0
    malformed: int = 0
    api_calls: int = 0


def _check_trigger(trigger: str) -> None:
    if trigger not in RUN_TRIGGERS:
        raise ValueError(f"unknown run trigger {trigger!r}; expected one of {RUN_TRIGGERS}")


def start_run(
    session: Session, *, trigger: str, now: datetime, policy_version: str | None = None
) -> int:
    """Insert a `running` sweep run and return its id."""
    _check_trigger(trigger)
    run = SweepRun(
        trigger=trigger,
        started_at=now,
        heartbeat_at=now,
        status="running",
        policy_version=policy_version,
    )
    session.add(run)
    session.flush()
    return run.id


def claim_tick_slot(
    session: Session,
    *,
    slot: str,
    trigger: str,
    now: datetime,
    policy_version: str | None = None,
) -> int | None:
    """Start a run for beat tick `slot`, or return None if that slot already has a run.

    A double-fired tick (two beats, a re-published message) therefore inserts nothing.
    """
    _check_trigger(trigger)
    statement = (
        insert_for(session, SweepRun)
        .values(
            trigger=trigger,
            slot=slot,
            started_at=now,
            heartbeat_at=now,
            status="running",
            policy_version=policy_version,
            invoices_seen=0,
            groups=0,
            intents_created=0,
            requests_sent=0,
            skipped=0,
            malformed=0,
            api_calls=0,
        )
        .on_conflict_do_nothing(index_elements=["slot"])
        .returning(SweepRun.id)
    )
    return session.execute(statement).scalar_one_or_none()


def finish_run(
    session: Session,
    *,
    run_id: int,
    now: datetime,
    status: str,
    counts: RunCounts,
    error: str | None = None,
) -> None:
    """Close a run with its final status, counts and (one-line) error."""
    if status not in RUN_STATUSES or status == "running":
        raise ValueError(f"cannot finish a run with status {status!r}")
    session.execute(
        update(SweepRun)
        .where(SweepRun.id == run_id)
        .values(
            finished_at=now,
            status=status,
            error=_one_line(error),
            invoices_seen=counts.invoices_seen,
            groups=counts.groups,
            intents_created=counts.intents_created,
            skipped=counts.skipped,
            malformed=counts.malformed,
            api_calls=counts.api_calls,
        )
    )
    settle_send_figures(session, run_id=run_id)


@dataclass(frozen=True, slots=True)
class SendFigures:
    """What became of the intents one run created, from their current status."""

    created: int = 0
    sent: int = 0  # sent or adopted: a payment request exists in Lago
    rescheduled: int = 0  # tried, then put back to pending for a later try
    refused: int = 0  # Lago said no for good
    in_flight: int = 0  # not tried yet, or being sent right now
    needs_review: int = 0
    blocked: int = 0
    cancelled: int = 0

    @property
    def settled(self) -> bool:
        """Every intent of the run has had at least one answer."""
        return self.in_flight == 0


def _tally(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def send_figures(session: Session, *, run_ids: Sequence[int]) -> dict[int, SendFigures]:
    """Send figures of each run in `run_ids` (runs without intents are left out)."""
    if not run_ids:
        return {}
    intent = PaymentRequestIntent
    status = intent.status
    rows = session.execute(
        select(
            intent.run_id,
            func.count(),
            _tally(status.in_(("sent", "adopted"))),
            _tally(and_(status == "pending", intent.tries > 0)),
            _tally(status == "refused"),
            _tally(or_(status == "sending", and_(status == "pending", intent.tries == 0))),
            _tally(status == "needs_review"),
            _tally(status == "blocked"),
            _tally(status == "cancelled"),
        )
        .where(intent.run_id.in_(list(run_ids)))
        .group_by(intent.run_id)
    ).all()
    return {
        int(run_id): SendFigures(*(int(value) for value in values))
        for run_id, *values in rows
        if run_id is not None
    }


def settle_send_figures(session: Session, *, run_id: int) -> SendFigures | None:
    """Write run `run_id`'s send figures on its row; return them if the row changed.

    The row is locked first (PostgreSQL; SQLite's write transaction already holds the lock),
    so the figures are counted after every concurrent writer has committed: the last settle
    always writes the latest figures."""
    locked = session.execute(
        select(SweepRun.id).where(SweepRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if locked is None:
        return None
    figures = send_figures(session, run_ids=[run_id]).get(run_id, SendFigures())
    changed = session.execute(
        update(SweepRun)
        .where(
            SweepRun.id == run_id,
            or_(
                SweepRun.requests_sent != figures.sent,
                SweepRun.requests_rescheduled != figures.rescheduled,
                SweepRun.requests_refused != figures.refused,
            ),
        )
        .values(
            requests_sent=figures.sent,
            requests_rescheduled=figures.rescheduled,
            requests_refused=figures.refused,
        )
    )
    return figures if getattr(changed, "rowcount", 0) == 1 else None


def heartbeat(session: Session, *, run_id: int, now: datetime) -> None:
    """The run is alive at `now`."""
    session.execute(
        update(SweepRun)
        .where(SweepRun.id == run_id, SweepRun.status == "running")
        .values(heartbeat_at=now)
    )


def mark_abandoned(session: Session, *, now: datetime, silent_since: datetime) -> list[int]:
    """Runs still `running` whose last heartbeat (or start) is before `silent_since` died
    without finishing: mark them `abandoned`. Returns their ids."""
    last_sign = func.coalesce(SweepRun.heartbeat_at, SweepRun.started_at)
    dead = list(
        session.scalars(
            select(SweepRun.id).where(SweepRun.status == "running", last_sign < silent_since)
        )
    )
    if dead:
        session.execute(
            update(SweepRun)
            .where(SweepRun.id.in_(dead))
            .values(
                status="abandoned",
                finished_at=now,
                error=f"abandoned: no heartbeat since before {silent_since.isoformat()}",
            )
        )
    return dead


def get_run(session: Session, run_id: int) -> SweepRun | None:
    return session.get(SweepRun, run_id)


def latest_runs(session: Session, *, limit: int = 10) -> Sequence[SweepRun]:
    """Newest first."""
    return session.scalars(
        select(SweepRun).order_by(SweepRun.started_at.desc(), SweepRun.id.desc()).limit(limit)
    ).all()


def _one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split())[:1000]
