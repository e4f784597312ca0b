"""The batched send path (one claim and one record transaction per batch) keeps the protocol:
exactly one payment request per intent, classified refusals, and crash recovery by adoption."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, update

from tests.fixtures.intents import add_group_intents, overdue_groups, statuses_given_back
from tests.fixtures.sandbox import SandboxHandle
from worker.lago.client import LagoClient
from worker.services.recover_intents import recover_intents
from worker.services.send_payment_request import (
    SendOutcome,
    SendStatus,
    send_payment_requests,
)
from worker.store import intents
from worker.store.db import read_session, write_tx
from worker.store.models import PaymentRequestIntent

LEASE = 60
SETTLE = 30


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class CrashAfterPost(Exception):
    """Stands for the process dying between Lago's answers and the recording commit."""


class Hooks:
    def after_claim(self) -> None:
        return None

    def after_post(self) -> None:
        raise CrashAfterPost


def _groups(sandbox: SandboxHandle) -> dict[tuple[str, str, str | None], list[str]]:
    return overdue_groups(sandbox.invoices())


def _add_intents(
    engine: Engine, groups: dict[tuple[str, str, str | None], list[str]], now: datetime
) -> list[int]:
    return list(add_group_intents(engine, sorted(groups.items()), policy="default", now=now))


def _send(
    engine: Engine, client: LagoClient, ids: list[int], clock: Clock, hooks: Hooks | None = None
) -> list[SendOutcome]:
    return list(
        send_payment_requests(
            engine=engine,
            client=client,
            intent_ids=ids,
            owner="test",
            now=clock,
            settle_seconds=SETTLE,
            lease_seconds=LEASE,
            max_ambiguous_tries=5,
            concurrency=4,
            batch_size=3,  # several batches even on the small fixture data
            hooks=hooks,
        )
    )


def test_batches_send_each_intent_once_and_classify_refusals(
    sandbox: SandboxHandle, engine: Engine
) -> None:
    clock = Clock()
    groups = _groups(sandbox)
    assert len(groups) >= 4
    # One group's first invoice is paid after the intent was written: Lago answers 405.
    refused_key = sorted(groups)[0]
    ids = _add_intents(engine, groups, clock())
    for lago_id in groups[refused_key]:
        sandbox.pay_invoice(lago_id)

    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        outcomes = _send(engine, client, ids, clock)
        again = _send(engine, client, ids, clock)

    statuses = Counter(outcome.status for outcome in outcomes)
    assert statuses == {SendStatus.SENT: len(groups) - 1, SendStatus.REFUSED: 1}
    refused = next(o for o in outcomes if o.status is SendStatus.REFUSED)
    assert refused.error_code == "invoices_not_overdue"
    assert {o.status for o in again} == {SendStatus.NOT_CLAIMED}
    created = sandbox.payment_requests()
    assert len(created) == len(groups) - 1
    assert len({request["lago_id"] for request in created}) == len(created)
    with read_session(engine) as session:
        stored = [intents.get_intent(session, intent_id) for intent_id in ids]
    sent_ids = {row.lago_payment_request_id for row in stored if row and row.status == "sent"}
    assert sent_ids == {request["lago_id"] for request in created}


def test_a_crash_between_posts_and_recording_is_recovered_by_adoption(
    sandbox: SandboxHandle, engine: Engine
) -> None:
    clock = Clock()
    groups = _groups(sandbox)
    ids = _add_intents(engine, groups, clock())

    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        with pytest.raises(CrashAfterPost):
            _send(engine, client, ids, clock, hooks=Hooks())
        posted_before_crash = len(sandbox.payment_requests())
        assert posted_before_crash == 3  # the first batch reached Lago, then the "crash"

        clock.offset = timedelta(seconds=LEASE + SETTLE + 1)  # leases expire, tries settle
        summary = recover_intents(
            engine=engine,
            client=client,
            now=clock,
            settle_seconds=SETTLE,
            lease_seconds=LEASE,
            max_ambiguous_tries=5,
        )

    assert summary is not None
    created = sandbox.payment_requests()
    assert len(created) == len(groups)
    # Every overdue invoice is in exactly one payment request: no duplicate was posted.
    asked = Counter(invoice["lago_id"] for r in created for invoice in r["invoices"])
    assert asked == Counter(lago_id for ids in groups.values() for lago_id in ids)
    with read_session(engine) as session:
        rows = [intents.get_intent(session, intent_id) for intent_id in ids]
    assert Counter(row.status for row in rows if row) == {
        "adopted": posted_before_crash,
        "sent": len(groups) - posted_before_crash,
    }


