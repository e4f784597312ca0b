"""The HTML report as a real browser renders it (headless Chromium), when one is installed."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from worker.services.report import DailyRecovery, Report, ReportRow, render_html

BROWSER = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)

pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless Chromium on PATH (Debian: apt-get install -y chromium)",
)


def _report() -> Report:
    row = ReportRow(
        policy="standard",
        currency="USD",
        attempt_number=1,
        asked=4,
        asked_cents=10_000,
        paid=2,
        partially_paid=1,
        recovered_cents=4_500,
        recovery_rate=0.45,
        median_time_to_recover_s=14_400,
    )
    daily = [
        DailyRecovery(date(2026, 11, 2), "USD", 5_100),
        DailyRecovery(date(2026, 11, 4), "USD", 4_000),
        DailyRecovery(date(2026, 11, 3), "EUR", 700),
    ]
    return Report(
        since=None, generated_at=datetime(2026, 11, 20, tzinfo=UTC), rows=[row], daily=daily
    )


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    return subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        check=False,
    )


def test_chromium_renders_the_table_and_the_svg_chart(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()), encoding="utf-8")

    dumped = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert '<table id="recovery">' in dom
    assert "45.0%" in dom
    # One chart per currency, a bar per day of the span (USD: Nov 2..4 with an empty Nov 3).
    assert dom.count("<svg") == 2
    assert dom.count("<rect") == 3 + 3

    shot = tmp_path / "report.png"
    rendered = _chromium(
        f"--screenshot={shot}", "--window-size=900,900", page.as_uri(), cwd=tmp_path
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 5_000  # a blank page compresses to far less
