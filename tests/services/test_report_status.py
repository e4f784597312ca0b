"""`dunning status`: open intents, needs_review with reasons, paused customers, last sweeps."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
import typer
from sqlalchemy import Engine

from worker.cli import report_cmd
from worker.cli.errors import run_cli
from worker.services.status import build_status, intent_counts
from worker.store import runs
from worker.store.controls import pause_customer
from worker.store.db import write_tx
from worker.store.intents import add_intent, claim_intents, record_needs_review

NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


def _intent(engine: Engine, customer: str, amount: int) -> int:
    with write_tx(engine) as session:
        intent_id = add_intent(
            session,
            run_id=None,
            external_customer_id=customer,
            currency="USD",
            billing_entity_code=None,
            invoice_ids=[f"inv-{customer}"],
            amount_cents=amount,
            email=None,
            policy="standard",
            attempt_number=1,
            now=NOW,
        )
    assert intent_id is not None
    return intent_id


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    _intent(engine, "cus_open", 1_500)
    review = _intent(engine, "cus_review", 2_500)
    claim_intents(engine, owner="w1", now=NOW, lease_seconds=60, limit=1, intent_ids=[review])
    with write_tx(engine) as session:
        assert record_needs_review(
            session,
            intent_id=review,
            owner="w1",
            now=NOW,
            error_code="ambiguous",
            reason="5 unknown outcomes in a row",
        )
        pause_customer(session, external_customer_id="cus_paused", reason="disputing", now=NOW)
        run_id = runs.start_run(session, trigger="cli", now=NOW - timedelta(minutes=5))
    assert run_id > 0
    return engine


def test_status_lists_what_an_operator_needs(ledger: Engine) -> None:
    report = build_status(ledger, now=NOW)
    assert [line.external_customer_id for line in report.open_intents] == ["cus_open"]
    assert [line.external_customer_id for line in report.needs_review] == ["cus_review"]
    reason = report.needs_review[0].reason
    assert reason is not None
    assert "5 unknown outcomes in a row" in reason
    assert [c.external_customer_id for c in report.paused_customers] == ["cus_paused"]
    assert report.paused_customers[0].reason == "disputing"
    assert [(run.trigger, run.status) for run in report.last_sweeps] == [("cli", "running")]
    assert [(item.kind, item.external_customer_id) for item in report.actions] == [
        ("needs_review", "cus_review"),
        ("paused", "cus_paused"),
    ]
    assert (report.queue.due, report.queue.needs_review) == (1, 1)
    counts = intent_counts(ledger)
    assert (counts["pending"], counts["needs_review"], counts["sent"]) == (1, 1, 0)


def test_status_json_command(
    ledger: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE_URL", db_url)
    monkeypatch.setattr(sys, "argv", ["dunning", "status", "--json"])
    app = typer.Typer(pretty_exceptions_enable=False)
    report_cmd.register(app)
    with pytest.raises(SystemExit) as exited:
        run_cli(app)
    assert exited.value.code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["intent_counts"]["needs_review"] == 1
    assert payload["needs_review"][0]["external_customer_id"] == "cus_review"
    assert payload["paused_customers"][0]["since"] == NOW.isoformat()
    assert payload["queue"]["in_flight"] == 1
    assert payload["last_sweeps"][0]["sends"]["sent"] == 0


def test_status_on_an_unmigrated_database_is_one_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE_URL", sqlite_url)
    monkeypatch.setattr(sys, "argv", ["dunning", "status"])
    app = typer.Typer(pretty_exceptions_enable=False)
    report_cmd.register(app)
    with pytest.raises(SystemExit) as exited:
        run_cli(app)
    assert exited.value.code == 1
    assert (
        capsys.readouterr().err == "error: the database has no schema: run `dunning db upgrade`\n"
    )
