"""Sweep runs: start, claim a beat tick slot (insert-or-nothing), finish.

The caller owns the transaction (pass a Session from `write_tx`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import RUN_STATUSES, RUN_TRIGGERS, SweepRun


@dataclass(frozen=True, slots=True)
class RunCounts:
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
            requests_sent=counts.requests_sent,
            skipped=counts.skipped,
            malformed=counts.malformed,
            api_calls=counts.api_calls,
        )
    )


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
