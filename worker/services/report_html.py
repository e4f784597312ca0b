"""The report as ONE self-contained HTML page: inline CSS and SVG, no scripts or assets.

Top to bottom, in the order finance and ops read it: a card per currency (overdue now,
recovered, what the next sweep asks) and the count of items needing a human; overdue by
days past due (chart and table); money recovered over time; the recovery table per policy,
currency and attempt; the action list; the next sweep's asks.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from worker.read.actions import ACTION_KINDS
from worker.read.outstanding import CurrencyOverdue
from worker.services.report import HOLDOUT_HEADERS, FinanceReport, holdout_cells
from worker.services.report_charts import BUCKET_COLOURS, ageing_bars, cumulative_line
from worker.services.report_format import (
    ACTION_HEADERS,
    action_cells,
    counted,
    format_cents,
    format_duration,
    format_money,
    format_rate,
    format_time,
    rate,
)
from worker.store.ageing import BUCKET_LABELS

#: How the summary card counts them: "2 to review, 1 exhausted".
ACTION_COUNTS = {
    "needs_review": "to review",
    "blocked": "blocked",
    "refused": "refused",
    "paused": "paused",
    "exhausted": "exhausted",
}

_STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933;
  background: #f5f7fa; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; }
p.meta { color: #52606d; margin: 0 0 1rem; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: .8rem 1rem;
  min-width: 200px; flex: 1 1 200px; }
.card h3 { margin: 0 0 .4rem; font-size: 1rem; color: #334e68; }
.card .figure { font-size: 1.45rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .figure.overdue { color: #b42318; }
.card .figure.recovered { color: #1f7a4d; }
.card .note { color: #52606d; font-size: .85rem; margin-bottom: .5rem; }
.card.attention .figure { color: #b54708; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(350px, 1fr)); gap: .8rem; }
.charts.wide { grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); }
figure svg { max-width: 100%; height: auto; }
figure { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; margin: 0;
  padding: .6rem .8rem; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
table { border-collapse: collapse; background: #fff; margin-top: .6rem; width: 100%; }
th, td { border: 1px solid #d9e2ec; padding: .35rem .6rem; text-align: left; }
th { background: #f0f4f8; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 1rem; font-size: .85rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem;
  vertical-align: -1px; border-radius: 2px; }
p.empty { color: #7b8794; background: #fff; border: 1px dashed #cbd2d9; border-radius: 8px;
  padding: .8rem 1rem; }
svg .label { font-size: 11px; fill: #52606d; }
svg .amount { font-size: 11px; fill: #1f2933; font-variant-numeric: tabular-nums; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg .axis { stroke: #7b8794; stroke-width: 1; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _currencies(report: FinanceReport) -> list[str]:
    found = (
        {currency.currency for currency in report.overdue.currencies} if report.overdue else set()
    )
    found.update(row.currency for row in report.recovery.rows)
    found.update(report.next_sweep.totals())
    return sorted(found)


def render_html(report: FinanceReport) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Dunning report, {_e(report.generated_at.date().isoformat())}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<h1>Dunning report</h1>",
        f'<p class="meta">{_e(_meta(report))}</p>',
        _cards(report),
        '<section id="overdue"><h2>Overdue now, by days past the due date</h2>',
        _overdue(report),
        "</section>",
        '<section id="recovered"><h2>Recovered over time</h2>',
        _recovered(report),
        "</section>",
        '<section id="recovery"><h2>Asked and recovered, by policy, currency and attempt</h2>',
        _recovery_table(report),
        "</section>",
        '<section id="holdouts-section"><h2>Holdouts: dunned against held out</h2>',
        _holdouts(report),
        "</section>",
        '<section id="actions"><h2>Needs a human</h2>',
        _actions(report),
        "</section>",
        '<section id="next-sweep"><h2>Next sweep</h2>',
        _next_sweep(report),
        "</section>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _meta(report: FinanceReport) -> str:
    since = report.since.date().isoformat() if report.since else "the beginning"
    snapshot = report.overdue
    overdue = (
        f"overdue figures from sweep #{snapshot.run_id} ({format_time(snapshot.taken_at)})"
        if snapshot
        else "no full sweep yet, so no overdue figures"
    )
    return (
        f"Generated {format_time(report.generated_at)} · payment requests sent since {since} · "
        f"{overdue}. Amounts in each currency's units; currencies are never added together."
    )


def _cards(report: FinanceReport) -> str:
    overdue = {c.currency: c for c in report.overdue.currencies} if report.overdue else {}
    totals = report.recovery.totals()
    asks = report.next_sweep.totals()
    cards = []
    for currency in _currencies(report):
        lines = []
        owed = overdue.get(currency)
        if owed is not None:
            oldest = owed.bucket(BUCKET_LABELS[-1]).due_cents
            lines.append(
                f'<div class="figure overdue">{_e(format_cents(owed.due_cents))}</div>'
                f'<div class="note">overdue now · {counted(owed.invoices, "invoice")} · '
                f"{counted(owed.customers, 'customer')} · {_e(format_cents(oldest))} over 90 "
                "days</div>"
            )
        asked, recovered = totals.get(currency, (0, 0))
        if asked:
            lines.append(
                f'<div class="figure recovered">{_e(format_cents(recovered))}</div>'
                f'<div class="note">recovered of {_e(format_cents(asked))} asked · '
                f"{_e(format_rate(rate(recovered, asked)))}</div>"
            )
        else:
            lines.append('<div class="note">no payment request sent in this period</div>')
        count, cents = asks.get(currency, (0, 0))
        lines.append(
            f'<div class="note">next sweep: {counted(count, "request")} · '
            f"{_e(format_cents(cents))}</div>"
        )
        cards.append(
            f'<div class="card" data-currency="{_e(currency)}"><h3>{_e(currency)}</h3>'
            f"{''.join(lines)}</div>"
        )
    kinds = Counter(item.kind for item in report.actions)
    detail = ", ".join(
        f"{kinds[kind]} {ACTION_COUNTS[kind]}" for kind in ACTION_KINDS if kinds[kind]
    )
    cards.append(
        f'<div class="card attention" id="attention"><h3>Needs a human</h3>'
        f'<div class="figure">{sum(kinds.values())}</div>'
        f'<div class="note">{_e(detail or "nothing to do")}</div></div>'
    )
    return f'<section class="cards" id="summary">{"".join(cards)}</section>'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int], **attrs: str
) -> str:
    extra = "".join(f' {name}="{_e(value)}"' for name, value in attrs.items())
    num = ' class="num"'
    head = "".join(
        f'<th scope="col"{num if i in numeric else ""}>{_e(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(cell)}</td>' if i in numeric else f"<td>{_e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table{extra}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _overdue(report: FinanceReport) -> str:
    if report.overdue is None:
        return '<p class="empty">No full sweep has run yet: nothing is known to be overdue.</p>'
    if not report.overdue.currencies:
        return '<p class="empty">Nothing is overdue.</p>'
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{_e(label)} days</span>'
        for label, colour in zip(BUCKET_LABELS, BUCKET_COLOURS, strict=True)
    )
    charts = "".join(
        f'<figure class="ageing" data-currency="{_e(c.currency)}"><figcaption>{_e(c.currency)}: '
        f"{_e(format_cents(c.due_cents))} overdue</figcaption>"
        f"{ageing_bars(c.currency, [(b.label, b.due_cents) for b in c.buckets])}</figure>"
        for c in report.overdue.currencies
    )
    return f'<div class="legend">{legend}</div><div class="charts">{charts}</div>' + _table(
        [
            "Currency",
            *(f"{label} days" for label in BUCKET_LABELS),
            "Total",
            "Invoices",
            "Customers",
        ],
        (_overdue_row(c) for c in report.overdue.currencies),
        numeric=set(range(1, len(BUCKET_LABELS) + 4)),
        id="overdue-table",
    )


def _overdue_row(currency: CurrencyOverdue) -> list[str]:
    return [
        currency.currency,
        *(format_cents(bucket.due_cents) for bucket in currency.buckets),
        format_cents(currency.due_cents),
        str(currency.invoices),
        str(currency.customers),
    ]


def _recovered(report: FinanceReport) -> str:
    series: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for payment in report.recovery.payments:
        series[payment.currency].append((payment.at, payment.recovered_cents))
    if not series:
        return '<p class="empty">Nothing recovered yet in this period.</p>'
    return (
        '<div class="charts wide">'
        + "".join(
            f'<figure class="recovered" data-currency="{_e(currency)}"><figcaption>{_e(currency)}: '
            f"{_e(format_cents(sum(c for _, c in points)))} recovered</figcaption>"
            f"{_line(report, currency, points)}</figure>"
            for currency, points in sorted(series.items())
        )
        + "</div>"
    )


def _line(report: FinanceReport, currency: str, points: list[tuple[datetime, int]]) -> str:
    start = report.recovery.first_asked.get(currency)
    return cumulative_line(currency, points, end=report.generated_at, start=start)


RECOVERY_HEADERS = (
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
    "Median time to pay",
    "Channel",
)


def recovery_cells(report: FinanceReport) -> list[list[str]]:
    return [
        [
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
            format_duration(row.median_seconds_to_pay),
            row.channel.replace("_", " "),
        ]
        for row in report.recovery.rows
    ]


def _recovery_table(report: FinanceReport) -> str:
    if not report.recovery.rows:
        return '<p class="empty">No payment requests in this period.</p>'
    return _table(
        RECOVERY_HEADERS,
        recovery_cells(report),
        numeric={3, 4, 5, 6, 7, 8, 9, 10},
        id="recovery-table",
    )


def _holdouts(report: FinanceReport) -> str:
    if not report.holdouts:
        return '<p class="empty">No policy held customers out in this period.</p>'
    rows = [cells for comparison in report.holdouts for cells in holdout_cells(comparison)]
    return _table(HOLDOUT_HEADERS, rows, numeric={2, 3}, id="holdouts")


def _actions(report: FinanceReport) -> str:
    if not report.actions:
        return '<p class="empty">Nothing needs a human.</p>'
    return _table(ACTION_HEADERS, action_cells(report.actions), numeric={2}, id="actions-table")


def _next_sweep(report: FinanceReport) -> str:
    plan = report.next_sweep
    when = format_time(plan.at) if plan.at else "not scheduled"
    totals = plan.totals()
    summary = (
        "; ".join(
            f"{counted(n, 'request')} for {format_money(cents, currency)}"
            for currency, (n, cents) in totals.items()
        )
        or "nothing"
    )
    text = f'<p id="next-sweep-summary">At {_e(when)}: {_e(summary)}.</p>'
    if not plan.asks:
        return text
    rows = [
        [
            "retry" if ask.why == "retry" else "new attempt",
            ask.external_customer_id,
            format_money(ask.amount_cents, ask.currency),
            ask.policy or "-",
            format_time(ask.due_at),
        ]
        for ask in plan.asks[:100]
    ]
    return text + _table(
        ["Why", "Customer", "Amount", "Policy", "Due since"],
        rows,
        numeric={2},
        id="next-sweep-table",
    )
