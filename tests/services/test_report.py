"""`dunning report` figures against a small scenario whose numbers are worked out by hand."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from itertools import count
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from worker.cli import report_cmd
from worker.cli.errors import run_cli
from worker.services.report import build_report, render_html
from worker.store.db import write_tx
from worker.store.models import PaymentRequestIntent

SENT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)
_ids = count(1)


def add(
    engine: Engine,
    *,
    policy: str | None,
    currency: str,
    attempt: int,
    amount: int,
    outcome: str | None,
    recovered: int | None = None,
    after: timedelta | None = None,
    sent_at: datetime = SENT,
    status: str = "sent",
) -> None:
    n = next(_ids)
    with write_tx(engine) as session:
        session.add(
            PaymentRequestIntent(
                external_customer_id=f"cus_{n}",
                currency=currency,
                billing_entity_code=None,
                group_key=f"cus_{n}|{currency}|-",
                invoice_ids=[f"inv_{n}"],
                amount_cents=amount,
                policy=policy,
                attempt_number=attempt,
                dedupe_key=f"key-{n}",
                status=status,
                lago_payment_request_id=f"pr_{n}" if status in ("sent", "adopted") else None,
                tries=1,
                ambiguous_tries=0,
                next_attempt_at=sent_at,
                created_at=sent_at,
                updated_at=sent_at + (after or timedelta()),
                sent_at=sent_at if status in ("sent", "adopted") else None,
                outcome=outcome,
                recovered_cents=recovered,
                resolved_at=sent_at + after if after is not None and outcome == "paid" else None,
            )
        )


@pytest.fixture
def scenario(engine: Engine) -> Engine:
    h = timedelta(hours=1)
    # standard / USD / attempt 1: asked 1000+2000+3000+4000 = 10000
    add(
        engine,
        policy="standard",
        currency="USD",
        attempt=1,
        amount=1000,
        outcome="paid",
        recovered=1000,
        after=2 * h,
    )
    add(
        engine,
        policy="standard",
        currency="USD",
        attempt=1,
        amount=3000,
        outcome="paid",
        recovered=3000,
        after=6 * h,
    )
    add(
        engine,
        policy="standard",
        currency="USD",
        attempt=1,
        amount=2000,
        outcome="partially_paid",
        recovered=500,
        after=3 * h,
    )
    add(engine, policy="standard", currency="USD", attempt=1, amount=4000, outcome="open")
    # standard / USD / attempt 2: one request of 4000, paid after a day (Nov 3)
    add(
        engine,
        policy="standard",
        currency="USD",
        attempt=2,
        amount=4000,
        outcome="paid",
        recovered=4000,
        after=24 * h,
    )
    # standard / EUR / attempt 1: failed
    add(engine, policy="standard", currency="EUR", attempt=1, amount=5000, outcome="failed")
    # vip / USD / attempt 1 (adopted counts too): paid after 1 h, 2 h and 10 h
    add(
        engine,
        policy="vip",
        currency="USD",
        attempt=1,
        amount=100,
        outcome="paid",
        recovered=100,
        after=h,
        status="adopted",
    )
    add(
        engine,
        policy="vip",
        currency="USD",
        attempt=1,
        amount=200,
        outcome="paid",
        recovered=200,
        after=2 * h,
    )
    add(
        engine,
        policy="vip",
        currency="USD",
        attempt=1,
        amount=300,
        outcome="paid",
        recovered=300,
        after=10 * h,
    )
    # Not reported: sent before --since, still pending, refused.
    add(
        engine,
        policy="vip",
        currency="USD",
        attempt=1,
        amount=999,
        outcome="paid",
        recovered=999,
        after=h,
        sent_at=SENT - timedelta(days=10),
    )
    add(engine, policy="vip", currency="USD", attempt=1, amount=777, outcome=None, status="pending")
    add(engine, policy="vip", currency="USD", attempt=1, amount=555, outcome=None, status="refused")
    return engine


SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def test_figures_per_policy_currency_and_attempt(scenario: Engine) -> None:
    report = build_report(scenario, since=SINCE, now=NOW)
    rows = {(r.policy, r.currency, r.attempt_number): r for r in report.rows}
    assert set(rows) == {
        ("standard", "EUR", 1),
        ("standard", "USD", 1),
        ("standard", "USD", 2),
        ("vip", "USD", 1),
    }

    usd1 = rows["standard", "USD", 1]
    assert (usd1.asked, usd1.asked_cents, usd1.paid, usd1.partially_paid) == (4, 10000, 2, 1)
    assert usd1.recovered_cents == 4500  # 1000 + 3000 + 500
    assert usd1.recovery_rate == 0.45
    assert usd1.median_time_to_recover_s == 4 * 3600  # median of 2 h and 6 h

    usd2 = rows["standard", "USD", 2]
    assert (usd2.asked, usd2.paid, usd2.recovered_cents, usd2.recovery_rate) == (1, 1, 4000, 1.0)
    assert usd2.median_time_to_recover_s == 24 * 3600

    eur = rows["standard", "EUR", 1]
    assert (eur.asked, eur.paid, eur.recovered_cents, eur.recovery_rate) == (1, 0, 0, 0.0)
    assert eur.median_time_to_recover_s is None

    vip = rows["vip", "USD", 1]
    assert (vip.asked, vip.asked_cents, vip.paid, vip.recovered_cents) == (3, 600, 3, 600)
    assert vip.median_time_to_recover_s == 2 * 3600


def test_daily_series_per_currency(scenario: Engine) -> None:
    report = build_report(scenario, since=SINCE, now=NOW)
    daily = {(d.day.isoformat(), d.currency): d.recovered_cents for d in report.daily}
    # Nov 2: 1000 + 3000 + 500 (partial, last update) + 100 + 200 + 300 (vip, 20:00) = 5100
    # Nov 3: 4000 (attempt 2, after 24 h)
    assert daily == {("2026-11-02", "USD"): 5100, ("2026-11-03", "USD"): 4000}


def test_without_since_everything_sent_counts(scenario: Engine) -> None:
    report = build_report(scenario, since=None, now=NOW)
    vip = next(r for r in report.rows if r.policy == "vip")
    assert (vip.asked, vip.recovered_cents) == (4, 1599)


class _Checker(HTMLParser):
    """Well-formedness by hand: every non-void element closed in order."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "source", "wbr"})
    SVG_EMPTY = frozenset({"line", "rect", "path", "circle"})

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
    return checker


