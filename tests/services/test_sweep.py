"""`run_sweep` end to end: the sandbox as Lago (a real HTTP server), real databases, hand-made
data files and generated data. The CLI on top is tested in tests/e2e/test_sweep_cli*.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from tests.e2e.sweep_support import (
    GENERATED_POLICY,
    Clock,
    count_rows,
    decisions_by_customer,
    hook_receiver,
    invoice_ids_of,
    load_data,
    requests_by_customer,
    sweep_runtime,
    test_settings,
    write_policy,
)
from tests.fixtures.sandbox import SandboxHandle
from worker.lago.errors import FeatureUnavailableError
from worker.services.operator import cli_actor
from worker.services.retry_intent import retry_intent
from worker.services.sweep import SweepSummary, run_sweep
from worker.store import group_states, runs
from worker.store.db import make_engine, read_session
from worker.store.migrate import upgrade
from worker.store.models import DecisionRow, PaymentRequestIntent

POST = "POST /api/v1/payment_requests"
LIST = "GET /api/v1/invoices"


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def scenarios(sandbox: SandboxHandle) -> SandboxHandle:
    sandbox.reset(data=load_data("scenarios"))
    sandbox.reset_stats()
    return sandbox


def _sweep(db_url: str, sandbox: SandboxHandle, policy: Path, **kwargs: object) -> SweepSummary:
    clock = kwargs.pop("clock", None)
    extra = kwargs.pop("settings", {})
    settings = test_settings(db_url, sandbox, policy, **extra)  # type: ignore[arg-type]
    with sweep_runtime(settings, clock=clock) as rt:  # type: ignore[arg-type]
        return run_sweep(rt, trigger="cli", **kwargs)  # type: ignore[arg-type]


def _intent_ids(engine: Engine) -> list[int]:
    with read_session(engine) as session:
        return list(
            session.scalars(select(PaymentRequestIntent.id).order_by(PaymentRequestIntent.id))
        )


def _reasons(summary: SweepSummary) -> dict[tuple[str, str], str]:
    """(customer, currency) -> reason of a dry run (its plan)."""
    assert summary.dry_run
    return {(row.external_customer_id, row.currency): row.reason for row in summary.plan}


@dataclass(frozen=True)
class Recorded:
    reason: str
    next_eligible_at: datetime | None


def _recorded(db_url: str, summary: SweepSummary) -> dict[tuple[str, str], Recorded]:
    """(customer, currency) -> the decision the run recorded in the ledger."""
    assert summary.run_id is not None
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(
                select(DecisionRow).where(DecisionRow.run_id == summary.run_id)
            ).all()
            return {
                (row.external_customer_id, row.currency): Recorded(
                    row.reason, _utc(row.next_eligible_at)
                )
                for row in rows
            }
    finally:
        engine.dispose()


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# One sweep over the hand-made scenarios (both engines)


def test_scenarios_decide_each_case_and_send_one_request_per_group(
    db_url: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path)

    summary = _sweep(db_url, scenarios, policy)

    reasons = {key: found.reason for key, found in _recorded(db_url, summary).items()}
    assert reasons == {
        ("cus_ok", "USD"): "eligible",
        ("cus_small", "USD"): "below_threshold",
        ("cus_excluded_id", "USD"): "excluded",
        ("cus_excluded_meta", "USD"): "excluded",
        ("cus_nomatch", "USD"): "no_policy_matched",
        ("cus_tokyo", "USD"): "eligible",
        ("cus_recent", "EUR"): "eligible",
        ("cus_multi_currency", "EUR"): "eligible",
        ("cus_multi_currency", "USD"): "eligible",
        ("cus_two_entities", "USD"): "eligible",  # two groups, one per billing entity
    }
    assert summary.groups == 11
    assert summary.decisions["eligible"] == 7
    assert summary.requests_created == 7
    assert summary.outcomes == {"sent": 7}

    made = requests_by_customer(scenarios)
    assert set(made) == {
        "cus_ok",
        "cus_tokyo",
        "cus_recent",
        "cus_multi_currency",
        "cus_two_entities",
    }
    # Mixed currencies: one request per currency, each with only that currency's invoices.
    by_currency = {r["amount_currency"]: r for r in made["cus_multi_currency"]}
    assert set(by_currency) == {"USD", "EUR"}
    assert by_currency["USD"]["amount_cents"] == 20000
    assert by_currency["EUR"]["amount_cents"] == 20000
    assert len(invoice_ids_of(by_currency["EUR"])) == 2
    # Two billing entities: two requests, one invoice each.
    entities = made["cus_two_entities"]
    assert sorted(r["amount_cents"] for r in entities) == [20000, 30000]
    assert all(len(invoice_ids_of(r)) == 1 for r in entities)
    # The amount asked is what is still due (net of the partial payment).
    assert made["cus_ok"][0]["amount_cents"] == 12000 + 15000

    # Every decision, skips included, is in the ledger; the run is finished with its counts.
    recorded = decisions_by_customer(db_url)
    assert recorded[("cus_small", "USD")] == ["below_threshold"]
    assert recorded[("cus_nomatch", "USD")] == ["no_policy_matched"]
    assert recorded[("cus_excluded_meta", "USD")] == ["excluded"]
    assert count_rows(db_url)["decisions"] == 11
    # The figures: the API calls reported are the calls the sandbox counted.
    assert summary.api_calls == scenarios.stats()["total"]
    assert scenarios.request_count(POST, 200) == 7
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            assert summary.run_id is not None
            run = runs.get_run(session, summary.run_id)
            assert run is not None
            assert (run.status, run.requests_sent, run.groups) == ("succeeded", 7, 11)
            assert run.api_calls == summary.api_calls
    finally:
        engine.dispose()


def test_a_second_sweep_right_after_the_first_creates_nothing_new(
    db_url: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path)
    first = _sweep(db_url, scenarios, policy)
    rows_after_first = count_rows(db_url)
    scenarios.reset_stats()

    second = _sweep(db_url, scenarios, policy)

    assert first.requests_created == 7
    assert second.requests_created == 0
    assert second.intent_ids == []
    assert len(scenarios.payment_requests()) == 7
    assert scenarios.request_count(POST) == 0
    assert second.decisions["too_soon"] == 7
    rows = count_rows(db_url)
    assert rows["payment_request_intents"] == rows_after_first["payment_request_intents"]
    assert rows["sweep_runs"] == rows_after_first["sweep_runs"] + 1
    assert second.api_calls == scenarios.stats()["total"]


def test_grace_period_counts_from_the_oldest_due_date_in_the_customer_timezone(
    sqlite_db: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    # cus_recent's only invoice was due 2025-03-01 (Paris); grace 5 days -> from 03-07 00:00
    # Paris = 03-06 23:00 UTC. Everyone else's oldest debt is from January.
    policy = write_policy(tmp_path, grace_days=5)
    now = datetime(2025, 3, 6, 22, 0, tzinfo=UTC)

    summary = _sweep(sqlite_db, scenarios, policy, now=now, dry_run=True)

    reasons = _reasons(summary)
    assert reasons[("cus_recent", "EUR")] == "in_grace_period"
    assert reasons[("cus_ok", "USD")] == "eligible"
    row = next(r for r in summary.plan if r.external_customer_id == "cus_recent")
    assert row.next_eligible_at == datetime(2025, 3, 6, 23, 0, tzinfo=UTC)
    later = _sweep(sqlite_db, scenarios, policy, now=datetime(2025, 3, 6, 23, 0, tzinfo=UTC))
    assert _recorded(sqlite_db, later)[("cus_recent", "EUR")].reason == "eligible"
    assert "cus_recent" in requests_by_customer(scenarios)


def test_send_window_uses_each_customer_timezone(
    sqlite_db: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    # Wednesday 12:00 UTC: 13:00 in Paris (inside 9-17), 21:00 in Tokyo (outside).
    policy = write_policy(
        tmp_path, send_window="{start_hour: 9, end_hour: 17, weekdays: [mon, tue, wed, thu, fri]}"
    )
    now = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)

    summary = _sweep(sqlite_db, scenarios, policy, now=now)

    recorded = _recorded(sqlite_db, summary)
    assert recorded[("cus_tokyo", "USD")].reason == "outside_send_window"
    assert recorded[("cus_ok", "USD")].reason == "eligible"
    # Next opening: Thursday 09:00 Tokyo = Thursday 00:00 UTC.
    assert recorded[("cus_tokyo", "USD")].next_eligible_at == datetime(2025, 3, 6, tzinfo=UTC)
    made = requests_by_customer(scenarios)
    assert "cus_tokyo" not in made
    assert "cus_ok" in made


# ---------------------------------------------------------------------------------------------
# Attempts over time


def test_max_attempts_reached_runs_the_exhaustion_webhook_once(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    clock = Clock()
    with hook_receiver() as hook:
        policy = write_policy(tmp_path, max_attempts=1, hook_url=hook.url)

        first = _sweep(db_url, sandbox, policy, clock=clock)
        clock.advance(days=4)
        second = _sweep(db_url, sandbox, policy, clock=clock)
        clock.advance(days=4)
        third = _sweep(db_url, sandbox, policy, clock=clock)

    assert first.requests_created == 2
    assert second.requests_created == 0
    assert second.decisions == {"max_attempts_reached": 2}
    assert second.exhaustion_actions == 2
    assert third.decisions == {"max_attempts_reached": 2}
    assert third.exhaustion_actions == 0
    assert len(hook.bodies) == 2
    solo = next(body for body in hook.bodies if body["external_customer_id"] == "cus_solo")
    assert solo["event"] == "dunning.exhausted"
    assert solo["currency"] == "USD"
    assert solo["overdue_amount_cents"] == 25000 + 35000 + 45000
    assert len(solo["lago_invoice_ids"]) == 3
    assert len(sandbox.payment_requests()) == 2


def test_invoices_paid_between_sweeps_are_not_asked_for_again(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    policy = write_policy(tmp_path, max_attempts=3)
    clock = Clock()
    first = _sweep(db_url, sandbox, policy, clock=clock)
    solo_ids = [
        invoice["lago_id"]
        for invoice in sandbox.invoices()
        if invoice["customer"]["external_id"] == "cus_solo"
    ]
    for lago_id in solo_ids:
        sandbox.pay_invoice(lago_id)
    clock.advance(days=4)  # past days_between_attempts: cus_other is asked a second time

    second = _sweep(db_url, sandbox, policy, clock=clock)

    assert first.requests_created == 2
    assert second.requests_created == 1
    made = requests_by_customer(sandbox)
    assert len(made["cus_solo"]) == 1
    assert len(made["cus_other"]) == 2
    recorded = _recorded(db_url, second)
    assert ("cus_solo", "USD") not in recorded  # paid: no longer in the overdue listing
    assert recorded[("cus_other", "USD")].reason == "eligible"


def test_a_payment_seen_by_the_next_sweep_closes_the_intent_and_resets_the_group(
    sqlite_db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The invoices left the overdue listing: the next sweep confirms the payment with Lago at
    once (not at the intent's next scheduled check) and resets the group's counter."""
    sandbox.reset(data=load_data("one_customer"))
    policy = write_policy(tmp_path, max_attempts=3)
    clock = Clock()
    _sweep(sqlite_db, sandbox, policy, clock=clock)
    for invoice in sandbox.invoices():
        if invoice["customer"]["external_id"] == "cus_solo":
            sandbox.pay_invoice(invoice["lago_id"])
    clock.advance(seconds=60)

    _sweep(sqlite_db, sandbox, policy, clock=clock)

    engine = make_engine(sqlite_db)
    with read_session(engine) as session:
        solo = session.scalars(
            select(PaymentRequestIntent).where(
                PaymentRequestIntent.external_customer_id == "cus_solo"
            )
        ).one()
        other = session.scalars(
            select(PaymentRequestIntent).where(
                PaymentRequestIntent.external_customer_id == "cus_other"
            )
        ).one()
        states = group_states.load_group_states(
            session,
            groups=[
                group_states.GroupRef(solo.external_customer_id, "USD", solo.billing_entity_code)
            ],
        )
    engine.dispose()
    assert solo.outcome == "paid"
    assert solo.recovered_cents == solo.amount_cents
    assert other.outcome == "open"
    assert next(iter(states.values())).attempts_used == 0


