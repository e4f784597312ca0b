"""The pipeline's hand-off: a sending thread whose POST succeeded starts the next stamped POST
itself, so a slot never waits for the loop's next turn; after a failure, or once the loop has
given back what was stamped, it starts nothing (the loop decides)."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine

from worker.lago.errors import LagoUnauthorizedError
from worker.services.channels.base import PAYMENT_REQUEST, ChannelSet
from worker.services.channels.payment_request import PaymentRequestChannel
from worker.services.send_pipeline import SendPipeline
from worker.services.send_types import SendContext
from worker.store.intents import ClaimedIntent

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Lago:
    """Answers each POST by the customer's name: "ok-*" succeed, "no-*" are refused (401)."""

    def __init__(self) -> None:
        self.posted: list[str] = []
        self.lock = threading.Lock()

    def create_payment_request(self, customer: str, invoices: list[str], **_: Any) -> Any:
        with self.lock:
            self.posted.append(customer)
        if customer.startswith("no-"):
            raise LagoUnauthorizedError(
                "rejected", endpoint="POST /api/v1/payment_requests", status=401
            )
        return customer


def _intent(number: int, customer: str) -> ClaimedIntent:
    return ClaimedIntent(
        id=number, external_customer_id=customer, currency="EUR", billing_entity_code=None,
        group_key=f"{customer}|EUR|", invoice_ids=(f"inv-{number}",), amount_cents=100,
        email=None, policy="p", attempt_number=1, lease_owner="me",
        lease_expires_at=NOW + timedelta(minutes=5), earlier_post_started_at=None, tries=0,
        ambiguous_tries=0, lease_was_expired=False,
    )  # fmt: skip


def _pipeline(lago: Lago, pool: ThreadPoolExecutor, concurrency: int) -> SendPipeline:
    ctx = SendContext(
        engine=create_engine("sqlite://"), client=lago, owner="me", now=lambda: NOW,
        settle=timedelta(seconds=30), max_ambiguous_tries=3,
    )  # fmt: skip
    channels = ChannelSet({PAYMENT_REQUEST: PaymentRequestChannel()})
    pipeline = SendPipeline(ctx, [], 60, 10, None, channels, lambda _: NotImplemented)
    pipeline.pool, pipeline.concurrency = pool, concurrency
    return pipeline


def _drain(pipeline: SendPipeline, count: int) -> list[Future[Any]]:
    return [pipeline.finished.get(timeout=5) for _ in range(count)]


def test_a_success_starts_the_next_stamped_post_from_the_sending_thread() -> None:
    lago = Lago()
    with ThreadPoolExecutor(1) as pool:
        pipeline = _pipeline(lago, pool, concurrency=1)
        pipeline.stamped.extend(_intent(n, f"ok-{n}") for n in (1, 2, 3))
        pipeline._start()  # the loop starts the first; each success starts the next
        _drain(pipeline, 3)
    assert lago.posted == ["ok-1", "ok-2", "ok-3"]
    assert not pipeline.stamped
    assert pipeline.running == 0
    assert len(pipeline.inflight) == 3  # all back, waiting for the loop to record them


def test_a_failure_leaves_the_next_start_to_the_loop() -> None:
    lago = Lago()
    with ThreadPoolExecutor(1) as pool:
        pipeline = _pipeline(lago, pool, concurrency=1)
        pipeline.stamped.extend([_intent(1, "no-1"), _intent(2, "ok-2")])
        pipeline._start()
        [first] = _drain(pipeline, 1)
    assert isinstance(first.result(), LagoUnauthorizedError)
    assert lago.posted == ["no-1"]  # the 401 may stop the run: nothing else started
    assert [intent.id for intent in pipeline.stamped] == [2]


def test_after_give_back_a_success_starts_nothing() -> None:
    lago = Lago()
    gate = threading.Event()
    original = lago.create_payment_request

    def slow(customer: str, invoices: list[str], **kwargs: Any) -> Any:
        gate.wait(5)
        return original(customer, invoices, **kwargs)

    lago.create_payment_request = slow  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        pipeline = _pipeline(lago, pool, concurrency=1)
        pipeline.stamped.extend([_intent(1, "ok-1"), _intent(2, "ok-2")])
        pipeline._start()
        with pipeline.slots:  # what `_give_back` does first, before any release
            pipeline.handoff = False
            taken = list(pipeline.stamped)
            pipeline.stamped.clear()
        gate.set()
        _drain(pipeline, 1)
    assert lago.posted == ["ok-1"]
    assert [intent.id for intent in taken] == [2]
