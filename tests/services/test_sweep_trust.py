"""A sweep trusts no listing: against a careless Lago (filters ignored, fields missing, odd
values, checks skipped, wrong answers) it asks only for eligible invoices, accounts for every
invoice it saw, and sends wrong answers to review; where Lago already asked (its own dunning
campaign, a person), it does not ask again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.e2e.sweep_support import (
    GENERATED_POLICY,
    Clock,
    invoice_ids_of,
    sweep_runtime,
    test_settings,
    write_policy,
)
from tests.fixtures.sandbox import SandboxHandle
from worker.services.sweep import SweepSummary, run_sweep
from worker.store.db import make_engine, read_session
from worker.store.models import DecisionRow, GroupStateRow, PaymentRequestIntent


def _sweep(db_url: str, sandbox: SandboxHandle, policy: Path, **kwargs: object) -> SweepSummary:
    settings = test_settings(db_url, sandbox, policy, http_concurrency=8)
    with sweep_runtime(settings, clock=kwargs.pop("clock", None)) as rt:  # type: ignore[arg-type]
        return run_sweep(rt, trigger="cli", **kwargs)  # type: ignore[arg-type]


def _mismatches() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "dunning_answer_mismatches":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def test_a_careless_lago_gets_requests_for_eligible_invoices_only(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(customers=250, seed=3, odd_invoices=True)
    truth = {invoice["lago_id"]: invoice for invoice in sandbox.invoices()}
    sandbox.set_faults(careless=True, careless_answer_rate=0.1, seed=3)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    mismatches_before = _mismatches()

    summary = _sweep(db_url, sandbox, policy)

    # Every invoice was listed (the filters were ignored) and every one is accounted for.
    assert summary.invoices_seen == len(truth)
    assert sum(summary.invoices.values()) == summary.invoices_seen
    for reason in ("not_finalized", "already_paid", "self_billed", "dispute_lost"):
        assert summary.invoices[reason] > 0, reason
    assert summary.invoices["amount_unknown"] > 0  # some rows cannot tell what is due
    created = sandbox.payment_requests()
    assert created
    # Not one request names an invoice that was not dunnable when it was made.
    assert [r["lago_id"] for r in created if r["ineligible_invoice_ids"]] == []
    asked = Counter(lago_id for request in created for lago_id in request["lago_invoice_ids"])
    assert all(truth[lago_id]["payment_overdue"] for lago_id in asked)
    assert max(asked.values()) == 1
    # Wrong answers went to review, with a metric, and were not counted as attempts.
    garbled = [r for r in created if r["delivery"] == "garbled"]
    assert garbled
    assert summary.outcomes["needs_review"] == len(garbled)
    assert summary.outcomes["sent"] == len(created) - len(garbled)
    assert _mismatches() - mismatches_before == len(garbled)
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            review = session.scalars(
                select(PaymentRequestIntent).where(PaymentRequestIntent.status == "needs_review")
            ).all()
            assert {row.last_error_code for row in review} == {"answer_mismatch"}
            assert {row.lago_payment_request_id for row in review} == {
                r["lago_id"] for r in garbled
            }
            attempts = sum(session.scalars(select(GroupStateRow.attempts_used)))
            assert attempts == summary.outcomes["sent"]
            skips = session.scalars(
                select(DecisionRow.reason, DecisionRow.invoice_count).where(
                    DecisionRow.kind == "skip", DecisionRow.policy.is_(None)
                )
            ).all()
            assert skips  # skipped invoices are in the decisions table
    finally:
        engine.dispose()


def test_the_same_data_tidy_and_careless_asks_for_the_same_invoices(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """Where a careless Lago still shows what is due, the worker asks exactly what it asks a
    tidy Lago; the invoices it cannot price are skipped, never guessed."""
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    sandbox.reset(customers=120, seed=9)
    tidy = _sweep(db_url, sandbox, policy, dry_run=True)
    sandbox.set_faults(careless=True)
    careless = _sweep(db_url, sandbox, policy, dry_run=True)

    def attempted(summary: SweepSummary) -> dict[str, int]:
        return {
            f"{row.external_customer_id}|{row.currency}": row.invoice_count
            for row in summary.plan
            if row.kind == "attempt"
        }

    tidy_groups, careless_groups = attempted(tidy), attempted(careless)
    # What a tidy Lago lists as eligible, a careless one shows as eligible, unpriceable
    # (some of those have nothing due), or in flight (a provider payment under way, which
    # Lago would refuse as not ready).
    assert careless.invoices["eligible"] <= tidy.invoices["eligible"]
    assert tidy.invoices["eligible"] <= (
        careless.invoices["eligible"]
        + careless.invoices["amount_unknown"]
        + careless.invoices["payment_in_flight"]
    )
    for key, count in careless_groups.items():
        assert key in tidy_groups
        assert count <= tidy_groups[key]


def _eligible_groups(sandbox: SandboxHandle) -> dict[tuple[str, str, str], list[str]]:
    groups: dict[tuple[str, str, str], list[str]] = {}
    for invoice in sandbox.invoices():
        if (
            invoice["payment_overdue"]
            and invoice["total_due_amount_cents"] > 0
            and not invoice["self_billed"]
            and invoice["status"] == "finalized"
        ):
            key = (
                invoice["customer"]["external_id"],
                invoice["currency"],
                invoice["billing_entity_code"],
            )
            groups.setdefault(key, []).append(invoice["lago_id"])
    return groups


def test_groups_lago_already_asked_are_not_asked_again(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The adversarial repro: requests made in Lago for eight eligible groups, then a sweep."""
    sandbox.reset(customers=300, seed=11)
    groups = _eligible_groups(sandbox)
    asked_in_lago = sorted(groups)[:8]
    for key in asked_in_lago:
        sandbox.create_campaign_payment_request(key[0], groups[key])
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    sandbox.reset_stats()

    plan = _sweep(db_url, sandbox, policy, dry_run=True)
    planned = {
        (row.external_customer_id, row.currency, row.billing_entity_code): row for row in plan.plan
    }
    for key in asked_in_lago:
        assert planned[key].reason == "already_requested"
        assert planned[key].next_eligible_at is not None
    summary = _sweep(db_url, sandbox, policy)

    assert summary.requested_elsewhere == 8
    assert summary.decisions["already_requested"] == 8
    ours = [r for r in sandbox.payment_requests() if r["origin"] == "api"]
    assert ours
    twice = Counter(
        lago_id for request in sandbox.payment_requests() for lago_id in invoice_ids_of(request)
    )
    assert [lago_id for lago_id, count in twice.items() if count > 1] == []
    # One extra listing per sweep (a page of pending requests), not one call per group.
    assert sandbox.request_count("GET /api/v1/payment_requests") == 2  # plan + sweep


