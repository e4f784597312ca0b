"""The policy features through real sweeps: the sandbox as Lago, a real database, a clock the
test moves. Step schedules, holiday calendars, contact caps, holds, holdouts, versions, and
`plan --diff` (one listing, nothing written)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.policies import parse_policies
from tests.e2e.sweep_support import (
    Clock,
    count_rows,
    requests_by_customer,
    sweep_runtime,
    test_settings,
)
from tests.fixtures.sandbox import SandboxHandle
from worker.policy.holdout import is_held_out
from worker.services.plan_diff import plan_diff
from worker.services.sweep import SweepSummary, run_sweep
from worker.store import controls
from worker.store.db import make_engine, read_session, write_tx
from worker.store.migrate import upgrade
from worker.store.models import DecisionRow, HoldoutEntry, PaymentRequestIntent

LIST = "GET /api/v1/invoices"
POST = "POST /api/v1/payment_requests"


def _invoice(customer: str, currency: str, cents: int, n: int) -> dict[str, Any]:
    return {
        "lago_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/{currency}/{n}")),
        "customer": {"external_id": customer},
        "currency": currency,
        "total_amount_cents": cents,
        "issuing_date": "2025-01-01",
        "payment_due_date": "2025-01-31",
    }


def _customer(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "email": f"ap@{external_id}.example",
        "timezone": "UTC",
        "country": "FR",
        "metadata": [{"key": key, "value": value} for key, value in extra.items()],
    }


@pytest.fixture
def db(sqlite_url: str) -> str:
    upgrade(sqlite_url)
    return sqlite_url


def _sweep(
    db: str, sandbox: SandboxHandle, policy: Path, clock: Clock, **kwargs: Any
) -> SweepSummary:
    with sweep_runtime(test_settings(db, sandbox, policy), clock=clock) as rt:
        return run_sweep(rt, trigger="cli", **kwargs)


def _reasons(db: str, summary: SweepSummary) -> dict[tuple[str, str], DecisionRow]:
    engine = make_engine(db)
    try:
        with read_session(engine) as session:
            rows = session.scalars(
                select(DecisionRow).where(DecisionRow.run_id == summary.run_id)
            ).all()
            for row in rows:
                session.expunge(row)
            return {(row.external_customer_id, row.currency): row for row in rows}
    finally:
        engine.dispose()


def _policy(tmp_path: Path, body: str, name: str = "policies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"version: 1\n{body}", encoding="utf-8")
    parse_policies(path.read_bytes())
    return path


STEPS = """\
policies:
  - name: stepped
    version: 1
    min_overdue_cents: {EUR: 100, USD: 100, GBP: 100}
    steps:
      - {after_days: 0}
      - {after_days: 3, email: {metadata_key: finance_email}}
