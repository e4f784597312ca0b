"""`dunning status` and `dunning report`: what the ledger says, for people and for scripts.

- `dunning status [--json]`: intents per status, the send queue, the last sweeps (what became
  of their intents, whoever sent them, and their skips by reason), who needs a human.
- `dunning report [--since DATE] [--json | --csv | --html FILE]`: overdue now by currency
  with ageing buckets; asked / paid / recovered / rate / median time to pay per policy,
  currency and attempt; the action list; what the next sweep will ask. `--html` writes one
  self-contained page with charts.
Both read the database only (no Lago call, LAGO_API_URL not needed).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from config import Settings
from worker.cli.common import cli_settings, out
from worker.cli.errors import EXIT_USAGE, fail
from worker.cli.status_view import status_view
from worker.services.status import build_status

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _engine(settings: Settings) -> Engine:
    from worker.store.migrate import current_engine

    return current_engine(settings)


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
    """Intents, the send queue, the last sweeps and who needs a human."""
    # Nothing `status` runs logs (errors are one line on stderr): logging stays unconfigured.
    engine = _engine(cli_settings(logs=False))
    try:
        result = build_status(engine, now=datetime.now(UTC))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    out.print(status_view(result))


def report(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only requests sent on or after this date (YYYY-MM-DD).", show_default=False
        ),
    ] = None,
    as_json: JsonFlag = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print one CSV table (a `section` column per row).")
    ] = False,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Write a self-contained HTML report to this file.", show_default=False
        ),
    ] = None,
) -> None:
    """Overdue now (ageing), recovery per policy/currency/attempt, who needs a human, next sweep."""
    # Imported here: `dunning status` shares this module and needs none of the report's
    # modules (policies, holdout statistics, CSV and HTML renderers).
    from worker.cli.report_view import report_view
    from worker.services.report import build_report, next_sweep_at
    from worker.services.report_csv import render_csv
    from worker.services.report_html import render_html

    if sum((as_json, as_csv, html_file is not None)) > 1:
        fail("use one of --json, --csv or --html", exit_code=EXIT_USAGE)
    since_at = parse_since(since)
    settings = cli_settings(quiet_logs=True)
    now = datetime.now(UTC)
    engine = _engine(settings)
    try:
        result = build_report(
            engine, since=since_at, now=now, next_sweep_at=next_sweep_at(settings, now)
        )
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    elif as_csv:
        typer.echo(render_csv(result), nl=False)
    elif html_file is not None:
        try:
            html_file.write_text(render_html(result), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html_file}: {exc.strerror or exc}")
        typer.echo(f"wrote {html_file}")
    else:
        out.print(report_view(result))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("report")(report)
