"""Ledger support for the policy features, on both engines: holds that end by themselves,
recent contacts per customer, stored policy files and cycle pins, holdout entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from worker.store import contacts, controls, group_states, holdouts, intents, policy_files
from worker.store.db import read_session, write_tx
from worker.store.models import HoldoutEntry

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _intent(session, *, customer="cus_1", currency="EUR", attempt=1, policy_hash="h1"):
    return intents.add_intent(
        session,
        run_id=None,
        external_customer_id=customer,
        currency=currency,
        billing_entity_code=None,
        invoice_ids=[f"inv_{customer}_{currency}_{attempt}"],
        amount_cents=1000,
        email=None,
        policy="p",
        attempt_number=attempt,
        now=T0,
        policy_version="v1",
        policy_hash=policy_hash,
    )


def _mark_sent(engine: Engine, intent_id: int, at: datetime) -> None:
    claimed = intents.claim_intents(
        engine, owner="w", now=at, lease_seconds=60, limit=1, intent_ids=[intent_id]
    )
    assert claimed
    with write_tx(engine) as session:
        assert intents.record_sent(
            session, intent_id=intent_id, owner="w", now=at,
            lago_payment_request_id=f"pr_{intent_id}", lago_invoice_ids=[],
        )  # fmt: skip


def test_a_hold_stops_claims_until_it_ends_then_they_resume_by_themselves(engine: Engine) -> None:
    with write_tx(engine) as session:
        intent_id = _intent(session)
        controls.pause_customer(
            session, external_customer_id="cus_1", reason="promise to pay", now=T0,
            until=T0 + timedelta(days=2),
        )  # fmt: skip
    during = T0 + timedelta(days=1)
    with read_session(engine) as session:
        assert intents.due_intent_ids(session, now=during) == []
        state = group_states.load_group_states(
            session, groups=[group_states.GroupRef("cus_1", "EUR", None)], now=during
        )
        assert state["cus_1|EUR|-"].paused
        assert state["cus_1|EUR|-"].hold_until == T0 + timedelta(days=2)
    after = T0 + timedelta(days=2, seconds=1)
    with read_session(engine) as session:
        assert intents.due_intent_ids(session, now=after) == [intent_id]
        state = group_states.load_group_states(
            session, groups=[group_states.GroupRef("cus_1", "EUR", None)], now=after
        )
        assert not state["cus_1|EUR|-"].paused


def test_a_hold_must_end_in_the_future(engine: Engine) -> None:
    with write_tx(engine) as session, pytest.raises(ValueError, match="future"):
        controls.pause_customer(session, external_customer_id="c", reason=None, now=T0, until=T0)


def test_recent_contacts_count_every_currency_and_open_intents(engine: Engine) -> None:
    with write_tx(engine) as session:
        usd = _intent(session, currency="USD")
        _intent(session, currency="EUR")  # pending: counts from its creation
        _intent(session, customer="cus_2")
    _mark_sent(engine, usd, T0 + timedelta(hours=1))
    with read_session(engine) as session:
        found = contacts.recent_contacts(
            session, external_customer_ids=["cus_1", "cus_3"], since=T0 - timedelta(days=1)
        )
        assert found == {"cus_1": [T0, T0 + timedelta(hours=1)]}
        later = contacts.recent_contacts(
            session, external_customer_ids=["cus_1"], since=T0 + timedelta(minutes=30)
        )
        assert later == {"cus_1": [T0 + timedelta(hours=1)]}


def test_policy_files_are_stored_once_and_pins_follow_the_latest_first_attempt(
    engine: Engine,
) -> None:
    with write_tx(engine) as session:
        for body in (b"version: 1 # a", b"version: 1 # changed"):
            policy_files.remember_policy_file(
                session, version_hash="h1", source="p.yaml", body=body, now=T0
            )
        first = _intent(session, policy_hash="h1")
    _mark_sent(engine, first, T0)
    with read_session(engine) as session:
        assert policy_files.policy_file_body(session, "h1") == "version: 1 # a"
        pins = policy_files.cycle_pins(session, group_keys=["cus_1|EUR|-", "cus_9|EUR|-"])
        assert pins == {"cus_1|EUR|-": policy_files.CyclePin("h1", "p", "v1")}


def test_one_open_holdout_entry_per_group(engine: Engine) -> None:
    entry = holdouts.NewHoldout("cus_1", "EUR", None, "p", "v1", "h1", ("inv_1",), 500)
    with write_tx(engine) as session:
        assert holdouts.enter_holdouts(session, entries=[entry], now=T0) == 1
        assert holdouts.enter_holdouts(session, entries=[entry], now=T0) == 0
    with write_tx(engine) as session:
        (row,) = holdouts.open_entries(session, limit=10)
        holdouts.record_holdout_outcome(
            session, entry_id=row.id, outcome="paid", recovered_cents=500, final=True,
            now=T0 + timedelta(days=3),
        )  # fmt: skip
    with write_tx(engine) as session:
        assert holdouts.open_entries(session, limit=10) == []
        assert holdouts.enter_holdouts(session, entries=[entry], now=T0 + timedelta(days=9)) == 1
    with read_session(engine) as session:
        rows = session.scalars(select(HoldoutEntry).order_by(HoldoutEntry.id)).all()
    assert [(r.outcome, r.resolved_at is not None) for r in rows] == [("paid", True), (None, False)]