"""


def test_steps_go_one_per_day_with_the_step_email(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={
            "customers": [_customer("cus_a", finance_email="finance@a.example")],
            "invoices": [_invoice("cus_a", "EUR", 5000, 1)],
        }
    )
    policy, clock = _policy(tmp_path, STEPS), Clock()
    first = _sweep(db, sandbox, policy, clock)
    assert first.requests_created == 1
    clock.advance(seconds=60)
    again = _sweep(db, sandbox, policy, clock)
    row = _reasons(db, again)[("cus_a", "EUR")]
    assert (row.reason, "one step per day" in (row.detail or "")) == ("too_soon", True)
    clock.advance(days=1)
    second = _sweep(db, sandbox, policy, clock)
    assert second.requests_created == 1
    emails = [r["email"] for r in requests_by_customer(sandbox)["cus_a"]]
    assert sorted(emails) == ["ap@cus_a.example", "finance@a.example"]
    clock.advance(days=1)
    done = _sweep(db, sandbox, policy, clock)
    assert _reasons(db, done)[("cus_a", "EUR")].reason == "max_attempts_reached"


def test_a_customer_with_three_currencies_is_asked_once_under_a_contact_cap(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={
            "customers": [_customer("cus_many")],
            "invoices": [
                _invoice("cus_many", currency, 5000, n)
                for n, currency in enumerate(["EUR", "USD", "GBP"])
            ],
        }
    )
    policy = _policy(
        tmp_path, STEPS.replace("version: 1", "contact_cap: {max_requests: 1, per_days: 2}")
    )
    clock = Clock()
    summary = _sweep(db, sandbox, policy, clock)
    assert summary.requests_created == 1
    reasons = _reasons(db, summary)
    capped = [row for row in reasons.values() if row.reason == "contact_cap"]
    assert len(capped) == 2
    frees = capped[0].next_eligible_at
    assert frees is not None
    assert frees.replace(tzinfo=UTC) - datetime.now(UTC) > timedelta(days=1, hours=23)
    clock.advance(days=2, seconds=60)
    later = _sweep(db, sandbox, policy, clock)
    assert later.requests_created == 1  # the next currency, one at a time


def test_a_hold_until_a_date_waits_then_resumes_by_itself(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={"customers": [_customer("cus_h")], "invoices": [_invoice("cus_h", "EUR", 900, 1)]}
    )
    policy, clock = _policy(tmp_path, STEPS), Clock()
    engine = make_engine(db)
    until = datetime.now(UTC) + timedelta(days=3)
    with write_tx(engine) as session:
        controls.pause_customer(
            session, external_customer_id="cus_h", reason="promise to pay", now=clock(),
            until=until,
        )  # fmt: skip
    engine.dispose()
    held = _sweep(db, sandbox, policy, clock)
    row = _reasons(db, held)[("cus_h", "EUR")]
    assert (row.kind, row.reason, held.requests_created) == ("wait", "on_hold_until", 0)
    clock.advance(days=3, seconds=60)
    resumed = _sweep(db, sandbox, policy, clock)
    assert resumed.requests_created == 1


def test_the_send_window_skips_the_customer_country_holiday(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={"customers": [_customer("cus_fr")], "invoices": [_invoice("cus_fr", "EUR", 900, 1)]}
    )
    policy = _policy(
        tmp_path,
        STEPS.replace(
            "    steps:",
            "    send_window: {start_hour: 9, end_hour: 17, skip_holidays: true}\n    steps:",
        ),
    )
    bastille_day = datetime(2026, 7, 14, 10, tzinfo=UTC)
    plan = _sweep(db, sandbox, policy, Clock(), dry_run=True, now=bastille_day)
    (row,) = plan.plan
    assert (row.reason, row.next_eligible_at) == (
        "outside_send_window",
        datetime(2026, 7, 15, 9, tzinfo=UTC),
    )
    assert "holidays of FR skipped" in row.detail


HOLDOUT = """\
holdout_salt: test-salt
policies:
  - name: measured
    min_overdue_cents: {EUR: 100}
    holdout_percent: 30
"""


def test_held_out_customers_get_no_request_and_are_tracked_until_they_pay(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    ids = [f"cus_{n:03d}" for n in range(20)]
    sandbox.reset(
        data={
            "customers": [_customer(cid) for cid in ids],
            "invoices": [_invoice(cid, "EUR", 1000, 1) for cid in ids],
        }
    )
    held = {cid for cid in ids if is_held_out("test-salt", 30, cid)}
    assert 0 < len(held) < len(ids)
    policy, clock = _policy(tmp_path, HOLDOUT), Clock()
    summary = _sweep(db, sandbox, policy, clock)
    assert set(requests_by_customer(sandbox)) == set(ids) - held
    reasons = _reasons(db, summary)
    assert {cid for (cid, _), row in reasons.items() if row.reason == "holdout"} == held
    one = sorted(held)[0]
    sandbox.pay_invoice(_invoice(one, "EUR", 1000, 1)["lago_id"])
    clock.advance(seconds=60)
    _sweep(db, sandbox, policy, clock)
    engine = make_engine(db)
    try:
        with read_session(engine) as session:
            entries = {
                row.external_customer_id: row for row in session.scalars(select(HoldoutEntry))
            }
    finally:
        engine.dispose()
    assert set(entries) == held
    assert (entries[one].outcome, entries[one].recovered_cents) == ("paid", 1000)
    assert entries[one].resolved_at is not None
    assert all(entries[cid].resolved_at is None for cid in held - {one})


WEEKLY = """\
policies:
  - name: p
    version: {version}
    min_overdue_cents: {{EUR: 100}}
    days_between_attempts: {gap}
    max_attempts: 4
