"""The live panel's layout: every figure readable from 80 columns up (no truncation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from worker.cli.live_view import Header, LiveFigures, render
from worker.read.recovery import RecoveredSoFar
from worker.read.runs import RunLine, SendQueue
from worker.store.runs import SendFigures

NOW = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)


def _figures() -> LiveFigures:
    run = RunLine(
        id=12,
        trigger="beat",
        status="succeeded",
        started_at=NOW - timedelta(seconds=30),
        finished_at=NOW,
        invoices_seen=104_250,
        groups=47_003,
        intents_created=34,
        sends=SendFigures(created=34, sent=31, rescheduled=3, refused=12),
        skips={"below_threshold": 10, "currency_not_configured": 3, "too_soon": 31},
    )
    return LiveFigures(
        now=NOW,
        runs=[run],
        queue=SendQueue(sending=2, due=5, waiting=3, needs_review=1),
        recovered=[RecoveredSoFar("USD", 13, 2, 9_558_866, 1_138_384)],
        next_sweep_at=NOW + timedelta(seconds=30),
    )


def _screen(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    header = Header(
        lago="http://127.0.0.1:8765", policy="p.yaml", broker="b", database="d", logs="l"
    )
    console.print(render(header, _figures(), width=width))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100, 160])
def test_figures_never_truncate(width: int) -> None:
    screen = _screen(width)
    assert "…" not in screen
    row = next(line for line in screen.splitlines() if "#12" in line)
    for figure in ("104250", "47003", "31", "3", "12", "succeeded", "10:00:00"):
        assert figure in row, (width, figure, row)
    assert "Sends in flight 7 (2 being sent, 5 due)" in " ".join(screen.split())
    assert "needs review 1" in screen
    assert "95,588.66" in screen
    assert "11,383.84" in screen
    assert "Next sweep 2026-12-01 10:01:00 UTC (in 30 s)" in screen


def test_skips_go_under_the_table_on_a_narrow_terminal() -> None:
    narrow = _screen(80)
    assert "#12 skips: below_threshold 10, currency_not_configured 3, too_soon 31" in " ".join(
        narrow.split()
    )
    wide = _screen(160)
    assert "skips:" not in wide
    assert "below_threshold 10" in next(line for line in wide.splitlines() if "#12" in line)
