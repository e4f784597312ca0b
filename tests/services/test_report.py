"""`dunning report`: the figures in every rendering (terminal, JSON, CSV, HTML) from one ledger
whose numbers are worked out by hand."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.fixtures.ledger_rows import T0, add_intent_row, report_scenario
from worker.cli import report_cmd
from worker.cli.errors import run_cli
from worker.services.report import FinanceReport, build_report, next_run_at
from worker.services.report_csv import render_csv
from worker.services.report_html import render_html

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NEXT = NOW + timedelta(minutes=5)


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    report_scenario(engine, now=NOW)
    return engine


def _report(engine: Engine) -> FinanceReport:
    return build_report(engine, since=None, now=NOW, next_sweep_at=NEXT)


class _Checker(HTMLParser):
    """Well-formedness by hand: every non-void element closed in order."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(document: str) -> _Checker:
    checker = _Checker()
    checker.feed(document)
    checker.close()
    assert document.startswith("<!DOCTYPE html>")
    assert checker.errors == []
    assert checker.stack == []
    for tag, attrs in checker.tags:  # self-contained: no external asset of any kind
        assert tag not in ("script", "link", "img", "iframe")
        for name in ("src", "href"):
            assert name not in attrs, (tag, attrs)
    return checker


def test_the_html_page_has_every_figure_and_both_charts(ledger: Engine) -> None:
    checker = check_html(render_html(_report(ledger)))
    text = " ".join(checker.text)
    # Overdue now, per currency, with its buckets and the 90+ share on the card.
    for figure in ("2,511.56", "1,234.56", "500.00", "777.00", "99.00"):
        assert figure in text, figure
    assert "777.00 over 90 days" in text
    # Recovered / asked / rate per currency.
    assert "4,500.00" in text
    assert "recovered of 12,000.00 asked · 37.5%" in text
    # The action list and the next sweep.
    for figure in ("cus_stuck", "88.00 USD", "cus_done", "77.00 USD"):
        assert figure in text, figure
    assert "1 request for 66.00 USD" in text
    # Charts: ageing per currency with overdue money (2), recovered per currency (1: USD).
    figures = [attrs.get("class") for tag, attrs in checker.tags if tag == "figure"]
    assert figures.count("ageing") == 2
    assert figures.count("recovered") == 1
    assert [tag for tag, _ in checker.tags].count("svg") == 3


def test_html_escapes_what_came_from_data(engine: Engine) -> None:
    add_intent_row(
        engine, policy="<script>alert(1)</script>", amount=100, outcome="paid", recovered=100
    )
    document = render_html(_report(engine))
    check_html(document)
    assert "<script>" not in document
    assert "&lt;script&gt;" in document


def test_an_empty_ledger_still_renders_and_says_why(engine: Engine) -> None:
    document = render_html(_report(engine))
    text = " ".join(check_html(document).text)
    assert "No full sweep has run yet" in text
    assert "No payment requests in this period." in text
    assert "Nothing needs a human." in text


def test_csv_is_one_table_with_a_section_per_row(ledger: Engine) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(_report(ledger)))))
    overdue = {(r["currency"], r["bucket"]): r for r in rows if r["section"] == "overdue"}
    assert overdue["USD", "1-30"]["amount_cents"] == "123456"
    assert overdue["USD", "1-30"]["amount"] == "1234.56"
    assert overdue["USD", "31-60"]["amount_cents"] == "0"  # empty buckets are rows too
    assert overdue["USD", "total"]["count"] == "6"
    assert overdue["EUR", "total"]["amount"] == "99.00"
    recovery = [r for r in rows if r["section"] == "recovery"]
    assert sum(int(r["recovered_cents"]) for r in recovery) == 450_000
    actions = {r["customer"]: r for r in rows if r["section"] == "action"}
    assert actions["cus_stuck"]["kind"] == "needs_review"
    assert actions["cus_done"]["amount_cents"] == "7700"
    assert [r["customer"] for r in rows if r["section"] == "next_sweep"] == ["cus_next"]


def test_next_run_follows_the_cron() -> None:
    assert next_run_at("*/15 * * * *", datetime(2026, 11, 20, 12, 7, tzinfo=UTC)) == datetime(
        2026, 11, 20, 12, 15, tzinfo=UTC
    )


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli(ledger: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("DUNNING_DATABASE_URL", db_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAGO_API_URL", raising=False)
    return CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    report_cmd.register(app)
    return app


def test_report_command_in_every_format(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(_app(), ["report", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["overdue"]["currencies"][1]["due_cents"] == 251_156
    assert payload["recovery"]["totals"]["USD"]["recovery_rate"] == 0.375
    assert {item["kind"] for item in payload["actions"]} == {"needs_review", "exhausted"}

    result = cli.invoke(_app(), ["report", "--csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("section,currency,")

    target = tmp_path / "report.html"
    result = cli.invoke(_app(), ["report", "--html", str(target)])
    assert result.exit_code == 0, result.output
    check_html(target.read_text())

    result = cli.invoke(_app(), ["report"])
    assert result.exit_code == 0, result.output
    for figure in ("2,511.56", "4,500.00", "37.5%", "cus_stuck", "cus_done"):
        assert figure in result.stdout, figure


def test_report_command_rejects_a_bad_since_with_one_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["dunning", "report", "--since", "last tuesday"])
    with pytest.raises(SystemExit) as exited:
        run_cli(_app())
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: invalid --since 'last tuesday': use a date like 2026-11-01 (or an ISO 8601 time)\n"
    )


@pytest.mark.parametrize("flags", [["--json", "--html", "x.html"], ["--csv", "--json"]])
def test_two_formats_at_once_is_a_usage_error(
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["dunning", "report", *flags])
    with pytest.raises(SystemExit) as exited:
        run_cli(_app())
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: use one of --json, --csv or --html\n"


def test_sent_before_since_is_left_out(ledger: Engine) -> None:
    report = build_report(ledger, since=T0 + timedelta(days=365), now=NOW, next_sweep_at=None)
    assert report.recovery.rows == ()
    assert report.next_sweep.at is None
