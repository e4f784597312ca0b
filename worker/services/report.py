"""`dunning report`: how well dunning recovers money, per policy (and version), currency and
attempt number, and, for policies with a holdout, dunned against held-out groups.

For the payment requests we sent or adopted since a date:
- asked: how many, and the amount asked (what was due on the dunned invoices);
- paid: how many were fully paid; partially paid ones count in the recovered amount;
- recovered: the amount paid after the request (see `reconcile_outcomes`);
- recovery rate: recovered amount / asked amount;
- median time to recover: resolved_at - sent_at over the fully paid ones.
Plus a daily series of the recovered amount per currency for the chart.

`render_html` writes ONE self-contained HTML file: inline CSS, the table, and inline SVG bar
charts drawn here (one per currency: amounts of different currencies do not share an axis).
No scripts, fonts, images or other external assets.
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from worker.services.holdout_stats import HoldoutComparison, holdout_comparison
from worker.store.db import read_session
from worker.store.models import PaymentRequestIntent

REPORTED_STATUSES = ("sent", "adopted")
NO_POLICY = "(none)"


@dataclass(frozen=True, slots=True)
class ReportRow:
    policy: str
    currency: str
    attempt_number: int
    asked: int
    asked_cents: int
    paid: int
    partially_paid: int
    recovered_cents: int
    recovery_rate: float
    median_time_to_recover_s: float | None
    # The policy's `version` label, else the policy file hash, of the intents counted here.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class DailyRecovery:
    day: date
    currency: str
    recovered_cents: int


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime | None
    generated_at: datetime
    rows: list[ReportRow]
    daily: list[DailyRecovery]
    holdouts: list[HoldoutComparison] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "holdouts": [comparison.to_json() for comparison in self.holdouts],
            "since": self.since.isoformat() if self.since else None,
            "generated_at": self.generated_at.isoformat(),
            "rows": [asdict(row) for row in self.rows],
            "daily": [
                {
                    "day": item.day.isoformat(),
                    "currency": item.currency,
                    "recovered_cents": item.recovered_cents,
                }
                for item in self.daily
            ],
        }


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


def build_report(engine: Engine, *, since: datetime | None, now: datetime) -> Report:
    """Aggregate the ledger's sent/adopted intents with `sent_at >= since` (all if None)."""
    with read_session(engine) as session:
        statement = select(PaymentRequestIntent).where(
            PaymentRequestIntent.status.in_(REPORTED_STATUSES),
            PaymentRequestIntent.sent_at.is_not(None),
        )
        if since is not None:
            statement = statement.where(PaymentRequestIntent.sent_at >= since)
        sent = [
            _Sent(
                policy=row.policy or NO_POLICY,
                currency=row.currency,
                attempt_number=row.attempt_number,
                amount_cents=row.amount_cents,
                outcome=row.outcome,
                recovered_cents=row.recovered_cents or 0,
                sent_at=row.sent_at,
                settled_at=row.resolved_at or (row.updated_at if row.recovered_cents else None),
                version=row.policy_version or row.policy_hash,
            )
            for row in session.execute(statement).scalars()
            if row.sent_at is not None
        ]
    return Report(
        since=since,
        generated_at=now,
        rows=aggregate(sent),
        daily=daily_series(sent),
        holdouts=holdout_comparison(engine, since=since),
    )


def aggregate(sent: Iterable[_Sent]) -> list[ReportRow]:
    groups: dict[tuple[str, str, str, int], list[_Sent]] = defaultdict(list)
    for item in sent:
        groups[(item.policy, item.version or "", item.currency, item.attempt_number)].append(item)
    rows = []
    for (policy, version, currency, attempt), items in sorted(groups.items()):
        asked_cents = sum(item.amount_cents for item in items)
        recovered = sum(item.recovered_cents for item in items)
        paid = [item for item in items if item.outcome == "paid"]
        durations = [
            (item.settled_at - item.sent_at).total_seconds()
            for item in paid
            if item.settled_at is not None
        ]
        rows.append(
            ReportRow(
                policy=policy,
                currency=currency,
                attempt_number=attempt,
                asked=len(items),
                asked_cents=asked_cents,
                paid=len(paid),
                partially_paid=sum(1 for item in items if item.outcome == "partially_paid"),
                recovered_cents=recovered,
                recovery_rate=round(recovered / asked_cents, 4) if asked_cents > 0 else 0.0,
                median_time_to_recover_s=statistics.median(durations) if durations else None,
                version=version or None,
            )
        )
    return rows


