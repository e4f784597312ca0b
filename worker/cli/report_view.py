"""Terminal renderings of `dunning status` and `dunning report` (rich tables)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from worker.read.actions import ActionItem
from worker.read.intents import IntentLine
from worker.read.runs import RunLine
from worker.services.report import (
    HOLDOUT_HEADERS,
    FinanceReport,
    counted,
    format_cents,
    format_money,
    format_rate,
    format_time,
    holdout_cells,
    rate,
)
from worker.services.report_html import (
    ACTION_HEADERS,
    RECOVERY_HEADERS,
    action_cells,
    recovery_cells,
)
from worker.services.status import StatusReport
from worker.store.ageing import BUCKET_LABELS


def _table(title: str, columns: Iterable[str], numeric: Iterable[str] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    right = set(numeric)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def skips_text(skips: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in skips.items()) or "-"


def runs_table(runs: list[RunLine], title: str = "Last sweeps") -> Table:
    numeric = ("Invoices", "Groups", "Intents", "Sent", "Resched.", "Refused", "In flight")
    table = _table(
        title,
        ("Run", "Started", "Trigger", "Status", *numeric, "Skips by reason"),
        numeric,
    )
    for run in runs:
        table.add_row(
            f"#{run.id}",
            format_time(run.started_at),
            run.trigger,
            run.status,
            str(run.invoices_seen),
            str(run.groups),
            str(run.intents_created),
            str(run.sends.sent),
            str(run.sends.rescheduled),
            str(run.sends.refused),
            str(run.sends.in_flight),
            skips_text(run.skips) + (f"\nerror: {run.error}" if run.error else ""),
        )
    return table


def actions_table(items: list[ActionItem]) -> Table:
    table = _table("Needs a human", ACTION_HEADERS, ("Amount",))
    for cells in action_cells(items):
        table.add_row(*cells)
    return table


def intents_table(title: str, lines: list[IntentLine]) -> Table:
    table = _table(
        title, ("Id", "Run", "Customer", "Amount", "Attempt", "Status", "Outcome"), ("Amount",)
    )
    for line in lines:
        table.add_row(
            str(line.id),
            f"#{line.run_id}" if line.run_id else "-",
            line.external_customer_id,
            format_money(line.amount_cents, line.currency),
            str(line.attempt_number),
            line.status,
            line.outcome or "-",
        )
    return table


STEP_NAMES = {"retry": "payment retries", "link": "payment links", "email": "emails"}


def status_view(report: StatusReport) -> RenderableType:
    counts = ", ".join(f"{name} {count}" for name, count in report.intent_counts.items() if count)
    queue = report.queue
    channels = "; ".join(
        f"{channel.replace('_', ' ')}: "
        + ", ".join(f"{status} {count}" for status, count in statuses.items())
        for channel, statuses in report.by_channel.items()
    )
    steps = "; ".join(
        f"{STEP_NAMES.get(kind, kind)} "
        + ", ".join(f"{status} {count}" for status, count in statuses.items())
        for kind, statuses in report.channel_steps.items()
    )
    return Group(
        Text(f"Intents: {counts or 'none'}"),
        Text(f"By channel: {channels or 'none'}"),
        *([Text(f"Retry-and-email steps: {steps}")] if steps else []),
        Text(
            f"Sends: {queue.in_flight} in flight ({queue.sending} being sent, {queue.due} due), "
            f"{queue.waiting} waiting for a later try, {queue.needs_review} needing review, "
            f"{queue.blocked} blocked"
        ),
        runs_table(report.last_sweeps),
        actions_table(report.actions) if report.actions else Text("Nothing needs a human."),
        intents_table("Open intents", report.open_intents),
    )


def report_view(report: FinanceReport) -> RenderableType:
    parts: list[RenderableType] = []
    overdue = report.overdue
    if overdue is None:
        parts.append(Text("Overdue now: no full sweep has run yet."))
    else:
        table = _table(
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
    totals = _table(
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
    rows = _table("By policy, currency and attempt", RECOVERY_HEADERS, RECOVERY_HEADERS[3:])
    for cells in recovery_cells(report):
        rows.add_row(*cells)
    parts.append(rows if report.recovery.rows else Text("No payment requests in this period."))
    if report.holdouts:
        holdouts = _table("Holdouts: dunned against held out", HOLDOUT_HEADERS)
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
