"""Terminal rendering of `dunning report` (rich tables); `dunning status` is in `status_view`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from worker.cli.status_view import actions_table, titled_table
from worker.services.report import HOLDOUT_HEADERS, FinanceReport, holdout_cells
from worker.services.report_format import (
    counted,
    format_cents,
    format_money,
    format_rate,
    format_time,
    rate,
)
from worker.services.report_html import RECOVERY_HEADERS, recovery_cells
from worker.store.ageing import BUCKET_LABELS


def report_view(report: FinanceReport) -> RenderableType:
    parts: list[RenderableType] = []
    overdue = report.overdue
    if overdue is None:
        parts.append(Text("Overdue now: no full sweep has run yet."))
    else:
        table = titled_table(
            f"Overdue now (sweep #{overdue.run_id}, {format_time(overdue.taken_at)})",
            ("Currency", *(f"{b} d" for b in BUCKET_LABELS), "Total", "Invoices", "Customers"),
            (*(f"{b} d" for b in BUCKET_LABELS), "Total", "Invoices", "Customers"),
        )
        for currency in overdue.currencies:
            table.add_row(
                currency.currency,
                *(format_cents(bucket.due_cents) for bucket in currency.buckets),
                format_cents(currency.due_cents),
                str(currency.invoices),
                str(currency.customers),
            )
        parts.append(table if overdue.currencies else Text("Overdue now: nothing."))
    totals = titled_table(
        "Recovered", ("Currency", "Asked", "Recovered", "Rate"), ("Asked", "Recovered", "Rate")
    )
    for code, (asked, recovered) in report.recovery.totals().items():
        totals.add_row(
            code,
            format_cents(asked),
            format_cents(recovered),
            format_rate(rate(recovered, asked)),
        )
    parts.append(totals)
    rows = titled_table("By policy, currency and attempt", RECOVERY_HEADERS, RECOVERY_HEADERS[3:])
    for cells in recovery_cells(report):
        rows.add_row(*cells)
    parts.append(rows if report.recovery.rows else Text("No payment requests in this period."))
    if report.holdouts:
        holdouts = titled_table("Holdouts: dunned against held out", HOLDOUT_HEADERS)
        for comparison in report.holdouts:
            for holdout_row in holdout_cells(comparison):
                holdouts.add_row(*holdout_row)
        parts.append(holdouts)
    parts.append(
        actions_table(report.actions) if report.actions else Text("Nothing needs a human.")
    )
    plan = report.next_sweep
    asks = "; ".join(
        f"{counted(n, 'request')} for {format_money(cents, currency)}"
        for currency, (n, cents) in plan.totals().items()
    )
    when = format_time(plan.at) if plan.at else "not scheduled"
    parts.append(Text(f"Next sweep ({when}): {asks or 'nothing to ask'}."))
    return Group(*parts)