def daily_series(sent: Iterable[_Sent]) -> list[DailyRecovery]:
    totals: dict[tuple[date, str], int] = defaultdict(int)
    for item in sent:
        if item.recovered_cents > 0 and item.settled_at is not None:
            totals[(item.settled_at.astimezone(UTC).date(), item.currency)] += item.recovered_cents
    return [
        DailyRecovery(day=day, currency=currency, recovered_cents=cents)
        for (day, currency), cents in sorted(totals.items())
    ]


# -- formatting -----------------------------------------------------------------------------


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{part:02d}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_rate(rate: float) -> str:
    return f"{rate * 100:.1f}%"


TABLE_HEADERS = (
    "Policy",
    "Version",
    "Currency",
    "Attempt",
    "Asked",
    "Asked amount",
    "Paid",
    "Partially paid",
    "Recovered",
    "Recovery rate",
    "Median time to recover",
)


def table_cells(row: ReportRow) -> tuple[str, ...]:
    return (
        row.policy,
        row.version or "-",
        row.currency,
        str(row.attempt_number),
        str(row.asked),
        format_cents(row.asked_cents),
        str(row.paid),
        str(row.partially_paid),
        format_cents(row.recovered_cents),
        format_rate(row.recovery_rate),
        format_duration(row.median_time_to_recover_s),
    )


# -- the HTML report ------------------------------------------------------------------------