def test_a_partly_paid_group_is_asked_only_for_what_is_still_overdue(
    sqlite_db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    policy = write_policy(tmp_path, max_attempts=3)
    clock = Clock()
    _sweep(sqlite_db, sandbox, policy, clock=clock)
    sandbox.pay_invoice("5e1f0000-0000-4000-8000-000000000001")
    clock.advance(days=4)

    _sweep(sqlite_db, sandbox, policy, clock=clock, customer="cus_solo")

    asks = requests_by_customer(sandbox)["cus_solo"]
    assert len(asks) == 2
    assert invoice_ids_of(asks[1]) == {
        "5e1f0000-0000-4000-8000-000000000002",
        "5e1f0000-0000-4000-8000-000000000003",
    }
    assert asks[1]["amount_cents"] == 35000 + 45000


# ---------------------------------------------------------------------------------------------
# Lago answers that change the plan


def test_missing_premium_licence_stops_the_sweep_and_keeps_the_intents(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    sandbox.set_faults(premium=False)
    policy = write_policy(tmp_path)

    with pytest.raises(FeatureUnavailableError):
        _sweep(db_url, sandbox, policy)

    rows = count_rows(db_url)
    assert rows["payment_request_intents"] == 2
    assert rows["decisions"] == 2
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            (run,) = runs.latest_runs(session, limit=5)
            assert run.status == "blocked"
            assert run.error is not None
            assert "premium" in run.error.lower()
    finally:
        engine.dispose()
    assert sandbox.payment_requests() == []

    # Licence back: the operator re-queues the blocked intents (`dunning retry`) and the next
    # sweep sends them, once each; no new intent is made for the same groups. (The send
    # service reconciles first because the refused POST stamped post_started_at; with no
    # settle window it then posts at once.)
    sandbox.set_faults(premium=True)
    engine = make_engine(db_url)
    try:
        for intent_id in _intent_ids(engine):
            retry_intent(engine, intent_id=intent_id, now=datetime.now(UTC), actor=cli_actor())
    finally:
        engine.dispose()
    after = _sweep(db_url, sandbox, policy, settings={"settle_seconds": 0})
    assert after.requests_created == 2
    assert count_rows(db_url)["payment_request_intents"] == 2
    assert len(sandbox.payment_requests()) == 2


def test_a_malformed_invoice_is_recorded_as_a_skip_and_the_sweep_goes_on(
    db_url: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    bad = "0b0c0000-0000-4000-8000-000000000007"  # cus_tokyo's only invoice
    scenarios.patch_invoice(bad, payment_due_date="someday")
    policy = write_policy(tmp_path)

    summary = _sweep(db_url, scenarios, policy)

    assert summary.malformed == 1
    assert summary.decisions["malformed_record"] == 1
    assert summary.invoices["malformed_record"] == 1
    assert summary.requests_created == 6
    assert "cus_tokyo" not in requests_by_customer(scenarios)
    skips = _decisions_with_reason(db_url, "malformed_record")
    assert len(skips) == 1
    assert skips[0].external_customer_id == "cus_tokyo"  # read from the raw row
    assert skips[0].detail is not None
    assert bad in skips[0].detail
    assert "payment_due_date" in skips[0].detail


def test_an_invoice_with_a_currency_we_cannot_read_is_a_reasoned_skip(
    db_url: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    bad = "0b0c0000-0000-4000-8000-000000000007"  # cus_tokyo's only invoice
    scenarios.patch_invoice(bad, currency="dollars")
    policy = write_policy(tmp_path)

    summary = _sweep(db_url, scenarios, policy)

    assert summary.malformed == 0
    assert summary.invoices["no_currency"] == 1
    assert sum(summary.invoices.values()) == summary.invoices_seen
    assert "cus_tokyo" not in requests_by_customer(scenarios)
    [skip] = _decisions_with_reason(db_url, "no_currency")
    assert (skip.external_customer_id, skip.currency, skip.invoice_count) == ("cus_tokyo", "---", 1)
    assert skip.detail is not None
    assert "no valid currency" in skip.detail


def _decisions_with_reason(db_url: str, reason: str) -> list[DecisionRow]:
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(select(DecisionRow).where(DecisionRow.reason == reason)).all()
            session.expunge_all()
            return list(rows)
    finally:
        engine.dispose()


def test_not_overdue_between_decision_and_post_retries_once_with_the_rest(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    policy = write_policy(tmp_path)
    settings = test_settings(db_url, sandbox, policy)
    leaving = "5e1f0000-0000-4000-8000-000000000002"
    listings: list[str] = []

    def observe(endpoint: str, outcome: str, seconds: float) -> None:
        # Right after the sweep's listing, one of cus_solo's invoices stops being overdue
        # (e.g. paid outside Lago and marked so): the decision still includes it.
        if endpoint == LIST:
            listings.append(outcome)
            if len(listings) == 1:
                sandbox.patch_invoice(leaving, payment_overdue=False)

    sandbox.reset_stats()
    with sweep_runtime(settings, observer=observe) as rt:
        summary = run_sweep(rt, trigger="cli", customer="cus_solo")

    assert summary.refused_codes == {"invoices_not_overdue": 1}
    assert summary.outcomes == {"refused": 1, "sent": 1}
    assert len(summary.intent_ids) == 2
    (request,) = sandbox.payment_requests()
    assert invoice_ids_of(request) == {
        "5e1f0000-0000-4000-8000-000000000001",
        "5e1f0000-0000-4000-8000-000000000003",
    }
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(
                select(PaymentRequestIntent).order_by(PaymentRequestIntent.id)
            ).all()
            assert [(r.status, r.last_error_code) for r in rows] == [
                ("refused", "invoices_not_overdue"),
                ("sent", None),
            ]
            # The retry records what it asks for: the two invoices still overdue.
            assert [r.amount_cents for r in rows] == [105000, 25000 + 45000]
            assert rows[1].attempt_number == rows[0].attempt_number == 1
    finally:
        engine.dispose()
    assert sandbox.request_count(POST, 405) == 1
    assert sandbox.request_count(POST, 200) == 1
    assert len(listings) == 2  # the sweep's listing, then one refresh of that customer
    assert summary.api_calls == sandbox.stats()["total"]


# ---------------------------------------------------------------------------------------------
# Options


def test_dry_run_writes_nothing_and_sends_nothing(
    db_url: str, scenarios: SandboxHandle, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path)
    before = count_rows(db_url)

    summary = _sweep(db_url, scenarios, policy, dry_run=True)

    assert summary.decisions["eligible"] == 7
    assert summary.run_id is None
    assert count_rows(db_url) == before
    assert scenarios.payment_requests() == []
    assert scenarios.request_count(POST) == 0
    # One page of pending payment requests (already_requested) and one page of invoices.
    assert summary.api_calls == scenarios.stats()["total"] == 2


def test_customer_option_lists_only_that_customer(
    sqlite_db: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    # 60 customers x 4 invoices: the full overdue listing needs several pages of 100.
    sandbox.reset(customers=60, invoices_per_customer=4, seed=11)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    full = _sweep(sqlite_db, sandbox, policy, dry_run=True)
    assert full.invoices_seen > 100
    full_calls = sandbox.request_count(LIST)
    sandbox.reset_stats()

    only = _sweep(sqlite_db, sandbox, policy, customer="cus_00002")

    assert full_calls >= 2
    assert sandbox.request_count(LIST) == 1
    assert {customer for customer, _ in _recorded(sqlite_db, only)} == {"cus_00002"}
    assert only.invoices_seen == 4
    assert set(requests_by_customer(sandbox)) == {"cus_00002"}
    assert only.api_calls == sandbox.stats()["total"]


def test_generated_data_sends_one_request_per_eligible_group_and_counts_calls(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    sandbox.reset_stats()

    summary = _sweep(db_url, sandbox, policy)
    again = _sweep(db_url, sandbox, policy)

    eligible = summary.decisions["eligible"]
    assert eligible > 0
    assert summary.requests_created + summary.outcomes["refused"] == eligible
    requests = sandbox.payment_requests()
    assert len(requests) == summary.requests_created
    seen: set[str] = set()
    for request in requests:
        ids = invoice_ids_of(request)
        assert not ids & seen  # no invoice is asked for twice
        seen |= ids
    assert again.requests_created == 0
    assert summary.api_calls + again.api_calls == sandbox.stats()["total"]
