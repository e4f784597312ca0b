"""The live panel `dunning run` shows on a terminal instead of the raw log stream.

What it runs (Lago, policy, broker, database, where the logs go), the last sweeps (time,
invoices seen, groups, requests created, rescheduled, refused, skips by reason), the sends in
flight, what needs review, and when the next sweep is due. Every figure is read from the
ledger through `worker.read`, so it agrees with `dunning status`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from worker.cli.status_view import skips_text
from worker.read import reading
from worker.read.recovery import RecoveredSoFar, recovered_so_far
from worker.read.runs import RunLine, SendQueue, recent_runs, send_queue
from worker.services.report import next_run_at
from worker.services.report_format import format_cents, in_words
from worker.store.db import make_engine
from worker.store.errors import StoreError

RUNS_SHOWN = 5
REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class Header:
    lago: str
    policy: str
    broker: str
    database: str
    logs: str | None


@dataclass(frozen=True, slots=True)
class LiveFigures:
    now: datetime
    runs: list[RunLine] = field(default_factory=list)
    queue: SendQueue = field(default_factory=SendQueue)
    recovered: list[RecoveredSoFar] = field(default_factory=list)
    next_sweep_at: datetime | None = None
    problem: str | None = None  # the ledger could not be read this time


def read_figures(engine: Engine, *, cron: str, now: datetime) -> LiveFigures:
    try:
        with reading(engine) as session:
            runs = recent_runs(session, limit=RUNS_SHOWN)
            queue = send_queue(session, now=now)
            recovered = recovered_so_far(session)
    except StoreError as exc:
        return LiveFigures(now=now, next_sweep_at=next_run_at(cron, now), problem=str(exc))
    return LiveFigures(
        now=now,
        runs=runs,
        queue=queue,
        recovered=recovered,
        next_sweep_at=next_run_at(cron, now),
    )


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def recovered_table(items: list[RecoveredSoFar]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("Currency")
    for column in ("Requests", "Paid", "Asked", "Recovered"):
        table.add_column(column, justify="right")
    for item in items:
        table.add_row(
            item.currency,
            str(item.asked),
            str(item.paid),
            format_cents(item.asked_cents),
            format_cents(item.recovered_cents),
        )
    return table


#: Narrower than this, the skips go under the table instead of into a column.
SKIPS_COLUMN_MIN_WIDTH = 130


def runs_view(runs: list[RunLine], *, width: int) -> RenderableType:
    """The last sweeps: one row each; the skips by reason as the last column on a wide
    terminal, else one line per run under the table (figures never wrap)."""
    with_skips = width >= SKIPS_COLUMN_MIN_WIDTH
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=False,
        show_edge=False,
        padding=(0, 1, 0, 0) if width >= 100 else (0, 0),  # 80 columns fit every figure
    )
    for column in ("Run", "Started", "Status"):
        table.add_column(column, no_wrap=True)
    # "Sent": payment requests created (or found in Lago) for the run's intents.
    for column in ("Invoices", "Groups", "Sent", "Resched.", "Refused", "In flight"):
        table.add_column(column, justify="right", no_wrap=True)
    if with_skips:
        table.add_column("Skips by reason", overflow="fold", ratio=1)
    for run in runs:
        cells = [
            f"#{run.id}",
            _clock(run.started_at),
            run.status,
            str(run.invoices_seen),
            str(run.groups),
            str(run.sends.sent),
            str(run.sends.rescheduled),
            str(run.sends.refused),
            str(run.sends.in_flight),
        ]
        table.add_row(*cells, *([skips_text(run.skips)] if with_skips else []))
    notes = [
        Text(f"#{run.id} error: {run.error}", style="red") for run in runs if run.error is not None
    ]
    if not with_skips:
        notes += [Text(f"#{run.id} skips: {skips_text(run.skips)}") for run in runs]
    return Group(table, *notes)


def render(
    header: Header, figures: LiveFigures, *, state: str = "running", width: int = 160
) -> Panel:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("Lago", header.lago)
    facts.add_row("Policy", header.policy)
    facts.add_row("Broker", header.broker)
    facts.add_row("Database", header.database)
    if header.logs:
        facts.add_row("Logs", header.logs)
    parts: list[RenderableType] = [facts, Text("")]
    if figures.runs:
        parts += [
            Text("Last sweeps (UTC)", style="bold"),
            runs_view(figures.runs, width=width),
        ]
    else:
        parts.append(Text("No sweep yet: the first one starts with the worker."))
    queue = figures.queue
    parts.append(
        Text(
            f"Sends in flight {queue.in_flight} ({queue.sending} being sent, {queue.due} due) · "
            f"waiting {queue.waiting} · needs review {queue.needs_review} · "
            f"blocked {queue.blocked}"
        )
    )
    if figures.recovered:
        parts += [
            Text(""),
            Text("Paid after a request", style="bold"),
            recovered_table(figures.recovered),
        ]
    if figures.next_sweep_at is not None:
        parts.append(
            Text(
                f"Next sweep {figures.next_sweep_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                f"({in_words(figures.next_sweep_at - figures.now)})"
            )
        )
    if figures.problem:
        parts.append(Text(f"ledger not readable just now: {figures.problem}", style="yellow"))
    hint = "Ctrl-C stops everything" if state == "running" else state
    return Panel(
        Group(*parts),
        title=f"lago-dunning · dunning run · {_clock(figures.now)} UTC",
        title_align="left",
        subtitle=hint,
        subtitle_align="right",
        box=box.ROUNDED,
    )


class LivePanel:
    """The panel on the terminal while `dunning run` runs: `refresh()` redraws it from the
    ledger at most once a second; leaving the block leaves its last state on screen."""

    def __init__(self, header: Header, *, database_url: str, cron: str, console: Console) -> None:
        self._header = header
        self._cron = cron
        self._engine = make_engine(database_url)
        self._live = Live(console=console, auto_refresh=False, redirect_stderr=False)
        self._drawn_at = 0.0

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()
        self._engine.dispose()

    def refresh(self, *, state: str = "running", force: bool = False) -> None:
        if not force and time.monotonic() - self._drawn_at < REFRESH_S:
            return
        now = datetime.now(UTC)
        figures = read_figures(self._engine, cron=self._cron, now=now)
        panel = render(self._header, figures, state=state, width=self._live.console.width)
        self._live.update(panel, refresh=True)
        self._drawn_at = time.monotonic()


class NoPanel:
    """Off a terminal: the logs are the view."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def refresh(self, *, state: str = "running", force: bool = False) -> None:
        return None
