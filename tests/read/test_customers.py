"""One customer as the ledger knows them: search and the timeline, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from tests.fixtures.ledger_rows import T0, add_decision, add_intent_row, add_run
from worker.read import reading
from worker.read.customers import customer_timeline, find_customers
from worker.read.intents import open_rivals
from worker.services.operator import Actor
from worker.services.pause_customer import pause_customer
from worker.services.resume_customer import resume_customer
from worker.services.retry_intent import retry_intent
from worker.store.db import write_tx
from worker.store.models import PaymentRequestIntent
from worker.store.operator_actions import ReplayedFormError

ANA = Actor(name="ana", source="console")


def _ledger(engine: Engine) -> int:
    run_id = add_run(engine, started_at=T0)
    add_decision(
        engine,
        run_id=run_id,
        customer="cus_acme_1",
        reason="too_soon",
        kind="skip",
        decided_at=T0,
    )
    paid = add_intent_row(
        engine,
        customer="cus_acme_1",
        amount=5_000,
        outcome="paid",
        recovered=5_000,
        sent_at=T0 - timedelta(days=2),
        paid_after=timedelta(hours=5),
    )
    add_intent_row(engine, customer="cus_other", status="needs_review", sent_at=T0)
    with write_tx(engine) as session:
        session.execute(
            update(PaymentRequestIntent)
            .where(PaymentRequestIntent.id == paid)
            .values(email="Pay@Acme.example")
        )
    return paid


def test_search_by_id_or_email_case_insensitively_with_no_wildcards(engine: Engine) -> None:
    _ledger(engine)
    with reading(engine) as session:
        assert [m.external_customer_id for m in find_customers(session, "ACME")] == ["cus_acme_1"]
        assert [m.external_customer_id for m in find_customers(session, "pay@acme")] == [
            "cus_acme_1"
        ]
        assert {m.external_customer_id for m in find_customers(session, "cus_")} == {
            "cus_acme_1",
            "cus_other",
        }
        assert find_customers(session, "%") == []
        assert find_customers(session, "cus\\_") == []
        assert find_customers(session, "_acme_") != []  # an underscore is itself, not "any"
        assert find_customers(session, "c_s") == []


def test_the_timeline_tells_everything_newest_first(engine: Engine) -> None:
    paid = _ledger(engine)
    pause_customer(
        engine,
        external_customer_id="cus_acme_1",
        reason="dispute",
        until=T0 + timedelta(days=10),
        now=T0 + timedelta(hours=1),
        actor=ANA,
    )
    with reading(engine) as session:
        timeline = customer_timeline(session, "cus_acme_1", now=T0 + timedelta(hours=2))
    assert timeline.known
    assert timeline.paused is not None
    assert timeline.paused.reason == "dispute"
    assert [intent.id for intent in timeline.intents] == [paid]
    assert [(event.kind, event.title) for event in timeline.events] == [
        ("action", "pause by ana (console)"),
        ("decision", "skip: too_soon"),
        ("intent", f"intent #{paid} (attempt 1) outcome: paid"),
        ("intent", f"intent #{paid} (attempt 1) sent"),
        ("intent", f"intent #{paid} (attempt 1) created"),
    ]
    assert timeline.events[0].detail == "why: dispute · until 2026-11-12 10:00 UTC"
    assert timeline.events[2].amount_cents == 5_000
    with reading(engine) as session:
        after_hold = customer_timeline(session, "cus_acme_1", now=T0 + timedelta(days=11))
        nobody = customer_timeline(session, "cus_nobody", now=T0)
    assert after_hold.paused is None  # the hold ended by itself
    assert not nobody.known
    assert nobody.events == ()


def test_a_nonce_applies_once_whatever_the_action(engine: Engine) -> None:
    _ledger(engine)
    once = Actor(name="ana", source="console", form_nonce="n-1")
    pause_customer(
        engine, external_customer_id="cus_other", reason=None, until=None, now=T0, actor=once
    )
    with pytest.raises(ReplayedFormError):
        resume_customer(engine, external_customer_id="cus_other", now=T0, actor=once)
    with reading(engine) as session:
        (intent,) = customer_timeline(session, "cus_other", now=T0).intents
    with pytest.raises(ReplayedFormError):
        retry_intent(engine, intent_id=intent.id, now=T0, actor=once)
    with reading(engine) as session:
        timeline = customer_timeline(session, "cus_other", now=T0)
    assert timeline.paused is not None  # the replayed resume did nothing
    assert timeline.intents[0].status == "needs_review"  # nor did the replayed retry
    assert [event.title for event in timeline.events if event.kind == "action"] == [
        "pause by ana (console)"
    ]


def test_an_open_intent_of_the_same_group_is_the_rival_of_the_others(engine: Engine) -> None:
    stuck = add_intent_row(engine, customer="cus_g", status="needs_review", group_key="g|USD|-")
    other_group = add_intent_row(engine, customer="cus_h", status="needs_review")
    alone = [stuck, other_group]
    with reading(engine) as session:
        assert open_rivals(session, alone) == {}
    newer = add_intent_row(engine, customer="cus_g", status="pending", group_key="g|USD|-")
    add_intent_row(engine, customer="cus_g", status="sent", group_key="g|USD|-")  # not open
    with reading(engine) as session:
        assert open_rivals(session, [stuck, other_group, newer]) == {stuck: newer}
