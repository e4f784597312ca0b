"""The HTML report as a browser shows it: headless Chromium (Debian's), driven by Playwright.

What a finance or ops person sees first, without scrolling on a laptop screen: per currency
what is overdue and what was recovered, and how many items need a human; then the charts,
drawn to scale. Figures are read from the rendered page (`inner_text`), not from our HTML.
In CI a missing browser fails the test (`.ci/run` installs it); elsewhere it is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.fixtures.browser import LAPTOP, skip_without_browser
from tests.fixtures.ledger_rows import report_scenario
from worker.services.report import build_report
from worker.services.report_html import render_html

skip_without_browser()

from playwright.sync_api import Browser, Page  # noqa: E402

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def page(browser: Browser, engine: Engine, tmp_path: Path) -> Iterator[Page]:
    report_scenario(engine, now=NOW)
    target = tmp_path / "report.html"
    report = build_report(engine, since=None, now=NOW, next_sweep_at=NOW + timedelta(minutes=5))
    target.write_text(render_html(report), encoding="utf-8")
    opened = browser.new_page(viewport=LAPTOP)
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text))
    opened.on("requestfailed", lambda request: errors.append(request.url))
    opened.goto(target.as_uri())
    try:
        yield opened
    finally:
        opened.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        opened.close()
        assert errors == []  # nothing to load, nothing failing


def _above_the_fold(page: Page, selector: str) -> str:
    element = page.locator(selector)
    assert element.is_visible(), selector
    box = element.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= LAPTOP["height"], f"{selector} needs scrolling"
    return element.inner_text()


def test_the_first_screen_says_what_is_owed_recovered_and_to_do(page: Page) -> None:
    usd = '#summary .card[data-currency="USD"]'
    assert _above_the_fold(page, f"{usd} .figure.overdue") == "2,511.56"
    assert _above_the_fold(page, f"{usd} .figure.recovered") == "4,500.00"
    note = _above_the_fold(page, usd)
    assert "6 invoices · 3 customers · 777.00 over 90 days" in note
    assert (
        "1 invoice · 1 customer" in page.locator('#summary .card[data-currency="EUR"]').inner_text()
    )
    assert "recovered of 12,000.00 asked · 37.5%" in note
    assert "next sweep: 1 request · 66.00" in note
    eur = '#summary .card[data-currency="EUR"]'
    assert _above_the_fold(page, f"{eur} .figure.overdue") == "99.00"
    assert "0.0%" in _above_the_fold(page, eur)
    assert _above_the_fold(page, "#attention .figure") == "2"
    assert "1 to review, 1 exhausted" in page.locator("#attention").inner_text()


def test_the_ageing_chart_is_drawn_to_scale(page: Page) -> None:
    bars = page.locator('figure.ageing[data-currency="USD"] rect.bucket')
    assert bars.count() == 4
    widths = [box["width"] for box in (bars.nth(i).bounding_box() for i in range(4)) if box]
    # 1,234.56 / 0 / 500.00 / 777.00: the longest is 1-30, the others in proportion
    assert widths[0] == max(widths)
    assert widths[2] / widths[0] == pytest.approx(50_000 / 123_456, rel=0.02)
    assert widths[3] / widths[0] == pytest.approx(77_700 / 123_456, rel=0.02)
    assert widths[1] < 3  # an empty bucket is a sliver, not a bar
    labels = page.locator('figure.ageing[data-currency="USD"] text.amount').all_text_contents()
    assert labels == ["1,234.56", "0.00", "500.00", "777.00"]


def test_recovered_over_time_rises_to_the_total(page: Page) -> None:
    chart = page.locator('figure.recovered[data-currency="USD"]')
    assert chart.is_visible()
    assert "4,500.00 recovered" in chart.locator("figcaption").inner_text()
    box = chart.locator("svg").bounding_box()
    assert box is not None
    assert box["width"] > 400
    assert box["height"] > 150
    # the running total is labelled at its top: the whole amount recovered
    assert "4,500.00" in chart.locator("svg text.label").all_text_contents()


def test_tables_and_lists_are_there_and_nothing_overflows(page: Page) -> None:
    recovery = page.locator("#recovery-table tbody tr")
    assert recovery.count() == 2  # standard USD attempt 1, standard EUR attempt 1
    assert "37.5%" in page.locator("#recovery-table").inner_text()
    actions = page.locator("#actions-table").inner_text()
    assert "cus_stuck" in actions
    assert "88.00 USD" in actions
    assert "cus_done" in actions
    assert "cus_next" in page.locator("#next-sweep-table").inner_text()
    wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert wide is False
