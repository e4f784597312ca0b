"""Repository functions on both engines: dedupe, one open intent per group, claims, results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from worker.policy.types import group_key as policy_group_key
from worker.store import controls, decisions, group_states, intents, runs, webhook_events
from worker.store.db import read_session, write_tx
from worker.store.keys import make_dedupe_key, make_group_key
from worker.store.models import PaymentRequestIntent, SweepRun, WebhookEvent

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _add(session, *, customer="cus_1", invoices=("inv_b", "inv_a"), attempt=1, run_id=None):
    return intents.add_intent(
        session,
        run_id=run_id,
        external_customer_id=customer,
        currency="EUR",
        billing_entity_code=None,
        invoice_ids=invoices,
        amount_cents=1200,
        email=None,
        policy="default",
        attempt_number=attempt,
        now=T0,
    )


def test_group_key_matches_the_policy_layer() -> None:
    assert make_group_key("c", "EUR", None) == policy_group_key("c", "EUR", None)
    assert make_group_key("c", "USD", "acme") == policy_group_key("c", "USD", "acme")


def test_dedupe_key_ignores_invoice_order_but_not_attempt() -> None:
    key = make_group_key("c", "EUR", None)
    assert make_dedupe_key(key, ["b", "a"], 1) == make_dedupe_key(key, ["a", "b"], 1)
    assert make_dedupe_key(key, ["a", "b"], 1) != make_dedupe_key(key, ["a", "b"], 2)


def test_double_sweep_inserts_nothing_new(engine: Engine) -> None:
    with write_tx(engine) as session:
        first = _add(session)
    with write_tx(engine) as session:
        second = _add(session)
    assert first is not None
    assert second is None
    with read_session(engine) as session:
        rows = session.scalars(select(PaymentRequestIntent)).all()
    assert [row.id for row in rows] == [first]
    assert rows[0].invoice_ids == ["inv_a", "inv_b"]
    assert rows[0].next_attempt_at == T0
    assert rows[0].created_at.tzinfo is not None


def test_only_one_open_intent_per_group(engine: Engine) -> None:
    with write_tx(engine) as session:
        first = _add(session, invoices=("inv_a",))
        other_invoices = _add(session, invoices=("inv_a", "inv_c"), attempt=2)
        other_customer = _add(session, customer="cus_2", invoices=("inv_z",))
    assert first is not None
    assert other_invoices is None
    assert other_customer is not None
    # Once the open one is finished, the group may get its next intent.
    [claimed] = intents.claim_intents(
        engine, owner="w1", now=T0, lease_seconds=60, limit=1, intent_ids=[first]
    )
    with write_tx(engine) as session:
        assert intents.record_sent(
            session,
            intent_id=claimed.id,
            owner="w1",
            now=T0,
            lago_payment_request_id="pr_1",
            lago_invoice_ids=["inv_a"],
        )
        assert _add(session, invoices=("inv_a", "inv_c"), attempt=2) is not None


def test_many_intents_in_one_call_keep_every_field_and_skip_each_conflict(
    engine: Engine,
) -> None:
    """`add_intents` writes one statement (an unnest on PostgreSQL): each row keeps its own
    values, and a row refused by either unique index is skipped without failing the rest."""
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=T0)
        existing = _add(session, customer="cus_old", invoices=("inv_o",))
    fresh = intents.NewIntent(
        external_customer_id="cus_a",
        currency="USD",
        billing_entity_code="acme-us",
        invoice_ids=("inv_2", "inv_1", "inv_2"),
        amount_cents=12_345_678_901,
        email="ap@a.test",
        policy="strict",
        attempt_number=3,
        policy_version="v7",
        policy_hash="f" * 64,
        channel="retry_and_email",
    )
    bare = intents.NewIntent(
        external_customer_id="cus_b",
        currency="EUR",
        billing_entity_code=None,
        invoice_ids=("inv_9",),
        amount_cents=1,
        email=None,
        policy=None,
        attempt_number=1,
    )
    same_key = intents.NewIntent(  # the dedupe key of `existing`
        external_customer_id="cus_old",
        currency="EUR",
        billing_entity_code=None,
        invoice_ids=("inv_o",),
        amount_cents=1200,
        email=None,
        policy="default",
        attempt_number=1,
    )
    open_group = intents.NewIntent(  # `existing`'s group is still open
        external_customer_id="cus_old",
        currency="EUR",
        billing_entity_code=None,
        invoice_ids=("inv_o", "inv_p"),
        amount_cents=2400,
        email=None,
        policy="default",
        attempt_number=2,
    )
    later = T0 + timedelta(hours=2)
    with write_tx(engine) as session:
        inserted = intents.add_intents(
            session,
            run_id=run_id,
            intents=[fresh, same_key, bare, open_group],
            now=T0,
            next_attempt_at=later,
        )
    assert set(inserted) == {fresh.dedupe_key, bare.dedupe_key}
    with read_session(engine) as session:
        rows = {
            row.id: row
            for row in session.scalars(
                select(PaymentRequestIntent).order_by(PaymentRequestIntent.id)
            )
        }
    assert sorted(rows) == sorted([existing, *inserted.values()])
    a = rows[inserted[fresh.dedupe_key]]
    assert (a.external_customer_id, a.currency, a.billing_entity_code) == (
        "cus_a",
        "USD",
        "acme-us",
    )
    assert a.invoice_ids == ["inv_1", "inv_2"]
    assert (a.amount_cents, a.email, a.policy, a.attempt_number) == (
        12_345_678_901,
        "ap@a.test",
        "strict",
        3,
    )
    assert (a.policy_version, a.policy_hash, a.channel) == ("v7", "f" * 64, "retry_and_email")
    assert (a.run_id, a.status, a.tries, a.ambiguous_tries) == (run_id, "pending", 0, 0)
    assert (a.next_attempt_at, a.created_at, a.updated_at) == (later, T0, T0)
    assert a.group_key == fresh.group_key
    assert a.dedupe_key == fresh.dedupe_key
    b = rows[inserted[bare.dedupe_key]]
    assert (b.billing_entity_code, b.email, b.policy, b.policy_version, b.policy_hash) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert (b.channel, b.invoice_ids, b.amount_cents) == ("payment_request", ["inv_9"], 1)
    with write_tx(engine) as session:
        assert intents.add_intents(session, run_id=None, intents=[], now=T0) == {}


def test_double_tick_slot_inserts_nothing(engine: Engine) -> None:
    with write_tx(engine) as session:
        first = runs.claim_tick_slot(session, slot="2026-11-22T09:00Z", trigger="beat", now=T0)
    with write_tx(engine) as session:
        second = runs.claim_tick_slot(session, slot="2026-11-22T09:00Z", trigger="beat", now=T0)
        other = runs.claim_tick_slot(session, slot="2026-11-22T09:05Z", trigger="beat", now=T0)
    assert first is not None
    assert second is None
    assert other is not None
    assert other != first
    with read_session(engine) as session:
        assert len(session.scalars(select(SweepRun)).all()) == 2


def test_run_lifecycle(engine: Engine) -> None:
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=T0, policy_version="abc")
    with write_tx(engine) as session:
        runs.finish_run(
            session,
            run_id=run_id,
            now=T0 + timedelta(seconds=5),
            status="failed",
            counts=runs.RunCounts(invoices_seen=10, groups=3, api_calls=4),
            error="boom\nsecond line",
        )
    with read_session(engine) as session:
        run = runs.get_run(session, run_id)
        assert run is not None
        assert (run.status, run.invoices_seen, run.groups, run.api_calls) == ("failed", 10, 3, 4)
        assert run.error == "boom second line"
        assert run.finished_at == T0 + timedelta(seconds=5)
        assert [r.id for r in runs.latest_runs(session)] == [run_id]
    with pytest.raises(ValueError, match="trigger"), write_tx(engine) as session:
        runs.start_run(session, trigger="nope", now=T0)


def test_claim_takes_due_and_expired_and_skips_leased(engine: Engine) -> None:
    with write_tx(engine) as session:
        due = _add(session, customer="a")
        later = intents.add_intent(
            session,
            run_id=None,
            external_customer_id="b",
            currency="EUR",
            billing_entity_code="be",
            invoice_ids=["x"],
            amount_cents=1,
            email="b@example.com",
            policy=None,
            attempt_number=1,
            now=T0,
            next_attempt_at=T0 + timedelta(hours=1),
        )
    claimed = intents.claim_intents(engine, owner="w1", now=T0, lease_seconds=60, limit=10)
    assert [c.id for c in claimed] == [due]
    first = claimed[0]
    assert first.earlier_post_started_at is None
    assert (first.tries, first.ambiguous_tries, first.lease_was_expired) == (1, 0, False)
    # Leased: nobody else gets it until the lease expires.
    assert intents.claim_intents(engine, owner="w2", now=T0, lease_seconds=60, limit=10) == []
    # w1 dies before its POST starts: taking over is no unknown outcome.
    after = T0 + timedelta(seconds=61)
    taken_over = intents.claim_intents(engine, owner="w2", now=after, lease_seconds=60, limit=10)
    assert [c.id for c in taken_over] == [due]
    assert taken_over[0].earlier_post_started_at is None
    assert (taken_over[0].tries, taken_over[0].ambiguous_tries) == (2, 0)
    assert taken_over[0].lease_was_expired
    # w2 starts its POST (stamped) and dies: the next holder must reconcile first.
    with write_tx(engine) as session:
        assert intents.mark_post_started(session, owner="w2", intent_ids=[due], now=after) == {due}
        # Only the lease holder can stamp.
        assert intents.mark_post_started(session, owner="w1", intent_ids=[due], now=after) == set()
    then = after + timedelta(seconds=61)
    third = intents.claim_intents(engine, owner="w3", now=then, lease_seconds=60, limit=10)
    assert [c.id for c in third] == [due]
    assert third[0].earlier_post_started_at == after
    assert (third[0].tries, third[0].ambiguous_tries) == (3, 1)
    # The dead workers can no longer record a result.
    with write_tx(engine) as session:
        for dead in ("w1", "w2"):
            assert not intents.record_refused(
                session, intent_id=due, owner=dead, now=then, error_code="x", error="y"
            )
    # The later one becomes due in an hour.
    hour = T0 + timedelta(hours=1)
    assert [
        c.id
        for c in intents.claim_intents(
            engine, owner="w3", now=hour, lease_seconds=60, limit=1, intent_ids=[later]
        )
    ] == [later]


def test_paused_customers_are_not_claimed(engine: Engine) -> None:
    with write_tx(engine) as session:
        intent_id = _add(session, customer="cus_p")
        controls.pause_customer(session, external_customer_id="cus_p", reason="dispute", now=T0)
    assert intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=5) == []
    with read_session(engine) as session:
        assert controls.paused_customers(session) == {"cus_p"}
        assert intents.due_intent_ids(session, now=T0) == []
    with write_tx(engine) as session:
        controls.resume_customer(session, external_customer_id="cus_p", now=T0)
    claimed = intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=5)
    assert [c.id for c in claimed] == [intent_id]


def test_reschedule_and_results(engine: Engine) -> None:
    with write_tx(engine) as session:
        intent_id = _add(session)
    assert intent_id is not None
    [claim] = intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=1)
    later = T0 + timedelta(minutes=5)
    with write_tx(engine) as session:
        assert intents.mark_post_started(session, owner="w", intent_ids=[intent_id], now=T0)
        assert intents.reschedule(
            session,
            intent_id=intent_id,
            owner="w",
            now=T0,
            next_attempt_at=later,
            error_code="timeout",
            error="no answer",
            clear_post_started=False,
            count_ambiguous=True,
        )
    with read_session(engine) as session:
        row = intents.get_intent(session, intent_id)
        assert row is not None
        assert (row.status, row.ambiguous_tries, row.post_started_at) == ("pending", 1, T0)
        assert row.lease_owner is None
        assert row.next_attempt_at == later
    assert intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=1) == []
    [again] = intents.claim_intents(engine, owner="w", now=later, lease_seconds=60, limit=1)
    assert again.earlier_post_started_at == T0
    with write_tx(engine) as session:
        assert intents.record_sent(
            session,
            intent_id=intent_id,
            owner="w",
            now=later,
            lago_payment_request_id="pr_9",
            lago_invoice_ids=["inv_a"],
            adopted=True,
            detail="found in Lago",
        )
        assert intents.set_outcome(
            session,
            intent_id=intent_id,
            outcome="paid",
            recovered_cents=1200,
            now=later,
            resolved=True,
        )
    with read_session(engine) as session:
        row = intents.get_intent(session, intent_id)
        assert row is not None
        assert (row.status, row.lago_payment_request_id, row.lago_invoice_ids) == (
            "adopted",
            "pr_9",
            ["inv_a"],
        )
        assert (row.outcome, row.recovered_cents) == ("paid", 1200)
        assert intents.known_lago_ids(session, lago_ids=["pr_9", "pr_x"]) == {"pr_9"}
        assert intents.count_by_status(session) == {"adopted": 1}
    assert claim.id == intent_id


def test_cancel_only_pending(engine: Engine) -> None:
    with write_tx(engine) as session:
        a = _add(session, customer="a")
        b = _add(session, customer="b")
    assert a is not None
    assert b is not None
    intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=1, intent_ids=[b])
    with write_tx(engine) as session:
        assert intents.cancel_intent(session, intent_id=a, now=T0, reason="paid")
        assert not intents.cancel_intent(session, intent_id=b, now=T0, reason="paid")
        assert intents.open_group_keys(
            session, group_keys=[make_group_key("a", "EUR", None), make_group_key("b", "EUR", None)]
        ) == {make_group_key("b", "EUR", None)}


def test_group_states_bulk_read_and_attempts(engine: Engine) -> None:
    refs = [group_states.GroupRef(f"cus_{i}", "EUR", "be" if i % 2 else None) for i in range(1200)]
    with write_tx(engine) as session:
        group_states.record_attempt(
            session,
            external_customer_id="cus_1",
            currency="EUR",
            billing_entity_code="be",
            invoice_ids=["i2", "i1"],
            now=T0,
        )
        group_states.record_attempt(
            session,
            external_customer_id="cus_1",
            currency="EUR",
            billing_entity_code="be",
            invoice_ids=["i3"],
            now=T0 + timedelta(days=3),
        )
        assert group_states.mark_exhausted(
            session, external_customer_id="cus_2", currency="EUR", billing_entity_code=None, now=T0
        )
        assert not group_states.mark_exhausted(
            session, external_customer_id="cus_2", currency="EUR", billing_entity_code=None, now=T0
        )
        controls.pause_customer(session, external_customer_id="cus_3", reason=None, now=T0)
        _add(session, customer="cus_4", invoices=("q",))
    with read_session(engine) as session:
        states = group_states.load_group_states(session, groups=refs)
    assert len(states) == 1200
    one = states[refs[1].key]
    assert (one.attempts_used, one.last_attempt_at) == (2, T0 + timedelta(days=3))
    assert one.last_dunned_invoice_ids == ("i3",)
    assert states[refs[2].key].exhaustion_handled
    assert states[refs[3].key].paused
    assert states[refs[4].key].open_intent
    assert states[refs[5].key] == group_states.StoredGroupState()
    with write_tx(engine) as session:
        group_states.reset_group(
            session, external_customer_id="cus_1", currency="EUR", billing_entity_code="be", now=T0
        )
    with read_session(engine) as session:
        assert (
            group_states.load_group_states(session, groups=[refs[1]])[refs[1].key].attempts_used
            == 0
        )


def test_decisions_recorded_in_bulk(engine: Engine) -> None:
    with write_tx(engine) as session:
        run_id = runs.start_run(session, trigger="cli", now=T0)
        records = [
            decisions.DecisionRecord(
                external_customer_id=f"cus_{i % 50}",
                currency="EUR",
                billing_entity_code=None,
                policy="default",
                kind="skip",
                reason="below_threshold",
                detail="under 10.00 EUR",
                amount_cents=i,
                invoice_count=1,
                next_eligible_at=None,
                decided_at=T0 + timedelta(seconds=i),
            )
            for i in range(2500)
        ]
        assert decisions.record_decisions(session, run_id=run_id, decisions=records) == 2500
    with read_session(engine) as session:
        assert len(decisions.decisions_for_run(session, run_id=run_id)) == 2500
        latest = decisions.latest_decisions_for_customer(
            session, external_customer_id="cus_7", limit=3
        )
        assert [d.amount_cents for d in latest] == [2457, 2407, 2357]
        assert latest[0].decided_at.tzinfo is not None


def test_naive_datetimes_are_rejected(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), write_tx(engine) as session:
        runs.start_run(session, trigger="cli", now=datetime(2026, 1, 1))


def test_a_webhook_event_is_unique_by_key_and_by_signed_body(engine: Engine) -> None:
    body, replayed_body = b'{"webhook_type": "a"}', b'{"webhook_type": "b"}'
    first, other = webhook_events.payload_digest(body), webhook_events.payload_digest(replayed_body)
    with write_tx(engine) as session:
        assert webhook_events.insert_webhook_event(
            session, unique_key="k1", digest=first, webhook_type="a", now=T0
        )
    for key, digest in (("k2", first), ("k1", other)):  # a new key, or a new body
        with write_tx(engine) as session:
            assert not webhook_events.insert_webhook_event(
                session, unique_key=key, digest=digest, webhook_type="a", now=T0
            )
    with read_session(engine) as session:
        assert webhook_events.webhook_seen(session, unique_key="k9", digest=first)
        assert webhook_events.webhook_seen(session, unique_key="k1", digest=other)
        assert not webhook_events.webhook_seen(session, unique_key="k9", digest=other)
        assert session.scalars(select(WebhookEvent.payload_digest)).all() == [first]


def _claimed_pair(engine: Engine) -> tuple[int, int]:
    with write_tx(engine) as session:
        first = _add(session, customer="cus_q1", invoices=("inv_1",))
        second = _add(session, customer="cus_q2", invoices=("inv_3", "inv_2"))
    assert first is not None
    assert second is not None
    claimed = intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=10)
    assert {c.id for c in claimed} == {first, second}
    return first, second


def test_quick_stamp_and_record_write_each_row_its_own_values(engine: Engine) -> None:
    first, second = _claimed_pair(engine)
    with write_tx(engine) as session:
        intents.stamp_held(session, owner="w", intent_ids=[first, second], now=T0)
    sent_at = T0 + timedelta(seconds=2)
    with write_tx(engine) as session:
        intents.record_sent_held(
            session,
            owner="w",
            now=sent_at,
            results=[
                intents.SentResult(first, "pr_1", ("inv_1",)),
                intents.SentResult(second, "pr_2", ("inv_3", "inv_2"), detail="inv_4\n dropped"),
            ],
        )
    with read_session(engine) as session:
        rows = {
            row.id: row
            for row in session.scalars(
                select(PaymentRequestIntent).where(PaymentRequestIntent.id.in_([first, second]))
            )
        }
    assert {row.status for row in rows.values()} == {"sent"}
    assert (rows[first].lago_payment_request_id, rows[second].lago_payment_request_id) == (
        "pr_1",
        "pr_2",
    )
    assert rows[first].lago_invoice_ids == ["inv_1"]
    assert rows[second].lago_invoice_ids == ["inv_2", "inv_3"]
    assert (rows[first].last_error, rows[second].last_error) == (None, "inv_4 dropped")
    assert {row.post_started_at for row in rows.values()} == {T0}
    assert {row.sent_at for row in rows.values()} == {sent_at}
    assert {row.lease_owner for row in rows.values()} == {None}


@pytest.mark.parametrize("count", [3, 5, 17])
def test_quick_record_of_any_number_of_rows_writes_each_its_own(engine: Engine, count: int) -> None:
    """The statement is built for a few sizes and padded up (3 -> 4, 5 -> 8, 17 -> 32): the
    padding rows match no intent and every real row gets its own values."""
    with write_tx(engine) as session:
        added = [_add(session, customer=f"cus_n{n}", invoices=(f"inv_n{n}",)) for n in range(count)]
    ids = [intent_id for intent_id in added if intent_id is not None]
    assert len(ids) == count
    intents.claim_intents(engine, owner="w", now=T0, lease_seconds=60, limit=count)
    with write_tx(engine) as session:
        intents.stamp_held(session, owner="w", intent_ids=ids, now=T0)
        intents.record_sent_held(
            session,
            owner="w",
            now=T0,
            results=[intents.SentResult(i, f"pr_{i}", (f"inv_{i}",)) for i in ids],
        )
    with read_session(engine) as session:
        rows = session.scalars(select(PaymentRequestIntent).order_by(PaymentRequestIntent.id))
        written = [(r.id, r.status, r.lago_payment_request_id, r.lago_invoice_ids) for r in rows]
    assert written == [(i, "sent", f"pr_{i}", [f"inv_{i}"]) for i in ids]


def test_quick_writes_refuse_a_batch_with_an_intent_no_longer_held(engine: Engine) -> None:
    first, second = _claimed_pair(engine)
    # `second`'s lease expires and another worker takes it over.
    later = T0 + timedelta(seconds=61)
    taken = intents.claim_intents(
        engine, owner="w2", now=later, lease_seconds=60, limit=1, intent_ids=[second]
    )
    assert [c.id for c in taken] == [second]
    with pytest.raises(intents.NotAllHeldError), write_tx(engine) as session:
        intents.stamp_held(session, owner="w", intent_ids=[first, second], now=later)
    with pytest.raises(intents.NotAllHeldError), write_tx(engine) as session:
        intents.record_sent_held(
            session,
            owner="w",
            now=later,
            results=[
                intents.SentResult(first, "pr_1", ("inv_1",)),
                intents.SentResult(second, "pr_2", ("inv_2", "inv_3")),
            ],
        )
    # Both were rolled back: `first` is untouched (claimed by w, never stamped).
    with read_session(engine) as session:
        row = session.get(PaymentRequestIntent, first)
        assert row is not None
        assert (row.status, row.lease_owner, row.post_started_at) == ("sending", "w", None)
        assert row.lago_payment_request_id is None
