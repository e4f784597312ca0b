"""How well dunning recovers money, per policy, currency and attempt number.

Over the payment requests sent or adopted since a date (all of them without one):
- asked: how many, and the amount asked (what was due on the dunned invoices), per policy
  version too (its `version` label, else the policy file's hash);
- paid: how many were fully paid; partially paid ones count in the recovered amount;
- recovered: the amount paid after the request (see `reconcile_outcomes`);
- rate: recovered amount / asked amount;
- median time to pay: settled - sent, over the fully paid ones.
And the money that came in, payment by payment and per day (the report's chart).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.store.models import PaymentRequestIntent

REPORTED_STATUSES = ("sent", "adopted")
NO_POLICY = "(none)"
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class RecoveryRow:
    policy: str
    currency: str
    attempt_number: int
    asked: int
    asked_cents: int
    paid: int
    partially_paid: int
    recovered_cents: int
    recovery_rate: float
    median_seconds_to_pay: float | None
    # The policy's `version` label, else the policy file hash, of the intents counted here.
    version: str | None = None
    #: How they were asked: `payment_request` or `retry_and_email`.
    channel: str = "payment_request"

    @property
    def median_days_to_pay(self) -> float | None:
        if self.median_seconds_to_pay is None:
            return None
        return self.median_seconds_to_pay / SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class DailyRecovery:
    day: date
    currency: str
    recovered_cents: int


@dataclass(frozen=True, slots=True)
class RecoveredPayment:
    """Money that came in after a request: when, in which currency, how much."""

    at: datetime
    currency: str
    recovered_cents: int


@dataclass(frozen=True, slots=True)
class Recovery:
    rows: tuple[RecoveryRow, ...]
    daily: tuple[DailyRecovery, ...]
    payments: tuple[RecoveredPayment, ...]  # oldest first
    first_asked: dict[str, datetime] = field(default_factory=dict)  # currency -> first sent_at

    def totals(self) -> dict[str, tuple[int, int]]:
        """Currency -> (asked cents, recovered cents), over every policy and attempt."""
        result: dict[str, tuple[int, int]] = {}
        for row in self.rows:
            asked, recovered = result.get(row.currency, (0, 0))
            result[row.currency] = (asked + row.asked_cents, recovered + row.recovered_cents)
        return dict(sorted(result.items()))


@dataclass(frozen=True, slots=True)
class _Sent:
    policy: str
    currency: str
    attempt_number: int
    amount_cents: int
    outcome: str | None
    recovered_cents: int
    sent_at: datetime
    settled_at: datetime | None
    version: str | None = None
    channel: str = "payment_request"


def recovery(session: Session, *, since: datetime | None) -> Recovery:
    """Sent and adopted intents with `sent_at >= since` (all if None), aggregated."""
    intent = PaymentRequestIntent
    statement = select(
        intent.policy,
        intent.currency,
        intent.attempt_number,
        intent.amount_cents,
        intent.outcome,
        intent.recovered_cents,
        intent.sent_at,
        intent.resolved_at,
        intent.updated_at,
        intent.policy_version,
        intent.policy_hash,
        intent.channel,
    ).where(intent.status.in_(REPORTED_STATUSES), intent.sent_at.is_not(None))
    if since is not None:
        statement = statement.where(intent.sent_at >= since)
    sent = [
        _Sent(
            policy=row.policy or NO_POLICY,
            currency=row.currency,
            attempt_number=row.attempt_number,
            amount_cents=row.amount_cents,
            outcome=row.outcome,
            recovered_cents=row.recovered_cents or 0,
            sent_at=row.sent_at,
            # A partial payment has no resolution time: its last update is when it came in.
            settled_at=row.resolved_at or (row.updated_at if row.recovered_cents else None),
            version=row.policy_version or row.policy_hash,
            channel=row.channel,
        )
        for row in session.execute(statement)
        if row.sent_at is not None
    ]
    payments = sorted(
        (
            RecoveredPayment(item.settled_at, item.currency, item.recovered_cents)
            for item in sent
            if item.recovered_cents > 0 and item.settled_at is not None
        ),
        key=lambda payment: (payment.at, payment.currency),
    )
    first_asked: dict[str, datetime] = {}
    for item in sent:
        if item.currency not in first_asked or item.sent_at < first_asked[item.currency]:
            first_asked[item.currency] = item.sent_at
    return Recovery(
        rows=tuple(_aggregate(sent)),
        daily=tuple(_daily(payments)),
        payments=tuple(payments),
        first_asked=first_asked,
    )


@dataclass(frozen=True, slots=True)
class RecoveredSoFar:
    currency: str
    asked: int  # payment requests sent or adopted
    paid: int  # of which fully paid
    asked_cents: int
    recovered_cents: int


def recovered_so_far(session: Session) -> list[RecoveredSoFar]:
    """Per currency, over every request ever sent: one aggregate query (the live view)."""
    intent = PaymentRequestIntent
    rows = session.execute(
        select(
            intent.currency,
            func.count(),
            func.count().filter(intent.outcome == "paid"),
            func.coalesce(func.sum(intent.amount_cents), 0),
            func.coalesce(func.sum(intent.recovered_cents), 0),
        )
        .where(intent.status.in_(REPORTED_STATUSES))
        .group_by(intent.currency)
        .order_by(intent.currency)
    ).all()
    return [
        RecoveredSoFar(currency, int(asked), int(paid), int(asked_cents), int(recovered or 0))
        for currency, asked, paid, asked_cents, recovered in rows
    ]


def _aggregate(sent: Iterable[_Sent]) -> list[RecoveryRow]:
    groups: dict[tuple[str, str, str, int, str], list[_Sent]] = defaultdict(list)
    for item in sent:
        key = (item.policy, item.version or "", item.currency, item.attempt_number, item.channel)
        groups[key].append(item)
    rows = []
    for (policy, version, currency, attempt, channel), items in sorted(groups.items()):
        asked_cents = sum(item.amount_cents for item in items)
        recovered = sum(item.recovered_cents for item in items)
        paid = [item for item in items if item.outcome == "paid"]
        durations = [
            (item.settled_at - item.sent_at).total_seconds()
            for item in paid
            if item.settled_at is not None
        ]
        rows.append(
            RecoveryRow(
                policy=policy,
                currency=currency,
                attempt_number=attempt,
                asked=len(items),
                asked_cents=asked_cents,
                paid=len(paid),
                partially_paid=sum(1 for item in items if item.outcome == "partially_paid"),
                recovered_cents=recovered,
                recovery_rate=round(recovered / asked_cents, 4) if asked_cents > 0 else 0.0,
                median_seconds_to_pay=statistics.median(durations) if durations else None,
                version=version or None,
                channel=channel,
            )
        )
    return rows


def _daily(payments: Iterable[RecoveredPayment]) -> list[DailyRecovery]:
    totals: dict[tuple[date, str], int] = defaultdict(int)
    for payment in payments:
        totals[(payment.at.astimezone(UTC).date(), payment.currency)] += payment.recovered_cents
    return [
        DailyRecovery(day=day, currency=currency, recovered_cents=cents)
        for (day, currency), cents in sorted(totals.items())
    ]


def requests_sent_since(session: Session, *, since: datetime) -> int:
    """Payment requests created (sent or adopted) at or after `since`."""
    intent = PaymentRequestIntent
    count = session.scalar(
        select(func.count()).where(intent.status.in_(REPORTED_STATUSES), intent.sent_at >= since)
    )
    return int(count or 0)
