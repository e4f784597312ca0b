"""The send service against the sandbox (a real HTTP server) and real databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.fixtures.sandbox import SandboxHandle
from worker.lago.client import LagoClient
from worker.lago.retry import RetryPolicy
from worker.services.recover_intents import recover_intents
from worker.services.send_payment_request import SendStatus, send_payment_request
from worker.store import group_states, intents
from worker.store.db import read_session, write_tx

SETTLE = 120
LEASE = 60
CUSTOMER = "cus_00001"


class Clock:
    """Real time plus an offset the test moves forward (the sandbox stamps real time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _client(sandbox: SandboxHandle, **kwargs: Any) -> LagoClient:
    kwargs.setdefault("max_retries", 0)
    return LagoClient(sandbox.url, SecretStr(sandbox.api_key), **kwargs)


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[LagoClient]:
    with _client(sandbox) as built:
        yield built


def _overdue_ids(sandbox: SandboxHandle, customer: str, currency: str = "USD") -> list[str]:
    return sorted(
        invoice["lago_id"]
        for invoice in sandbox.invoices()
        if invoice["customer"]["external_id"] == customer
        and invoice["currency"] == currency
        and invoice["payment_overdue"]
    )


def _die_mid_post(engine: Engine, intent_id: int, *, owner: str, now: datetime) -> None:
    """A worker claims the intent, starts its POST (stamped) and dies before any answer."""
    claimed = intents.claim_intents(
        engine, owner=owner, now=now, lease_seconds=LEASE, limit=1, intent_ids=[intent_id]
    )
    assert [intent.id for intent in claimed] == [intent_id]
    with write_tx(engine) as session:
        assert intents.mark_post_started(session, owner=owner, intent_ids=[intent_id], now=now) == {
            intent_id
        }


def _die_before_post(engine: Engine, intent_id: int, *, owner: str, now: datetime) -> None:
    """A worker claims the intent and dies before its POST starts."""
    claimed = intents.claim_intents(
        engine, owner=owner, now=now, lease_seconds=LEASE, limit=1, intent_ids=[intent_id]
    )
    assert [intent.id for intent in claimed] == [intent_id]


def _add(engine: Engine, now: datetime, invoice_ids: list[str], customer: str = CUSTOMER) -> int:
    with write_tx(engine) as session:
        intent_id = intents.add_intent(
            session,
            run_id=None,
            external_customer_id=customer,
            currency="USD",
            billing_entity_code="acme_us",
            invoice_ids=invoice_ids,
            amount_cents=1000,
            email=None,
            policy="default",
            attempt_number=1,
            now=now,
        )
    assert intent_id is not None
    return intent_id


def _send(engine: Engine, client: Any, intent_id: int, clock: Callable[[], datetime], **kw: Any):
    kw.setdefault("max_ambiguous_tries", 3)
    return send_payment_request(
        engine=engine,
        client=client,
        intent_id=intent_id,
        owner=kw.pop("owner", "test-worker"),
        now=clock,
        settle_seconds=SETTLE,
        lease_seconds=LEASE,
        **kw,
    )


def _row(engine: Engine, intent_id: int):
    with read_session(engine) as session:
        row = intents.get_intent(session, intent_id)
    assert row is not None
    return row


POST = "POST /api/v1/payment_requests"


def test_sends_once_and_records_lago_id_and_attempt(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    intent_id = _add(engine, clock(), invoice_ids)

    outcome = _send(engine, client, intent_id, clock)
    again = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.SENT
    assert outcome.posted
    assert again.status is SendStatus.NOT_CLAIMED
    [created] = sandbox.payment_requests()
    assert outcome.lago_id == created["lago_id"]
    row = _row(engine, intent_id)
    assert (row.status, row.lago_payment_request_id) == ("sent", created["lago_id"])
    assert row.lago_invoice_ids == invoice_ids
    assert row.lease_owner is None
    with read_session(engine) as session:
        ref = group_states.GroupRef(CUSTOMER, "USD", "acme_us")
        state = group_states.load_group_states(session, groups=[ref])[ref.key]
    assert state.attempts_used == 1
    assert state.last_dunned_invoice_ids == tuple(invoice_ids)
    assert sandbox.request_count(POST) == 1


def test_records_exactly_the_invoices_lago_kept(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    ours = _overdue_ids(sandbox, CUSTOMER)
    foreign = _overdue_ids(sandbox, "cus_00002")[:1]
    intent_id = _add(engine, clock(), ours + foreign)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.SENT
    assert "left out 1 of" in outcome.detail
    assert _row(engine, intent_id).lago_invoice_ids == ours


def test_reconcile_adopts_a_request_made_by_lagos_dunning_and_does_not_post(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    intent_id = _add(engine, clock(), invoice_ids)
    # A worker died mid-POST; Lago's own campaign asked for payment meanwhile.
    _die_mid_post(engine, intent_id, owner="dead", now=clock())
    campaign = sandbox.create_campaign_payment_request(CUSTOMER, invoice_ids[:2])
    clock.advance(LEASE + 1)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.ADOPTED
    assert outcome.lago_id == campaign["lago_id"]
    assert not outcome.posted
    assert sandbox.request_count(POST) == 0
    assert len(sandbox.payment_requests()) == 1
    row = _row(engine, intent_id)
    assert row.status == "adopted"
    assert row.lago_invoice_ids == sorted(invoice_ids[:2])


def test_an_old_pending_request_counts_as_already_asked(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    campaign = sandbox.create_campaign_payment_request(CUSTOMER, invoice_ids[:1])
    clock.advance(3600)  # our try starts an hour after Lago's campaign request
    intent_id = _add(engine, clock(), invoice_ids)
    _die_mid_post(engine, intent_id, owner="dead", now=clock())
    clock.advance(LEASE + 1)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.ADOPTED
    assert outcome.lago_id == campaign["lago_id"]
    assert "pending payment request already covers" in outcome.detail
    assert sandbox.request_count(POST) == 0


def test_after_a_crash_before_the_post_the_next_holder_posts_at_once_with_no_unknown_outcome(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    for owner in ("dead-1", "dead-2", "dead-3", "dead-4", "dead-5", "dead-6"):
        _die_before_post(engine, intent_id, owner=owner, now=clock())
        clock.advance(LEASE + 1)
        assert _row(engine, intent_id).ambiguous_tries == 0

    outcome = _send(engine, client, intent_id, clock, max_ambiguous_tries=1)

    assert outcome.status is SendStatus.SENT
    assert sandbox.request_count(POST) == 1
    row = _row(engine, intent_id)
    assert (row.status, row.ambiguous_tries, row.tries) == ("sent", 0, 7)


def test_after_a_crash_during_the_post_it_waits_for_the_settle_window_then_posts_once(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    _die_mid_post(engine, intent_id, owner="dead", now=clock())
    clock.advance(LEASE + 1)

    early = _send(engine, client, intent_id, clock)
    assert early.status is SendStatus.RESCHEDULED
    assert early.error_code == "awaiting_settle"
    assert sandbox.request_count(POST) == 0
    assert _send(engine, client, intent_id, clock).status is SendStatus.NOT_CLAIMED

    clock.advance(SETTLE)
    late = _send(engine, client, intent_id, clock)
    assert late.status is SendStatus.SENT
    assert sandbox.request_count(POST) == 1
    assert len(sandbox.payment_requests()) == 1


def test_a_timed_out_post_is_reconciled_not_repeated(
    engine: Engine, sandbox: SandboxHandle, clock: Clock
) -> None:
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=1.0)
    with _client(sandbox, timeout_s=0.3) as short:
        first = _send(engine, short, intent_id, clock)
    sandbox.set_faults(timeout_after_commit_rate=0.0)
    assert first.status is SendStatus.RESCHEDULED
    assert first.error_code == "ambiguous"
    row = _row(engine, intent_id)
    assert (row.status, row.ambiguous_tries) == ("pending", 1)
    assert row.post_started_at is not None

    clock.advance(SETTLE + 1)
    with _client(sandbox) as client:
        second = _send(engine, client, intent_id, clock)
    assert second.status is SendStatus.ADOPTED
    assert not second.posted
    [created] = sandbox.payment_requests()
    assert second.lago_id == created["lago_id"]


def test_too_many_unknown_outcomes_need_review(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    # Two workers died mid-POST: two unknown outcomes, nothing landed in Lago.
    for owner in ("dead-1", "dead-2"):
        _die_mid_post(engine, intent_id, owner=owner, now=clock())
        clock.advance(LEASE + 1)

    outcome = _send(engine, client, intent_id, clock, max_ambiguous_tries=1)

    assert outcome.status is SendStatus.NEEDS_REVIEW
    assert sandbox.request_count(POST) == 0
    row = _row(engine, intent_id)
    assert (row.status, row.last_error_code) == ("needs_review", "too_many_ambiguous_tries")


def test_no_premium_licence_blocks_and_stops_the_run(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    sandbox.set_faults(premium=False)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.BLOCKED
    assert outcome.error_code == "feature_unavailable"
    assert outcome.stops_run
    assert _row(engine, intent_id).status == "blocked"


def test_not_overdue_is_refused_with_lagos_code(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    sandbox.patch_invoice(invoice_ids[0], payment_overdue=False)
    intent_id = _add(engine, clock(), invoice_ids)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.REFUSED
    assert outcome.error_code == "invoices_not_overdue"
    row = _row(engine, intent_id)
    assert (row.status, row.last_error_code) == ("refused", "invoices_not_overdue")
    assert not sandbox.payment_requests()


def test_not_ready_for_payment_goes_back_to_pending_later(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    sandbox.patch_invoice(invoice_ids[0], ready_for_payment_processing=False)
    intent_id = _add(engine, clock(), invoice_ids)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.RESCHEDULED
    assert outcome.error_code == "invoices_not_ready_for_payment_processing"
    row = _row(engine, intent_id)
    assert row.status == "pending"
    assert row.post_started_at is None  # nothing was created: no reconcile needed next time
    assert row.next_attempt_at > clock() + timedelta(minutes=30)


def test_rate_limited_post_is_retried_after_the_advertised_delay_without_reconcile(
    engine: Engine, clock: Clock
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        return httpx.Response(
            429,
            headers={"x-ratelimit-reset": "7"},
            json={"status": 429, "error": "Too Many Requests", "code": "too_many_requests"},
        )

    intent_id = _add(engine, clock(), ["inv_1"])
    with LagoClient(
        "http://lago.test",
        SecretStr("k"),
        transport=httpx.MockTransport(answer),
        retry_policy=RetryPolicy(max_retries=0),
    ) as limited:
        before = clock()
        outcome = _send(engine, limited, intent_id, clock)

    assert outcome.status is SendStatus.RESCHEDULED
    assert outcome.error_code == "rate_limited"
    row = _row(engine, intent_id)
    assert (row.status, row.ambiguous_tries, row.post_started_at) == ("pending", 0, None)
    assert before + timedelta(seconds=7) <= row.next_attempt_at < before + timedelta(seconds=60)


def test_recover_runs_every_due_intent(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    customers = sorted(
        {i["customer"]["external_id"] for i in sandbox.invoices() if i["payment_overdue"]}
    )
    added = 0
    for customer in customers:
        for currency in ("USD", "EUR"):
            ids = _overdue_ids(sandbox, customer, currency)
            if ids:
                with write_tx(engine) as session:
                    entity = next(
                        i["billing_entity_code"]
                        for i in sandbox.invoices()
                        if i["lago_id"] == ids[0]
                    )
                    intents.add_intent(
                        session,
                        run_id=None,
                        external_customer_id=customer,
                        currency=currency,
                        billing_entity_code=entity,
                        invoice_ids=ids,
                        amount_cents=1,
                        email=None,
                        policy=None,
                        attempt_number=1,
                        now=clock(),
                    )
                added += 1

    summary = recover_intents(
        engine=engine,
        client=client,
        now=clock,
        settle_seconds=SETTLE,
        lease_seconds=LEASE,
        max_ambiguous_tries=3,
        concurrency=4,
    )

    assert summary.due == added
    assert summary.count(SendStatus.SENT) == added
    assert summary.posts == added
    assert len(sandbox.payment_requests()) == added
    again = recover_intents(
        engine=engine,
        client=client,
        now=clock,
        settle_seconds=SETTLE,
        lease_seconds=LEASE,
        max_ambiguous_tries=3,
    )
    assert again.due == 0
    assert len(sandbox.payment_requests()) == added


def _attempts(engine: Engine, customer: str = CUSTOMER) -> int:
    with read_session(engine) as session:
        state = group_states.load_group_states(
            session, groups=[group_states.GroupRef(customer, "USD", "acme_us")]
        )
    return next(iter(state.values())).attempts_used


def test_an_answer_naming_another_customer_or_invoices_goes_to_review_not_counted(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    intent_id = _add(engine, clock(), invoice_ids)
    sandbox.set_faults(careless=True, careless_answer_rate=1.0)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.NEEDS_REVIEW
    assert outcome.error_code == "answer_mismatch"
    assert outcome.posted
    [created] = sandbox.payment_requests()
    row = _row(engine, intent_id)
    assert (row.status, row.last_error_code) == ("needs_review", "answer_mismatch")
    assert row.lago_payment_request_id == created["lago_id"]  # kept for the human
    assert row.last_error is not None
    assert "not counted as an attempt" in row.last_error
    assert _attempts(engine) == 0


def test_a_request_found_while_reconciling_must_pass_the_same_checks(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    """After a POST with unknown outcome, a pending request in Lago that covers our invoices
    AND others we never asked for is not adopted: it goes to review."""
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    ours, extra = invoice_ids[:-1], invoice_ids[-1:]
    intent_id = _add(engine, clock(), ours)
    _die_mid_post(engine, intent_id, owner="dead", now=clock())
    foreign = sandbox.create_campaign_payment_request(CUSTOMER, ours + extra)
    clock.advance(LEASE + 1)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.NEEDS_REVIEW
    assert outcome.error_code == "adoption_mismatch"
    assert not outcome.posted
    assert sandbox.request_count(POST) == 0
    row = _row(engine, intent_id)
    assert row.lago_payment_request_id == foreign["lago_id"]
    assert _attempts(engine) == 0


def test_a_request_covering_fewer_of_our_invoices_is_adopted(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    invoice_ids = _overdue_ids(sandbox, CUSTOMER)
    intent_id = _add(engine, clock(), invoice_ids)
    _die_mid_post(engine, intent_id, owner="dead", now=clock())
    fewer = sandbox.create_campaign_payment_request(CUSTOMER, invoice_ids[:1])
    clock.advance(LEASE + 1)

    outcome = _send(engine, client, intent_id, clock)

    assert outcome.status is SendStatus.ADOPTED
    assert outcome.lago_id == fewer["lago_id"]
    assert _attempts(engine) == 1


def test_a_taken_over_lease_and_the_send_outcome_are_counted(
    engine: Engine, sandbox: SandboxHandle, client: LagoClient, clock: Clock
) -> None:
    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    expiries = counted("dunning_lease_expiries_total")
    sent = counted("dunning_sends_total", outcome="sent")
    not_claimed = counted("dunning_sends_total", outcome="not_claimed")
    intent_id = _add(engine, clock(), _overdue_ids(sandbox, CUSTOMER))
    _die_before_post(engine, intent_id, owner="dead", now=clock())
    clock.advance(LEASE + 1)

    assert _send(engine, client, intent_id, clock).status is SendStatus.SENT
    assert _send(engine, client, intent_id, clock).status is SendStatus.NOT_CLAIMED

    assert counted("dunning_lease_expiries_total") == expiries + 1
    assert counted("dunning_sends_total", outcome="sent") == sent + 1
    assert counted("dunning_sends_total", outcome="not_claimed") == not_claimed + 1
