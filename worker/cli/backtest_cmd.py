"""`dunning backtest --policy A.yaml [--against B.yaml] --from DATE --to DATE [--json]`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from config.policies import PolicyFileError, load_policies
from worker.cli.common import cli_settings, err, out
from worker.cli.errors import EXIT_USAGE, fail
from worker.lago.client import LagoClient
from worker.lago.ratelimit import limiter_from_settings
from worker.policy.backtest_figures import WINDOWS, Figures
from worker.services.backtest import CAVEATS, BacktestError, BacktestResult, run_backtest
from worker.services.backtest_history import HistoryError, load_history


def _day(value: str, option: str, *, end: bool = False) -> datetime:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        fail(f"invalid {option} {value!r}: use a date like 2026-06-01", exit_code=EXIT_USAGE)
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) - timedelta(microseconds=1) if end else moment


def _money(amounts: dict[str, int]) -> str:
    return ", ".join(f"{c / 100:,.0f} {cur}" for cur, c in sorted(amounts.items())) or "-"


def _rows(item: Figures) -> list[str]:
    return [
        str(item.touches),
        str(item.customers_touched),
        str(item.groups_touched),
        _money(item.amount_asked_cents),
        *(f"{item.paid_within[days] * 100:.1f}%" for days in WINDOWS),
        str(item.held_out_groups),
        str(item.censored_touches),
    ]


LABELS = (
    "touches",
    "customers touched",
    "groups touched",
    "amount asked",
    *(f"touched groups paid <= {days} d" for days in WINDOWS),
    "held-out groups",
    "touches with < 30 d of history after",
)


def print_backtest(result: BacktestResult) -> None:
    history = result.history
    out.print(
        f"history: {len(history.invoices)} invoices from {history.source} "
        f"(fetched {history.fetched_at.isoformat(timespec='minutes')}, "
        f"{history.api_calls} API calls); replay {result.start.date()} .. {result.end.date()}",
        markup=False,
    )
    table = Table(title="dunning backtest", title_justify="left")
    table.add_column("figure")
    for run in result.runs:
        table.add_column(f"{run.label} ({run.version_hash})", justify="right")
    if len(result.runs) == 2:
        table.add_column("difference", justify="right")
    table.add_column("recorded requests", justify="right")
    columns = [_rows(run.figures) for run in result.runs]
    recorded = _rows(result.recorded)
    for index, label in enumerate(LABELS):
        cells = [column[index] for column in columns]
        if len(result.runs) == 2:
            cells.append(_difference(result.runs[0].figures, result.runs[1].figures, index))
        table.add_row(label, *cells, recorded[index])
    out.print(table)
    for caveat in CAVEATS:
        out.print(f"note: {caveat}", markup=False)


def _difference(a: Figures, b: Figures, index: int) -> str:
    if index == 3:
        currencies = sorted(set(a.amount_asked_cents) | set(b.amount_asked_cents))
        deltas = {
            cur: b.amount_asked_cents.get(cur, 0) - a.amount_asked_cents.get(cur, 0)
            for cur in currencies
        }
        return ", ".join(f"{c / 100:+,.0f} {cur}" for cur, c in deltas.items()) or "-"
    if 4 <= index < 4 + len(WINDOWS):
        days = WINDOWS[index - 4]
        return f"{(b.paid_within[days] - a.paid_within[days]) * 100:+.1f} pts"
    numbers = (
        a.touches, a.customers_touched, a.groups_touched, 0, 0, 0, 0,
        a.held_out_groups, a.censored_touches,
    )  # fmt: skip
    others = (
        b.touches, b.customers_touched, b.groups_touched, 0, 0, 0, 0,
        b.held_out_groups, b.censored_touches,
    )  # fmt: skip
    return f"{others[index] - numbers[index]:+d}"


def backtest(
    policy: Annotated[Path, typer.Option("--policy", help="The policy file to replay.")],
    start: Annotated[str, typer.Option("--from", help="First day replayed (YYYY-MM-DD, UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last day replayed (YYYY-MM-DD, UTC).")],
    against: Annotated[
        Path | None,
        typer.Option("--against", help="A second policy file to compare with.", show_default=False),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Fetch the history from Lago again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay policies over Lago's history: touches, amount asked, how soon touched groups paid."""
    start_at, end_at = _day(start, "--from"), _day(end, "--to", end=True)
    files = [policy] + ([against] if against is not None else [])
    try:
        loaded = [(str(path), load_policies(path)) for path in files]
    except PolicyFileError as exc:
        fail(str(exc), exit_code=EXIT_USAGE)
    settings = cli_settings(policy=policy, quiet_logs=True)
    if settings.lago_api_url is None:
        fail("LAGO_API_URL is not set: point it at your Lago API", exit_code=EXIT_USAGE)
    # Lago only (no database): the history is read through the client and cached.
    client = LagoClient.from_settings(
        settings, base_url=settings.lago_api_url, rate_limiter=limiter_from_settings(settings)
    )
    try:
        if not as_json:
            err.print("reading the billing history...", highlight=False)
        history = load_history(
            client,
            data_dir=settings.data_dir,
            base_url=settings.lago_api_url,
            now=datetime.now(UTC),
            refresh=refresh,
        )
        result = run_backtest(history, loaded, start=start_at, end=end_at)
    except (HistoryError, BacktestError) as exc:
        fail(str(exc), exit_code=EXIT_USAGE)
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        print_backtest(result)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
