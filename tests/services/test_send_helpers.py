"""Sending from several processes (`worker.services.send_helpers`): the sandbox as Lago (a real
HTTP server), real databases, real forked helpers.

What must hold whatever a helper does: every intent is asked at most once, an intent nobody
reported is sent from the sweep's own process or left leased for the next holder, and a stopped
helper leaves nothing claimed."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from queue import SimpleQueue

import pytest
from sqlalchemy import select

from config import Settings
from tests.e2e.sweep_support import (
    GENERATED_POLICY,
    Clock,
    invoice_ids_of,
    sweep_runtime,
    test_settings,
    write_policy,
)
from tests.fixtures.intents import statuses_given_back
from tests.fixtures.sandbox import SandboxHandle
from worker.services.recover_intents import recover_intents
from worker.services.runtime import Runtime
from worker.services.send_helpers import _Helper, helpers_wanted, send_helpers, shares_by_customer
from worker.services.send_types import SendStatus
from worker.services.sweep import run_sweep
from worker.store import intents
from worker.store.db import read_session
from worker.store.models import PaymentRequestIntent

POST = "POST /api/v1/payment_requests"
#: What a sandbox without faults answers: created, or not ready to charge yet (retry later).
ANSWERED = {SendStatus.SENT, SendStatus.RESCHEDULED}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(db_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Settings:
    # 60 customers: about 70 groups to ask, so each process gets a share of dozens.
    sandbox.reset(customers=60, invoices_per_customer=4, seed=11)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    return test_settings(db_url, sandbox, policy, send_processes=2)


@pytest.fixture
def rt(settings: Settings, clock: Clock) -> Iterator[Runtime]:
    with sweep_runtime(settings, clock=clock) as runtime:
        yield runtime


def _pending_intents(rt: Runtime) -> list[int]:
    """Write a sweep's intents without sending them (as a Celery sweep does)."""
    summary = run_sweep(rt, trigger="cli", send_inline=False)
    assert len(summary.intent_ids) > 40
    return summary.intent_ids


def _statuses(rt: Runtime) -> Counter[str]:
    with read_session(rt.engine) as session:
        return Counter(session.scalars(select(PaymentRequestIntent.status)))


def _given_back(rt: Runtime, intent_ids: list[int]) -> int:
    """Those of `intent_ids` given back unsent (pending and due now)."""
    return statuses_given_back(rt.engine, intent_ids, datetime.now(UTC))["given_back"]


def _asked_once_each(sandbox: SandboxHandle) -> int:
    """How many payment requests Lago holds; fails if any invoice was asked twice."""
    asked = Counter(
        lago_id for request in sandbox.payment_requests() for lago_id in invoice_ids_of(request)
    )
    assert asked, "nothing was asked"
    assert max(asked.values()) == 1, [lago_id for lago_id, n in asked.items() if n > 1]
    return len(sandbox.payment_requests())


def test_shares_keep_each_customer_in_one_process(rt: Runtime) -> None:
    intent_ids = _pending_intents(rt)

    shares = shares_by_customer(rt, intent_ids, 3)

    assert sorted(i for share in shares for i in share) == sorted(intent_ids)
    assert all(share for share in shares)  # about 60 customers: each process gets some
    with read_session(rt.engine) as session:
        customers = intents.customers_of(session, intent_ids)
    where = {customers[i]: n for n, share in enumerate(shares) for i in share}
    for n, share in enumerate(shares):
        assert {where[customers[i]] for i in share} == {n}
    # A customer with intents in two currencies has them all in one share, in order.
    assert any(
        len([i for i in share if customers[i] == customers[share[0]]]) > 1 for share in shares
    )
    assert all(share == sorted(share) for share in shares)