"""


def test_a_policy_edit_never_re_asks_in_flight_groups_by_surprise(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={
            "customers": [_customer("cus_sent"), _customer("cus_open")],
            "invoices": [_invoice("cus_sent", "EUR", 900, 1), _invoice("cus_open", "EUR", 900, 1)],
        }
    )
    clock = Clock()
    weekly = _policy(tmp_path, WEEKLY.format(version=1, gap=7))
    first = _sweep(db, sandbox, weekly, clock, customer="cus_sent")
    assert first.requests_created == 1
    # cus_open: decided under version 1 but not sent yet (the workers would send it).
    handed_off = _sweep(db, sandbox, weekly, clock, customer="cus_open", send_inline=False)
    # This process sent nothing: its summary says so instead of claiming 0 requests created.
    assert {k: handed_off.as_dict()[k] for k in ("sends", "intents_created")} == {
        "sends": "handed_to_workers",
        "intents_created": 1,
    }
    assert handed_off.as_dict()["payment_requests_created"] is None
    assert first.as_dict()["sends"] == "this_process"

    daily = _policy(tmp_path, WEEKLY.format(version=2, gap=1), name="edited.yaml")
    clock.advance(days=2)
    after_edit = _sweep(db, sandbox, daily, clock, send_inline=False)
    rows = _reasons(db, after_edit)
    sent_row, open_row = rows[("cus_sent", "EUR")], rows[("cus_open", "EUR")]
    # Mid-schedule: the daily gap would allow it, the weekly version it started under not yet.
    assert (sent_row.reason, sent_row.policy_version) == ("too_soon", "2")
    assert "version 1" in (sent_row.detail or "")
    # Open intent: it waits as decided, and keeps the version that decided it.
    assert open_row.reason == "open_intent"
    engine = make_engine(db)
    try:
        with read_session(engine) as session:
            intents = session.scalars(select(PaymentRequestIntent)).all()
            assert {(i.external_customer_id, i.policy_version) for i in intents} == {
                ("cus_sent", "1"),
                ("cus_open", "1"),
            }
            assert all(
                i.policy_hash == parse_policies(weekly.read_bytes()).version_hash for i in intents
            )
    finally:
        engine.dispose()
    clock.advance(days=5, seconds=60)
    week_later = _sweep(db, sandbox, daily, clock, customer="cus_sent")
    assert week_later.decisions == {"eligible": 1}
    assert len(requests_by_customer(sandbox)["cus_sent"]) == 2


def test_plan_diff_lists_changes_with_one_listing_and_writes_nothing(
    db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(
        data={
            "customers": [_customer(f"cus_{n}") for n in range(4)],
            "invoices": [
                _invoice("cus_0", "EUR", 500, 1),  # below the candidate's threshold: stop
                _invoice("cus_1", "EUR", 5000, 1),  # unchanged
                _invoice("cus_2", "USD", 5000, 1),  # USD only in the candidate: start
                _invoice("cus_3", "EUR", 5000, 1),
            ],
        }
    )
    current = _policy(
        tmp_path,
        "policies:\n  - name: a\n    min_overdue_cents: {EUR: 100}\n    grace_days: 1\n",
    )
    candidate = _policy(
        tmp_path,
        "policies:\n  - name: a\n    min_overdue_cents: {EUR: 1000, USD: 100}\n"
        "    grace_days: 1\n    send_window: {start_hour: 9, end_hour: 10}\n",
        name="candidate.yaml",
    )
    before = count_rows(db)
    sandbox.reset_stats()
    now = datetime(2026, 3, 3, 12, tzinfo=UTC)
    with sweep_runtime(test_settings(db, sandbox, current), clock=Clock()) as rt:
        result = plan_diff(rt, parse_policies(candidate.read_bytes()), now=now)
    assert count_rows(db) == before
    # One invoice listing and one listing of pending payment requests (already_requested).
    assert sandbox.stats()["requests"] == {
        LIST: {"200": 1},
        "GET /api/v1/payment_requests": {"200": 1},
    }
    changes = {row.external_customer_id: row.change for row in result.rows}
    assert changes == {
        "cus_0": "stop",
        "cus_2": "start",
        "cus_1": "next_time",
        "cus_3": "next_time",
    }
    assert result.changes["stop"] == 1
    assert result.amounts["start"] == {"USD": 5000}
    assert result.dunned_current == {"EUR": 10500, "USD": 0}
    assert result.dunned_candidate == {"EUR": 10000, "USD": 5000}
    assert result.to_json()["changes"] == {
        "start": 1,
        "stop": 1,
        "policy": 0,
        "next_time": 2,
        "amount": 0,
    }
