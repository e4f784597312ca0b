"""What is overdue now, per currency, with ageing buckets (1-30 / 31-60 / 61-90 / 90+ days).

From the newest snapshot a full sweep recorded (`worker.store.ageing`): it is as fresh as the
last sweep, and says which run and when. Amounts of different currencies are never added up.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from worker.store.ageing import ALL_BUCKETS, BUCKET_LABELS, AgeingFigure, latest_snapshot


@dataclass(frozen=True, slots=True)
class AgeingBucket:
    label: str  # "1-30", "31-60", "61-90", "90+"
    invoices: int
    customers: int
    due_cents: int


@dataclass(frozen=True, slots=True)
class CurrencyOverdue:
    """One currency: totals, and one bucket per label in order (empty ones included)."""

    currency: str
    invoices: int
    customers: int
    due_cents: int
    buckets: tuple[AgeingBucket, ...]

    def bucket(self, label: str) -> AgeingBucket:
        return next(bucket for bucket in self.buckets if bucket.label == label)


@dataclass(frozen=True, slots=True)
class OverdueNow:
    run_id: int
    taken_at: datetime
    as_of: date
    currencies: tuple[CurrencyOverdue, ...]

    @property
    def invoices(self) -> int:
        return sum(currency.invoices for currency in self.currencies)


def overdue_now(session: Session) -> OverdueNow | None:
    """The newest snapshot, or None before the first full sweep."""
    snapshot = latest_snapshot(session)
    if snapshot is None:
        return None
    by_currency: dict[str, dict[str, AgeingFigure]] = defaultdict(dict)
    for figure in snapshot.figures:
        by_currency[figure.currency][figure.bucket] = figure
    return OverdueNow(
        run_id=snapshot.run_id,
        taken_at=snapshot.taken_at,
        as_of=snapshot.as_of,
        currencies=tuple(
            _currency(currency, figures) for currency, figures in sorted(by_currency.items())
        ),
    )


def _currency(currency: str, figures: dict[str, AgeingFigure]) -> CurrencyOverdue:
    buckets = tuple(
        AgeingBucket(label, figure.invoices, figure.customers, figure.due_cents)
        if (figure := figures.get(label))
        else AgeingBucket(label, 0, 0, 0)
        for label in BUCKET_LABELS
    )
    total = figures.get(ALL_BUCKETS) or AgeingFigure(currency, ALL_BUCKETS, 0, 0, 0)
    return CurrencyOverdue(
        currency=currency,
        invoices=total.invoices,
        customers=total.customers,
        due_cents=total.due_cents,
        buckets=buckets,
    )