class StealOneLease:
    """After the first answers come back, another worker takes over one posted intent (as if
    its lease had expired): recording it must fail for us, the others must still be sent."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stolen: int | None = None

    def after_claim(self) -> None:
        return None

    def after_post(self) -> None:
        if self.stolen is not None:
            return
        table = PaymentRequestIntent.__table__
        with write_tx(self.engine) as session:
            self.stolen = session.scalar(
                select(func.min(table.c.id)).where(
                    table.c.status == "sending", table.c.post_started_at.is_not(None)
                )
            )
            session.execute(
                update(table).where(table.c.id == self.stolen).values(lease_owner="thief")
            )


def test_an_intent_taken_over_mid_batch_is_lease_lost_and_the_rest_are_sent(
    sandbox: SandboxHandle, engine: Engine
) -> None:
    clock = Clock()
    groups = _groups(sandbox)
    ids = _add_intents(engine, groups, clock())
    hooks = StealOneLease(engine)

    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        outcomes = _send(engine, client, ids, clock, hooks=hooks)

    assert hooks.stolen is not None
    by_id = {outcome.intent_id: outcome for outcome in outcomes}
    assert by_id[hooks.stolen].status is SendStatus.LEASE_LOST
    assert by_id[hooks.stolen].posted
    assert Counter(o.status for o in outcomes) == {
        SendStatus.SENT: len(groups) - 1,
        SendStatus.LEASE_LOST: 1,
    }
    with read_session(engine) as session:
        rows = {intent_id: intents.get_intent(session, intent_id) for intent_id in ids}
    stolen = rows.pop(hooks.stolen)
    assert stolen is not None
    assert (stolen.status, stolen.lease_owner) == ("sending", "thief")
    assert {row.status for row in rows.values() if row} == {"sent"}
    # The thief reconciles later; every group reached Lago exactly once meanwhile.
    assert len(sandbox.payment_requests()) == len(groups)


@pytest.mark.parametrize("stop_after", [1, 2, 5])
def test_a_caller_that_stops_reading_leaves_nothing_claimed(
    sandbox: SandboxHandle, engine: Engine, stop_after: int
) -> None:
    # Whichever outcome the caller stops at (the first comes mid-turn, with the next POSTs
    # stamped ahead), what was in flight is recorded and every other intent is given back.
    clock = Clock()
    sandbox.reset(customers=12, invoices_per_customer=2, seed=5)
    groups = _groups(sandbox)
    ids = _add_intents(engine, groups, clock())
    sandbox.set_faults(latency_ms=20)

    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        sending = send_payment_requests(
            engine=engine, client=client, intent_ids=ids, owner="test", now=clock,
            settle_seconds=SETTLE, lease_seconds=LEASE, max_ambiguous_tries=5, concurrency=2,
            batch_size=len(ids),
        )  # fmt: skip
        read = [next(sending) for _ in range(stop_after)]
        sending.close()

    left = statuses_given_back(engine, ids, clock())
    assert left["sending"] == 0
    assert left["sent"] == len(sandbox.payment_requests()) >= len(read)
    assert left["given_back"] > 0


class InterruptOnSecondPost(Hooks):
    """Ctrl-C while answers are coming back."""

    def __init__(self) -> None:
        self.posts = 0

    def after_post(self) -> None:
        self.posts += 1
        if self.posts == 2:
            raise KeyboardInterrupt


def test_ctrl_c_mid_pipeline_records_what_was_in_flight_and_gives_back_the_rest(
    sandbox: SandboxHandle, engine: Engine
) -> None:
    clock = Clock()
    sandbox.reset(customers=12, invoices_per_customer=2, seed=5)
    ids = _add_intents(engine, _groups(sandbox), clock())
    sandbox.set_faults(latency_ms=20)

    with (
        LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client,
        pytest.raises(KeyboardInterrupt),
    ):
        _send(engine, client, ids, clock, hooks=InterruptOnSecondPost())

    left = statuses_given_back(engine, ids, clock())
    assert left["sending"] == 0
    assert left["sent"] == len(sandbox.payment_requests()) > 0
    assert left["given_back"] > 0
