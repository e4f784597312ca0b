"""The CLI's consoles are built on first use, and behave as rich consoles everywhere rich
takes one (printing, tables, a live progress bar that enters and leaves the console)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from worker.cli.common import _ConsoleOnFirstUse

REPO = Path(__file__).resolve().parents[2]


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = _ConsoleOnFirstUse(
        file=buffer, force_terminal=True, color_system=None, width=60, markup=False, emoji=False
    )
    return cast("Console", console), buffer


def test_printing_and_tables_go_through_the_console_built_on_first_use() -> None:
    console, buffer = _console()
    console.print("acme[/eu] :x:")
    table = Table("customer")
    table.add_row("cus_1")
    console.print(table)
    text = buffer.getvalue()
    assert "acme[/eu]" in text
    assert "cus_1" in text


def test_a_live_progress_bar_can_enter_and_leave_it() -> None:
    console, buffer = _console()
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("sending", total=2)
        progress.advance(task, 2)
    with console:  # rich's buffered section, as Live.stop uses it
        console.print("after")
    assert "sending" in buffer.getvalue()
    assert "after" in buffer.getvalue()


def test_importing_the_cli_helpers_does_not_import_rich_console() -> None:
    probe = "import sys, worker.cli.common; print(sys.modules.get('rich.console') is None)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "True"
