"""Terminal rendering of `dunning status` (rich tables), and the tables `dunning report` and
the live view of `dunning run` share with it.

Kept apart from `report_view` so `dunning status` loads no report module (policies, holdout
statistics, the HTML renderer).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from worker.read.actions import ActionItem
from worker.read.intents import IntentLine
from worker.read.runs import RunLine
from worker.services.report_format import ACTION_HEADERS, action_cells, format_money, format_time
from worker.services.status import StatusReport


def titled_table(title: str, columns: Iterable[str], numeric: Iterable[str] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    right = set(numeric)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def skips_text(skips: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in skips.items()) or "-"


def runs_table(runs: list[RunLine], title: str = "Last sweeps") -> Table:
    numeric = ("Invoices", "Groups", "Intents", "Sent", "Resched.", "Refused", "In flight")
    table = titled_table(
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
    table = titled_table("Needs a human", ACTION_HEADERS, ("Amount",))
    for cells in action_cells(items):
        table.add_row(*cells)
    return table


def intents_table(title: str, lines: list[IntentLine]) -> Table:
    table = titled_table(
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