def test_after_one_attempt_gap_a_group_asked_elsewhere_is_dunned_again(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(customers=40, seed=2)
    groups = _eligible_groups(sandbox)
    key = sorted(groups)[0]
    sandbox.create_campaign_payment_request(key[0], groups[key])
    policy = write_policy(tmp_path, text=GENERATED_POLICY)  # days_between_attempts: 3
    clock = Clock()

    first = _sweep(db_url, sandbox, policy, clock=clock, now=clock())
    assert first.decisions["already_requested"] == 1
    clock.advance(days=3, seconds=60)
    second = _sweep(db_url, sandbox, policy, clock=clock, now=clock())

    assert second.decisions["already_requested"] == 0
    assert second.outcomes["cancelled"] == 0
    ours = [r for r in sandbox.payment_requests() if r["origin"] == "api"]
    assert sorted(groups[key]) in [sorted(r["lago_invoice_ids"]) for r in ours]


def test_our_own_pending_requests_never_count_as_asked_elsewhere(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(customers=40, seed=2)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    clock = Clock()
    first = _sweep(db_url, sandbox, policy, clock=clock, now=clock())
    assert first.requests_created > 0
    clock.advance(days=3, seconds=60)

    second = _sweep(db_url, sandbox, policy, clock=clock, now=clock())

    assert second.requested_elsewhere == 0
    assert second.decisions["already_requested"] == 0
    assert second.requests_created == first.requests_created  # attempt 2 for every group


def test_an_intent_waiting_to_be_retried_is_withdrawn_when_lago_asks_meanwhile(
    db_url: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """A 405 not-ready reschedules an intent for an hour; Lago's campaign asks meanwhile: the
    next sweep withdraws our intent instead of sending a second request."""
    sandbox.reset(customers=40, seed=2)
    groups = _eligible_groups(sandbox)
    key = sorted(groups)[0]
    for lago_id in groups[key]:
        sandbox.patch_invoice(lago_id, ready_for_payment_processing=False)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    clock = Clock()
    first = _sweep(db_url, sandbox, policy, clock=clock, now=clock())
    assert first.outcomes["rescheduled"] >= 1
    for lago_id in groups[key]:
        sandbox.patch_invoice(lago_id, ready_for_payment_processing=True)
    sandbox.create_campaign_payment_request(key[0], groups[key])
    clock.advance(seconds=3700)

    second = _sweep(db_url, sandbox, policy, clock=clock, now=clock())

    assert second.outcomes["cancelled"] == 1
    ours = [r for r in sandbox.payment_requests() if r["origin"] == "api"]
    assert not any(set(r["lago_invoice_ids"]) & set(groups[key]) for r in ours)
    twice = Counter(
        lago_id for request in sandbox.payment_requests() for lago_id in invoice_ids_of(request)
    )
    assert [lago_id for lago_id, count in twice.items() if count > 1] == []
