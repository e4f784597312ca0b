"""The figures of a backtest, from its touches and the history's payment dates. Pure.

- touches, customers and groups touched, amount asked per currency;
- paid within N days: the share of touched groups for which, after some touch, every invoice
  of that touch was paid within N days (7, 14, 30);
- censored: touches with less than 30 days of history after them (their 30-day share can only
  be a lower bound).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from worker.policy.backtest import HistoricalInvoice, Touch

WINDOWS = (7, 14, 30)


@dataclass(frozen=True, slots=True)
class Figures:
    touches: int
    customers_touched: int
    groups_touched: int
    amount_asked_cents: dict[str, int]
    paid_within: dict[int, float]  # days -> share of touched groups
    censored_touches: int
    held_out_groups: int = 0
    by_attempt: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "touches": self.touches,
            "customers_touched": self.customers_touched,
            "groups_touched": self.groups_touched,
            "amount_asked_cents": dict(sorted(self.amount_asked_cents.items())),
            "paid_within_days": {str(days): share for days, share in self.paid_within.items()},
            "censored_touches": self.censored_touches,
            "held_out_groups": self.held_out_groups,
            "touches_by_attempt": {str(k): v for k, v in sorted(self.by_attempt.items())},
        }


def figures(
    touches: Iterable[Touch],
    invoices: Mapping[str, HistoricalInvoice],
    *,
    history_end: datetime,
    held_out_groups: int = 0,
) -> Figures:
    listed = list(touches)
    amounts: Counter[str] = Counter()
    paid_groups: dict[int, set[str]] = {days: set() for days in WINDOWS}
    censored = 0
    for touch in listed:
        amounts[touch.currency] += touch.amount_cents
        if touch.at + timedelta(days=max(WINDOWS)) > history_end:
            censored += 1
        paid = [invoices[i].paid_at if i in invoices else None for i in touch.invoice_ids]
        if not paid or any(at is None for at in paid):
            continue
        settled = max(at for at in paid if at is not None)
        for days in WINDOWS:
            if settled <= touch.at + timedelta(days=days):
                paid_groups[days].add(touch.group_key)
    groups = {touch.group_key for touch in listed}
    return Figures(
        touches=len(listed),
        customers_touched=len({touch.external_customer_id for touch in listed}),
        groups_touched=len(groups),
        amount_asked_cents=dict(amounts),
        paid_within={
            days: round(len(paid_groups[days]) / len(groups), 4) if groups else 0.0
            for days in WINDOWS
        },
        censored_touches=censored,
        held_out_groups=held_out_groups,
        by_attempt=dict(Counter(touch.attempt_number for touch in listed)),
    )


def difference(a: Figures, b: Figures) -> dict[str, object]:
    """b - a for every figure (amounts per currency)."""
    currencies = sorted(set(a.amount_asked_cents) | set(b.amount_asked_cents))
    return {
        "touches": b.touches - a.touches,
        "customers_touched": b.customers_touched - a.customers_touched,
        "groups_touched": b.groups_touched - a.groups_touched,
        "amount_asked_cents": {
            cur: b.amount_asked_cents.get(cur, 0) - a.amount_asked_cents.get(cur, 0)
            for cur in currencies
        },
        "paid_within_days": {
            str(days): round(b.paid_within[days] - a.paid_within[days], 4) for days in WINDOWS
        },
    }