def test_each_process_sends_its_share_and_every_intent_once(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    intent_ids = _pending_intents(rt)
    calls_before = rt.client.calls_total()
    shares = shares_by_customer(rt, intent_ids, 2)

    with send_helpers(rt, 1) as helpers:
        assert helpers is not None
        outcomes = list(helpers.send(rt, intent_ids))
        helper_calls = helpers.api_calls

    assert Counter(outcome.intent_id for outcome in outcomes) == Counter(intent_ids)
    # The generated data holds invoices Lago is not ready to charge yet: rescheduled.
    statuses = Counter(outcome.status for outcome in outcomes)
    assert set(statuses) <= ANSWERED
    assert statuses[SendStatus.SENT] > 40
    assert _asked_once_each(sandbox) == statuses[SendStatus.SENT]
    # The helper made the POSTs of its share, and said so.
    assert helper_calls == len(shares[1]) > 0
    assert rt.client.calls_total() - calls_before == len(shares[0])
    assert _statuses(rt) == {
        "sent": statuses[SendStatus.SENT],
        "pending": statuses[SendStatus.RESCHEDULED],
    }


def test_a_sweep_from_two_processes_counts_every_outcome_and_call(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    sandbox.reset_stats()
    calls_before = rt.client.calls_total()

    summary = run_sweep(rt, trigger="cli")

    # A helper made some of the calls: this process's client did not make them all.
    assert rt.client.calls_total() - calls_before < summary.api_calls
    assert set(summary.outcomes) <= ANSWERED
    assert summary.outcomes.total() == len(summary.intent_ids)
    assert _asked_once_each(sandbox) == summary.outcomes["sent"]
    assert sandbox.request_count(POST) == len(summary.intent_ids)
    assert summary.api_calls == sandbox.stats()["total"]


def test_a_helper_killed_mid_share_never_asks_twice_and_its_intents_are_recovered(
    rt: Runtime, sandbox: SandboxHandle, clock: Clock, settings: Settings
) -> None:
    intent_ids = _pending_intents(rt)
    sandbox.set_faults(latency_ms=30)  # the helper is still sending when it is killed

    with send_helpers(rt, 1) as helpers:
        assert helpers is not None
        helper_share = set(shares_by_customer(rt, intent_ids, 2)[1])
        killed = False
        outcomes = []
        for outcome in helpers.send(rt, intent_ids):
            if not killed and outcome.intent_id in helper_share:
                os.kill(helpers.pids[0], signal.SIGKILL)  # at the first outcome it reports
                killed = True
            outcomes.append(outcome)
    assert killed

    # Every intent has an outcome here: sent by this process (its share, and what the helper
    # never claimed), or not claimed (the helper's lease still holds it).
    by_intent = Counter(outcome.intent_id for outcome in outcomes)
    assert set(by_intent) == set(intent_ids)
    statuses = Counter(outcome.status for outcome in outcomes)
    left = _statuses(rt)
    # Still leased by the dead helper: reported `not_claimed` (so are any it recorded but did
    # not live to report).
    assert 0 < left["sending"] <= statuses[SendStatus.NOT_CLAIMED]
    assert set(left) <= {"sent", "sending", "pending"}
    # Rescheduled (not ready to charge); a reschedule the helper recorded but did not live
    # to report comes back `not_claimed`.
    assert left["pending"] >= statuses[SendStatus.RESCHEDULED]

    # After the dead helper's leases expire (and the settle window of what it had started),
    # the next holder reconciles and sends the rest: each intent asked exactly once.
    sandbox.set_faults(latency_ms=0)
    clock.advance(seconds=settings.lease_seconds + settings.settle_seconds + 1)
    recovered = recover_intents(
        engine=rt.engine,
        client=rt.client,
        now=clock,
        settle_seconds=settings.settle_seconds,
        lease_seconds=settings.lease_seconds,
        max_ambiguous_tries=settings.max_ambiguous_tries,
    )

    assert recovered.due == left["sending"]
    final = _statuses(rt)
    # adopted: a request the helper made but did not live to record; pending: rescheduled
    # (not ready to charge), due in an hour.
    assert set(final) <= {"sent", "adopted", "pending"}
    assert final["sent"] + final["adopted"] == _asked_once_each(sandbox)
    assert final["sent"] + final["adopted"] >= left["sent"]


def test_a_helper_gone_before_its_share_leaves_the_share_to_this_process(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    intent_ids = _pending_intents(rt)

    with send_helpers(rt, 1) as helpers:
        assert helpers is not None
        os.kill(helpers.pids[0], signal.SIGKILL)
        outcomes = list(helpers.send(rt, intent_ids))

    assert Counter(outcome.intent_id for outcome in outcomes) == Counter(intent_ids)
    assert set(Counter(outcome.status for outcome in outcomes)) <= ANSWERED
    assert helpers.api_calls == 0
    assert _statuses(rt)["sent"] == _asked_once_each(sandbox)
    assert _statuses(rt)["sending"] == 0


def test_closing_early_stops_the_helper_and_leaves_nothing_claimed(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    intent_ids = _pending_intents(rt)
    helper_share = shares_by_customer(rt, intent_ids, 2)[1]
    sandbox.set_faults(latency_ms=50)  # its share takes about half a second to send

    with send_helpers(rt, 1) as helpers:
        assert helpers is not None
        sending = helpers.send(rt, intent_ids)
        first = next(sending)
        sending.close()  # e.g. the run is blocked: the helper is stopped (SIGTERM)
        pid = helpers.pids[0]

    assert first.status in ANSWERED
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped
    left = _statuses(rt)
    # Both processes recorded what was in flight and gave back the rest: the helper was
    # stopped, not left to finish its share.
    assert set(left) <= {"sent", "pending"}
    assert left["sent"] == _asked_once_each(sandbox)
    assert _given_back(rt, helper_share) > 0
    assert _given_back(rt, intent_ids) < len(intent_ids)


def test_a_helper_stopped_from_outside_leaves_its_share_to_this_process(
    rt: Runtime, sandbox: SandboxHandle
) -> None:
    intent_ids = _pending_intents(rt)
    helper_share = set(shares_by_customer(rt, intent_ids, 2)[1])
    sandbox.set_faults(latency_ms=30)

    with send_helpers(rt, 1) as helpers:
        assert helpers is not None
        stopped = False
        outcomes = []
        for outcome in helpers.send(rt, intent_ids):
            if not stopped and outcome.intent_id in helper_share:
                os.kill(helpers.pids[0], signal.SIGTERM)  # e.g. an operator's kill
                stopped = True
            outcomes.append(outcome)
    assert stopped

    # It gave back what it had not sent, and this process sent it: nothing is left due.
    assert set(Counter(outcome.status for outcome in outcomes)) <= ANSWERED
    assert Counter(outcome.intent_id for outcome in outcomes) == Counter(intent_ids)
    assert _given_back(rt, intent_ids) == 0
    assert set(_statuses(rt)) <= {"sent", "pending"}
    assert _statuses(rt)["sent"] == _asked_once_each(sandbox)


def test_helpers_only_start_where_they_cannot_overrun_the_rate_limit(
    settings: Settings, clock: Clock
) -> None:
    def wanted(**changes: object) -> int:
        with sweep_runtime(settings.model_copy(update=changes), clock=clock) as runtime:
            return helpers_wanted(runtime)

    assert wanted(rate_limit_rps=0) == 1
    assert wanted(rate_limit_rps=0, send_processes=4) == 3
    assert wanted(rate_limit_rps=0, send_processes=1) == 0
    # An in-process bucket would give each process the whole budget.
    assert wanted(rate_limit_rps=40) == 0
    # A Redis bucket is shared by every process.
    assert wanted(rate_limit_rps=40, broker_url="redis://127.0.0.1:6379/0") == 1


def test_a_garbled_report_fails_the_helper_and_the_pipe_is_still_drained() -> None:
    reader, writer = os.pipe()
    lines = [
        '{"outcome": {"intent_id": 7, "status": "sent", "lago_id": "pr_1", "posted": true}}',
        '{"outcome": {"intent_id": 8, "status": "teleported"}}',  # a status we do not know
        *[f'{{"outcome": {{"intent_id": {n}, "status": "sent"}}}}' for n in range(9, 5000)],
        '{"api_calls": 4993}',
    ]
    helper = _Helper(pid=0, work=-1, answers=os.fdopen(reader, encoding="utf-8"))
    helper.share = [7, 8, 9, 10]
    queue: SimpleQueue[tuple[_Helper, object]] = SimpleQueue()
    with os.fdopen(writer, "w", encoding="utf-8") as pipe:
        reading = threading.Thread(target=helper._read_into, args=(queue,))
        reading.start()
        pipe.write("\n".join(lines) + "\n")  # far more than a pipe holds: must be drained
    reading.join(timeout=10)

    assert not reading.is_alive()
    reported = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [item for _, item in reported][-1] is None
    assert [item.intent_id for _, item in reported[:-1]] == [7]  # type: ignore[attr-defined]
    assert helper.garbled
    assert not helper.finished
    assert helper.left_over() == [8, 9, 10]
    helper.answers.close()
