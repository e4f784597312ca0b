"""What a full sweep saw as overdue, per currency and ageing bucket. The caller owns the tx.

The ledger keeps no invoices: a sweep that read the whole overdue listing records its
totals here (one snapshot per run), so "outstanding and overdue now" can be answered without
calling Lago. Buckets count days past the invoice's due date on the sweep's day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, Select, String, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.store.models import Base
from worker.store.types import BigIntPK

#: (label, last day) of each bucket; the last bucket has no upper bound.
BUCKETS: Final = (("1-30", 30), ("31-60", 60), ("61-90", 90), ("90+", None))
BUCKET_LABELS: Final = tuple(label for label, _ in BUCKETS)
#: The bucket label of a currency's total row.
ALL_BUCKETS: Final = "all"


def bucket_for(days_overdue: int | None) -> str:
    """The bucket of an invoice `days_overdue` days past its due date.

    Lago flags an invoice overdue once its due date has passed; a missing due date or a
    count below 1 (a clock a day apart) is counted as recent."""
    days = max(days_overdue or 0, 1)
    for label, last in BUCKETS:
        if last is None or days <= last:
            return label
    raise AssertionError("the last bucket is open-ended")  # pragma: no cover


class OverdueSnapshot(Base):
    __tablename__ = "overdue_snapshots"
    __table_args__ = (Index("ix_overdue_snapshots_taken_at", "taken_at"),)

    run_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("sweep_runs.id", ondelete="CASCADE"), primary_key=True
    )
    taken_at: Mapped[datetime]
    as_of: Mapped[date] = mapped_column(Date)


class OverdueAgeingRow(Base):
    __tablename__ = "overdue_ageing"

    run_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("overdue_snapshots.run_id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(8), primary_key=True)
    invoices: Mapped[int] = mapped_column(Integer)
    customers: Mapped[int] = mapped_column(Integer)
    due_cents: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class AgeingFigure:
    """Overdue invoices of one currency in one bucket: how many, of how many customers, and
    what is still due on them."""

    currency: str
    bucket: str
    invoices: int
    customers: int
    due_cents: int


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    run_id: int
    taken_at: datetime
    as_of: date
    figures: tuple[AgeingFigure, ...]


def record_snapshot(
    session: Session,
    *,
    run_id: int,
    taken_at: datetime,
    as_of: date,
    figures: Sequence[AgeingFigure],
) -> None:
    """Store run `run_id`'s ageing (an empty `figures` = nothing was overdue)."""
    session.add(OverdueSnapshot(run_id=run_id, taken_at=taken_at, as_of=as_of))
    session.flush()
    if figures:
        session.execute(
            insert(OverdueAgeingRow),
            [
                {
                    "run_id": run_id,
                    "currency": figure.currency,
                    "bucket": figure.bucket,
                    "invoices": figure.invoices,
                    "customers": figure.customers,
                    "due_cents": figure.due_cents,
                }
                for figure in figures
            ],
        )


def _newest() -> Select[OverdueSnapshot]:
    return (
        select(OverdueSnapshot)
        .order_by(OverdueSnapshot.taken_at.desc(), OverdueSnapshot.run_id.desc())
        .limit(1)
    )


def latest_full_run_id(session: Session) -> int | None:
    """The newest run that read the whole overdue listing (and so recorded a snapshot)."""
    head = session.execute(_newest()).scalar_one_or_none()
    return head.run_id if head is not None else None


def latest_snapshot(session: Session) -> StoredSnapshot | None:
    """The newest snapshot, or None if no full sweep has recorded one yet."""
    head = session.execute(_newest()).scalar_one_or_none()
    if head is None:
        return None
    rows = session.scalars(
        select(OverdueAgeingRow)
        .where(OverdueAgeingRow.run_id == head.run_id)
        .order_by(OverdueAgeingRow.currency, OverdueAgeingRow.bucket)
    ).all()
    return StoredSnapshot(
        run_id=head.run_id,
        taken_at=head.taken_at,
        as_of=head.as_of,
        figures=tuple(
            AgeingFigure(row.currency, row.bucket, row.invoices, row.customers, row.due_cents)
            for row in rows
        ),
    )