CHART_WIDTH = 640
CHART_HEIGHT = 220
MARGIN_LEFT = 80
MARGIN_BOTTOM = 40
MARGIN_TOP = 16
MARGIN_RIGHT = 16

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
h1 { font-size: 1.5rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin-top: 1rem; }
th, td { border: 1px solid #cbd2d9; padding: 0.35rem 0.6rem; }
th { background: #f0f4f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figcaption { font-weight: 600; margin-bottom: 0.25rem; }
.bar { fill: #2f80ed; }
.axis { stroke: #52606d; stroke-width: 1; }
.grid { stroke: #e4e7eb; stroke-width: 1; }
.label { font-size: 11px; fill: #52606d; }
p.empty { color: #7b8794; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(report: Report) -> str:
    since = report.since.date().isoformat() if report.since else "the beginning"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>Dunning recovery report</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>Dunning recovery report</h1>",
        f"<p>Payment requests sent since {_e(since)}; generated "
        f"{_e(report.generated_at.isoformat(timespec='seconds'))}.</p>",
        "<h2>By policy, currency and attempt</h2>",
        _table_html(report.rows),
        "<h2>Holdouts: dunned against held out</h2>",
        _holdouts_html(report.holdouts),
        "<h2>Recovered amount per day</h2>",
        *_charts_html(report.daily),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _table_html(rows: Sequence[ReportRow]) -> str:
    if not rows:
        return '<p class="empty">No payment requests in this period.</p>'
    numeric = {4, 5, 6, 7, 8, 9, 10}
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in TABLE_HEADERS)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(cell)}</td>' if index in numeric else f"<td>{_e(cell)}</td>"
            for index, cell in enumerate(table_cells(row))
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table id="recovery"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


HOLDOUT_HEADERS = (
    "Policy",
    "Arm",
    "Groups",
    "Paid",
    "Paid share (95% CI)",
    "Recovered / asked",
    "Mean days to pay (95% CI)",
    "Median days",
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def holdout_cells(comparison: HoldoutComparison) -> list[tuple[str, ...]]:
    """Three rows per policy: dunned, held out, and the difference."""
    rows: list[tuple[str, ...]] = []
    for name, arm in (("dunned", comparison.dunned), ("held out", comparison.held_out)):
        low, high = arm.paid_share_ci
        days = "-"
        if arm.mean_days_to_pay is not None:
            days = f"{arm.mean_days_to_pay:.1f}"
            if arm.mean_days_ci is not None:
                days += f" ({arm.mean_days_ci[0]:.1f} to {arm.mean_days_ci[1]:.1f})"
        rows.append(
            (
                comparison.policy,
                name,
                str(arm.episodes),
                str(arm.paid),
                f"{_pct(arm.paid_share)} ({_pct(low)} to {_pct(high)})",
                _pct(arm.recovered_cents / arm.amount_cents) if arm.amount_cents else "-",
                days,
                f"{arm.median_days_to_pay:.1f}" if arm.median_days_to_pay is not None else "-",
            )
        )
    low, high = comparison.paid_share_difference_ci
    days = "-"
    if comparison.days_difference is not None and comparison.days_difference_ci is not None:
        d_low, d_high = comparison.days_difference_ci
        days = f"{comparison.days_difference:+.1f} ({d_low:+.1f} to {d_high:+.1f})"
    rows.append(
        (
            comparison.policy,
            "difference",
            "",
            "",
            f"{comparison.paid_share_difference * 100:+.1f} pts "
            f"({low * 100:+.1f} to {high * 100:+.1f})",
            "",
            days,
            "",
        )
    )
    return rows


def _holdouts_html(comparisons: Sequence[HoldoutComparison]) -> str:
    if not comparisons:
        return '<p class="empty">No policy held customers out in this period.</p>'
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in HOLDOUT_HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>"
        for comparison in comparisons
        for cells in holdout_cells(comparison)
    )
    return f'<table id="holdouts"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _charts_html(daily: Sequence[DailyRecovery]) -> list[str]:
    if not daily:
        return ['<p class="empty">Nothing recovered in this period.</p>']
    by_currency: dict[str, dict[date, int]] = defaultdict(dict)
    for item in daily:
        by_currency[item.currency][item.day] = item.recovered_cents
    first = min(item.day for item in daily)
    last = max(item.day for item in daily)
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    return [
        bar_chart_svg(currency, [(day, series.get(day, 0)) for day in days])
        for currency, series in sorted(by_currency.items())
    ]


def bar_chart_svg(currency: str, points: Sequence[tuple[date, int]]) -> str:
    """One inline SVG bar chart: a bar per day, y axis in the currency's units."""
    top = max((cents for _, cents in points), default=0) or 1
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.7, 1.0)
    base_y = MARGIN_TOP + plot_h
    shapes: list[str] = []
    for step in range(5):
        value = top * step / 4
        y = base_y - plot_h * step / 4
        shapes.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" y1="{y:.1f}" '
            f'x2="{CHART_WIDTH - MARGIN_RIGHT}" y2="{y:.1f}"/>'
        )
        shapes.append(
            f'<text class="label" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(format_cents(round(value)))}</text>"
        )
    label_every = max(1, len(points) // 8)
    for index, (day, cents) in enumerate(points):
        height = plot_h * cents / top
        x = MARGIN_LEFT + index * slot + (slot - bar_w) / 2
        shapes.append(
            f'<rect class="bar" x="{x:.1f}" y="{base_y - height:.1f}" width="{bar_w:.1f}" '
            f'height="{height:.1f}"><title>{_e(day.isoformat())}: '
            f"{_e(format_cents(cents))} {_e(currency)}</title></rect>"
        )
        if index % label_every == 0:
            shapes.append(
                f'<text class="label" x="{x + bar_w / 2:.1f}" y="{base_y + 16}" '
                f'text-anchor="middle">{_e(day.strftime("%m-%d"))}</text>'
            )
    shapes.append(
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{base_y}" '
        f'x2="{CHART_WIDTH - MARGIN_RIGHT}" y2="{base_y}"/>'
    )
    shapes.append(
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
        f'x2="{MARGIN_LEFT}" y2="{base_y}"/>'
    )
    title = f"Recovered per day ({currency})"
    return (
        f'<figure data-currency="{_e(currency)}"><figcaption>{_e(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
        f'width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'
        f"{''.join(shapes)}</svg></figure>"
    )