def test_html_report_is_well_formed_self_contained_and_has_the_chart(scenario: Engine) -> None:
    document = render_html(build_report(scenario, since=SINCE, now=NOW))
    checker = check_html(document)
    names = [tag for tag, _ in checker.tags]
    assert names.count("svg") == 1  # one currency recovered something: USD
    assert names.count("rect") == 2  # Nov 2 and Nov 3
    assert "table" in names
    # No external assets of any kind.
    for tag, attrs in checker.tags:
        assert tag not in ("script", "link", "img", "iframe")
        for name in ("src", "href"):
            assert name not in attrs, (tag, attrs)
    text = " ".join(checker.text)
    assert "45.0%" in text
    assert "4.0 h" in text
    assert "45.00" in text  # the recovered 4500 cents
    assert "Recovered per day (USD)" in text


def test_html_escapes_policy_names(engine: Engine) -> None:
    add(
        engine,
        policy="<script>alert(1)</script>",
        currency="USD",
        attempt=1,
        amount=100,
        outcome="paid",
        recovered=100,
        after=timedelta(hours=1),
    )
    document = render_html(build_report(engine, since=None, now=NOW))
    check_html(document)
    assert "<script>" not in document
    assert "&lt;script&gt;" in document


def test_empty_report_still_renders(engine: Engine) -> None:
    document = render_html(build_report(engine, since=None, now=NOW))
    check_html(document)
    assert "No payment requests in this period." in document


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli(
    scenario: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CliRunner:
    monkeypatch.setenv("DUNNING_DATABASE_URL", db_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAGO_API_URL", raising=False)
    return CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    report_cmd.register(app)
    return app


def test_report_command_json_and_html(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(_app(), ["report", "--since", "2026-11-01", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["rows"]) == 4
    target = tmp_path / "report.html"
    result = cli.invoke(_app(), ["report", "--html", str(target)])
    assert result.exit_code == 0, result.output
    check_html(target.read_text())


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


def test_json_and_html_together_is_a_usage_error(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["dunning", "report", "--json", "--html", "x.html"])
    with pytest.raises(SystemExit) as exited:
        run_cli(_app())
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: use either --json or --html, not both\n"
