"""`dunning status` and `dunning report`: what the ledger says, for people and for scripts.

- `dunning status [--json]`: open intents, intents needing review (with the reason), paused
  customers, the last sweeps. Rich tables on a terminal, plain columns otherwise.
- `dunning report [--since DATE] [--json | --html FILE]`: recovery per policy, currency and
  attempt number; `--html` writes one self-contained file with an inline SVG chart.
Both read the database only (no Lago call, LAGO_API_URL not needed).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from worker.cli.common import cli_settings, out
from worker.cli.errors import EXIT_USAGE, fail
from worker.services.report import (
    HOLDOUT_HEADERS,
    TABLE_HEADERS,
    build_report,
    holdout_cells,
    render_html,
    table_cells,
)
from worker.services.report import format_cents as cents
from worker.services.status import IntentLine, StatusReport, build_status

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _engine() -> Engine:
    from worker.store.migrate import current_engine

    return current_engine(cli_settings(quiet_logs=True))


def parse_since(value: str | None) -> datetime | None:
    """`--since` as a date (2026-11-01) or an ISO 8601 instant; UTC when no zone is given."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(
            f"invalid --since {value!r}: use a date like 2026-11-01 (or an ISO 8601 time)",
            exit_code=EXIT_USAGE,
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def status(as_json: JsonFlag = False) -> None:
    """Open intents, intents needing review, paused customers and the last sweeps."""
    engine = _engine()
    try:
        report = build_status(engine, now=datetime.now(UTC))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    _print_status(report)


def _print_status(report: StatusReport) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in report.intent_counts.items() if count)
    out.print(f"Intents: {counts or 'none'}")

    def intents_table(title: str, lines: list[IntentLine], with_reason: bool) -> Table:
        table = Table(title=title, title_justify="left")
        for column in ("Id", "Customer", "Currency", "Amount", "Attempt", "Status", "Outcome"):
            table.add_column(column)
        if with_reason:
            table.add_column("Reason")
        for line in lines:
            cells = [
                str(line.id),
                line.external_customer_id,
                line.currency,
                cents(line.amount_cents),
                str(line.attempt_number),
                line.status,
                line.outcome or "-",
            ]
            if with_reason:
                cells.append(line.reason or "-")
            table.add_row(*cells)
        return table

    out.print(intents_table("Open intents", report.open_intents, with_reason=False))
    out.print(intents_table("Needs review", report.needs_review, with_reason=True))
    paused = Table(title="Paused customers", title_justify="left")
    for column in ("Customer", "Since", "Until", "Reason"):
        paused.add_column(column)
    for customer in report.paused_customers:
        paused.add_row(
            customer.external_customer_id,
            customer.since.isoformat(timespec="seconds"),
            customer.until.isoformat(timespec="minutes") if customer.until else "resume",
            customer.reason or "-",
        )
    out.print(paused)
    sweeps = Table(title="Last sweeps", title_justify="left")
    for column in ("Run", "Trigger", "Status", "Started", "Invoices", "Groups", "Sent", "Calls"):
        sweeps.add_column(column)
    sweeps.add_column("Error")
    for run in report.last_sweeps:
        sweeps.add_row(
            str(run.id),
            run.trigger,
            run.status,
            run.started_at.isoformat(timespec="seconds"),
            str(run.invoices_seen),
            str(run.groups),
            str(run.requests_sent),
            str(run.api_calls),
            run.error or "-",
        )
    out.print(sweeps)


def report(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only requests sent on or after this date (YYYY-MM-DD).", show_default=False
        ),
    ] = None,
    as_json: JsonFlag = False,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Write a self-contained HTML report to this file.", show_default=False
        ),
    ] = None,
) -> None:
    """Recovery per policy, currency and attempt: asked, paid, recovered, rate, time to pay."""
    if as_json and html_file is not None:
        fail("use either --json or --html, not both", exit_code=EXIT_USAGE)
    since_at = parse_since(since)
    engine = _engine()
    try:
        result = build_report(engine, since=since_at, now=datetime.now(UTC))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    if html_file is not None:
        try:
            html_file.write_text(render_html(result), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html_file}: {exc.strerror or exc}")
        typer.echo(f"wrote {html_file}")
        return
    table = Table(title="Recovery by policy, currency and attempt", title_justify="left")
    for header in TABLE_HEADERS:
        table.add_column(header)
    for row in result.rows:
        table.add_row(*table_cells(row))
    if not result.rows:
        out.print("No payment requests in this period.")
    else:
        out.print(table)
    if result.holdouts:
        holdouts = Table(title="Holdouts: dunned against held out", title_justify="left")
        for header in HOLDOUT_HEADERS:
            holdouts.add_column(header)
        for comparison in result.holdouts:
            for cells in holdout_cells(comparison):
                holdouts.add_row(*cells)
        out.print(holdouts)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("report")(report)
