"""Who needs a human, and what the next sweep is expected to ask."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.fixtures.ledger_rows import T0, add_decision, add_intent_row, add_run, add_snapshot
from worker.read import reading
from worker.read.actions import action_list
from worker.read.next_sweep import group_outlook, next_sweep
from worker.store.controls import pause_customer
from worker.store.db import write_tx

NEXT = T0 + timedelta(minutes=15)


def _full_run(engine: Engine, started: timedelta = timedelta()) -> int:
    run_id = add_run(engine, started_at=T0 + started)
    add_snapshot(engine, run_id=run_id, figures=[], taken_at=T0 + started)
    return run_id


def test_the_action_list(engine: Engine) -> None:
    add_intent_row(
        engine,
        customer="cus_review",
        status="needs_review",
        amount=2500,
        error="5 unknown outcomes",
    )
    add_intent_row(engine, customer="cus_blocked", status="blocked", amount=100)
    add_intent_row(
        engine,
        customer="cus_refused",
        status="refused",
        amount=700,
        error_code="invoices_not_overdue",
    )
    # refused, then a later attempt for the same group: superseded, not on the list
    add_intent_row(engine, customer="cus_retried", status="refused", amount=900)
    add_intent_row(engine, customer="cus_retried", status="sent", amount=900)
    old_run = _full_run(engine, -timedelta(hours=1))
    add_decision(
        engine, run_id=old_run, customer="cus_gone", kind="exhausted", reason="max_attempts_reached"
    )
    run_id = _full_run(engine)
    add_decision(
        engine,
        run_id=run_id,
        customer="cus_exhausted",
        kind="exhausted",
        reason="max_attempts_reached",
        amount=4200,
    )
    for currency, amount in (("USD", 300), ("EUR", 400)):
        add_decision(
            engine,
            run_id=run_id,
            customer="cus_paused",
            reason="paused",
            currency=currency,
            amount=amount,
        )
    with write_tx(engine) as session:
        pause_customer(session, external_customer_id="cus_paused", reason="disputing", now=T0)
        pause_customer(session, external_customer_id="cus_paused_idle", reason=None, now=T0)
        pause_customer(  # a hold that ended before now: nobody to act on
            session,
            external_customer_id="cus_hold_over",
            reason=None,
            now=T0 - timedelta(days=2),
            until=T0 - timedelta(days=1),
        )

    with reading(engine) as session:
        items = action_list(session, now=T0)
    seen = [(i.kind, i.external_customer_id, i.currency, i.amount_cents) for i in items]
    assert seen == [
        ("needs_review", "cus_review", "USD", 2500),
        ("blocked", "cus_blocked", "USD", 100),
        ("refused", "cus_refused", "USD", 700),
        ("paused", "cus_paused", "EUR", 400),
        ("paused", "cus_paused", "USD", 300),
        ("paused", "cus_paused_idle", None, None),  # paused, owes nothing we know of
        ("exhausted", "cus_exhausted", "USD", 4200),  # from the newest full sweep only
    ]
    assert items[0].detail == "5 unknown outcomes"
    assert items[2].detail == "invoices_not_overdue"
    assert items[3].detail == "disputing (until resumed)"


def test_the_next_sweep_asks_retries_due_and_waits_that_end(engine: Engine) -> None:
    retry = add_intent_row(
        engine, customer="cus_retry", status="pending", tries=1, amount=111, next_attempt_at=NEXT
    )
    add_intent_row(  # due later than the next sweep
        engine,
        customer="cus_later",
        status="pending",
        tries=1,
        next_attempt_at=NEXT + timedelta(hours=1),
    )
    run_id = _full_run(engine)
    add_decision(
        engine,
        run_id=run_id,
        customer="cus_soon",
        kind="wait",
        reason="too_soon",
        amount=222,
        next_eligible_at=NEXT - timedelta(minutes=1),
    )
    add_decision(  # its wait ends after the next sweep
        engine,
        run_id=run_id,
        customer="cus_week",
        kind="wait",
        reason="too_soon",
        next_eligible_at=NEXT + timedelta(days=7),
    )
    add_decision(  # never ends by itself
        engine, run_id=run_id, customer="cus_small", reason="below_threshold", next_eligible_at=None
    )
    add_decision(  # the same group as the retry: counted once
        engine,
        run_id=run_id,
        customer="cus_retry",
        kind="wait",
        reason="too_soon",
        next_eligible_at=NEXT,
    )
    add_decision(  # paused customers are not asked
        engine,
        run_id=run_id,
        customer="cus_paused",
        kind="wait",
        reason="in_grace_period",
        next_eligible_at=NEXT,
    )
    with write_tx(engine) as session:
        pause_customer(session, external_customer_id="cus_paused", reason=None, now=T0)

    with reading(engine) as session:
        plan = next_sweep(session, at=NEXT, now=T0)
    assert [(a.why, a.external_customer_id, a.amount_cents) for a in plan.asks] == [
        ("retry", "cus_retry", 111),
        ("attempt", "cus_soon", 222),
    ]
    assert plan.asks[0].intent_id == retry
    assert plan.based_on_run == run_id
    assert plan.totals() == {"USD": (2, 333)}


def test_every_group_of_the_last_full_sweep_with_what_happens_next(engine: Engine) -> None:
    _full_run(engine, started=-timedelta(hours=1))  # older decisions do not count
    run_id = _full_run(engine)
    for customer, reason, kind, eligible in (
        ("cus_later", "too_soon", "wait", NEXT + timedelta(days=2)),
        ("cus_soon", "in_grace_period", "wait", NEXT - timedelta(minutes=5)),
        ("cus_out", "below_threshold", "skip", None),
        ("cus_inv", "already_paid", "skip", None),
    ):
        add_decision(
            engine,
            run_id=run_id,
            customer=customer,
            reason=reason,
            kind=kind,
            next_eligible_at=eligible,
        )
    with reading(engine) as session:
        plan = next_sweep(session, at=NEXT, now=T0)
        outlook = group_outlook(session, plan)
    assert [(g.external_customer_id, g.asked_next, g.next_eligible_at) for g in outlook] == [
        ("cus_soon", True, NEXT - timedelta(minutes=5)),
        ("cus_later", False, NEXT + timedelta(days=2)),
        ("cus_out", False, None),
    ]  # an invoice-level skip (already paid) is not a group


def test_no_full_sweep_no_outlook(engine: Engine) -> None:
    with reading(engine) as session:
        assert group_outlook(session, next_sweep(session, at=NEXT, now=T0)) == []
