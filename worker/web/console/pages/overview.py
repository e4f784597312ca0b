"""Overview: what is overdue (per currency, ageing), recovered, asked lately, to review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from worker.read.outstanding import overdue_now
from worker.read.recovery import recovery, requests_sent_since
from worker.read.runs import recent_runs, send_queue
from worker.services.report_charts import ageing_bars, cumulative_line


@dataclass(frozen=True, slots=True)
class RecoveredCurrency:
    currency: str
    asked_cents: int
    recovered_cents: int
    rate: float
    chart: Markup


def day_start(now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of `now`'s week."""
    today = day_start(now)
    return today - timedelta(days=today.weekday())


def overview(session: Session, *, now: datetime) -> dict[str, Any]:
    overdue = overdue_now(session)
    recovered = recovery(session, since=None)
    currencies = []
    for currency, (asked, got) in recovered.totals().items():
        points = [(p.at, p.recovered_cents) for p in recovered.payments if p.currency == currency]
        chart = cumulative_line(
            currency, points, end=now, start=recovered.first_asked.get(currency)
        )
        # the exact share, rounded once when shown (a rate rounded first can be 0.1 off)
        share = got / asked if asked > 0 else 0.0
        currencies.append(RecoveredCurrency(currency, asked, got, share, Markup(chart)))  # noqa: S704 - drawn and escaped by report_charts
    ageing = {}
    if overdue is not None:
        for item in overdue.currencies:
            bars = ageing_bars(item.currency, [(b.label, b.due_cents) for b in item.buckets])
            ageing[item.currency] = Markup(bars)  # noqa: S704 - drawn and escaped by report_charts
    return {
        "overdue": overdue,
        "ageing_charts": ageing,
        "runs": recent_runs(session, limit=5),
        "requests_today": requests_sent_since(session, since=day_start(now)),
        "requests_week": requests_sent_since(session, since=week_start(now)),
        "recovered": currencies,
        "queue": send_queue(session, now=now),
    }
