"""Crash points with SIGKILL in real processes; after recovery Lago holds EXACTLY ONE payment
request per intent.

Each intent gets its own worker process that dies at one point of the protocol:
- after_claim:    the claim is committed, nothing sent (recovery waits out the settle
                  window, finds nothing, POSTs once);
- during_post:    Lago committed the request but the answer hangs; the worker is killed
                  mid-call (recovery adopts it);
- post_timeout:   Lago committed, the client timed out (ambiguous; recovery adopts it);
- after_post:     the answer arrived, the worker died before recording it (recovery adopts).
Recovery runs in-process with the clock moved past the lease and the settle window.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.fixtures.sandbox import SandboxHandle
from tests.services.crash_worker import LEASE_SECONDS, SETTLE_SECONDS
from worker.lago.client import LagoClient
from worker.services.recover_intents import recover_intents
from worker.services.send_payment_request import SendStatus
from worker.store import intents
from worker.store.db import read_session, write_tx

REPO_ROOT = Path(__file__).resolve().parents[2]
INTENTS = 4


def _add_intents(engine: Engine, sandbox: SandboxHandle) -> dict[int, frozenset[str]]:
    groups: dict[tuple[str, str, str | None], list[str]] = {}
    for invoice in sandbox.invoices():
        if invoice["payment_overdue"] and invoice["ready_for_payment_processing"]:
            key = (
                invoice["customer"]["external_id"],
                invoice["currency"],
                invoice["billing_entity_code"],
            )
            groups.setdefault(key, []).append(invoice["lago_id"])
    chosen = sorted(groups.items())[:INTENTS]
    assert len(chosen) == INTENTS, "the sandbox data has too few overdue groups"
    added: dict[int, frozenset[str]] = {}
    now = datetime.now(UTC)
    with write_tx(engine) as session:
        for (customer, currency, entity), invoice_ids in chosen:
            intent_id = intents.add_intent(
                session,
                run_id=None,
                external_customer_id=customer,
                currency=currency,
                billing_entity_code=entity,
                invoice_ids=invoice_ids,
                amount_cents=1,
                email=None,
                policy="crash-test",
                attempt_number=1,
                now=now,
            )
            assert intent_id is not None
            added[intent_id] = frozenset(invoice_ids)
    return added


def _start(db_url: str, sandbox: SandboxHandle, intent_id: int, mode: str, timeout: float):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.services.crash_worker",
            db_url,
            sandbox.url,
            sandbox.api_key,
            str(intent_id),
            mode,
            str(timeout),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_requests(sandbox: SandboxHandle, count: int, workers: list[subprocess.Popen[str]]):
    deadline = time.monotonic() + 120
    while len(sandbox.payment_requests()) < count:
        assert time.monotonic() < deadline, "Lago never received the POSTs"
        assert any(w.poll() is None for w in workers), "workers exited before posting"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["after_claim", "during_post", "post_timeout", "after_post"])
def test_exactly_one_payment_request_per_intent_after_crash_and_recovery(
    mode: str, engine: Engine, db_url: str, sandbox: SandboxHandle
) -> None:
    added = _add_intents(engine, sandbox)
    if mode == "during_post":
        sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=15.0)
        workers = [_start(db_url, sandbox, i, "none", 60.0) for i in added]
        _wait_for_requests(sandbox, INTENTS, workers)
        for worker in workers:
            worker.kill()  # SIGKILL while the POST is still waiting for its answer
    elif mode == "post_timeout":
        sandbox.set_faults(timeout_after_commit_rate=1.0, hang_seconds=3.0)
        workers = [_start(db_url, sandbox, i, "none", 1.0) for i in added]
    else:
        workers = [_start(db_url, sandbox, i, mode, 30.0) for i in added]
    results = [worker.communicate(timeout=120) for worker in workers]
    sandbox.set_faults(timeout_after_commit_rate=0.0)

    if mode == "post_timeout":
        assert all(w.returncode == 0 for w in workers), results
        assert all(out.strip() == "rescheduled ambiguous" for out, _ in results), results
    else:
        assert all(w.returncode == -9 for w in workers), results  # really SIGKILLed
    posts_before = len(sandbox.payment_requests())

    clock_offset = timedelta(seconds=LEASE_SECONDS + SETTLE_SECONDS + 5)
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        summary = recover_intents(
            engine=engine,
            client=client,
            now=lambda: datetime.now(UTC) + clock_offset,
            settle_seconds=SETTLE_SECONDS,
            lease_seconds=LEASE_SECONDS,
            max_ambiguous_tries=5,
            concurrency=4,
        )

    created = sandbox.payment_requests()
    per_intent = Counter(
        frozenset(invoice["lago_id"] for invoice in request["invoices"]) for request in created
    )
    duplicates = sum(count - 1 for count in per_intent.values())
    print(
        f"\n[{mode}] intents={INTENTS} posts_before_recovery={posts_before} "
        f"posts_in_recovery={summary.posts} adoptions={summary.count(SendStatus.ADOPTED)} "
        f"sent={summary.count(SendStatus.SENT)} payment_requests={len(created)} "
        f"duplicates={duplicates}"
    )
    assert duplicates == 0
    assert set(per_intent) == set(added.values())
    assert all(count == 1 for count in per_intent.values())
    with read_session(engine) as session:
        statuses = intents.count_by_status(session)
    if mode == "after_claim":
        assert posts_before == 0
        assert statuses == {"sent": INTENTS}
        assert summary.posts == INTENTS
    else:
        assert posts_before == INTENTS
        assert statuses == {"adopted": INTENTS}
        assert summary.posts == 0


def _all_groups_as_intents(engine: Engine, sandbox: SandboxHandle) -> dict[int, frozenset[str]]:
    groups: dict[tuple[str, str, str | None], list[str]] = {}
    for invoice in sandbox.invoices():
        if invoice["payment_overdue"] and invoice["ready_for_payment_processing"]:
            key = (
                invoice["customer"]["external_id"],
                invoice["currency"],
                invoice["billing_entity_code"],
            )
            groups.setdefault(key, []).append(invoice["lago_id"])
    added: dict[int, frozenset[str]] = {}
    now = datetime.now(UTC)
    with write_tx(engine) as session:
        for (customer, currency, entity), invoice_ids in sorted(groups.items()):
            intent_id = intents.add_intent(
                session,
                run_id=None,
                external_customer_id=customer,
                currency=currency,
                billing_entity_code=entity,
                invoice_ids=invoice_ids,
                amount_cents=1,
                email=None,
                policy="crash-test",
                attempt_number=1,
                now=now,
            )
            assert intent_id is not None
            added[intent_id] = frozenset(invoice_ids)
    return added


@pytest.mark.slow
def test_batched_sends_killed_six_times_strand_no_intent_that_never_reached_lago(
    engine: Engine, db_url: str, sandbox: SandboxHandle
) -> None:
    """The adversarial repro of "crashes strand customers in needs_review": sends killed
    shortly after their first answer (latency 150 +- 100 ms), six times. Only intents whose
    own POST had started may count an unknown outcome; none that never reached Lago may end
    in needs_review, and after recovery each intent has exactly one payment request."""
    sandbox.reset(customers=30, seed=4)
    sandbox.set_faults(latency_ms=150, latency_jitter_ms=100, seed=4)
    added = _all_groups_as_intents(engine, sandbox)
    assert len(added) >= 20
    step = LEASE_SECONDS + SETTLE_SECONDS + 5
    for run in range(6):
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.services.crash_worker",
                db_url,
                sandbox.url,
                sandbox.api_key,
                "all",
                "after_post",
                "30",
                str(run * step),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == -9, (out, err)  # really SIGKILLed after the first answer
    sandbox.set_faults(latency_ms=0, latency_jitter_ms=0)
    reached = {frozenset(r["lago_invoice_ids"]) for r in sandbox.payment_requests()}
    with read_session(engine) as session:
        rows = {i: intents.get_intent(session, i) for i in added}
    never_posted = [i for i, ids in added.items() if ids not in reached]
    assert never_posted, "the kills came too late to leave intents unsent"
    for intent_id in never_posted:
        row = rows[intent_id]
        assert row is not None
        assert row.ambiguous_tries == 0, (intent_id, row.status, row.ambiguous_tries)
        assert row.status != "needs_review"

    offset = timedelta(seconds=6 * step + step)
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), max_retries=0) as client:
        recover_intents(
            engine=engine,
            client=client,
            now=lambda: datetime.now(UTC) + offset,
            settle_seconds=SETTLE_SECONDS,
            lease_seconds=LEASE_SECONDS,
            max_ambiguous_tries=5,
            concurrency=4,
        )

    created = Counter(frozenset(r["lago_invoice_ids"]) for r in sandbox.payment_requests())
    assert created == Counter(set(added.values()))  # one request per intent, no duplicate
    with read_session(engine) as session:
        statuses = intents.count_by_status(session)
    assert statuses.get("needs_review", 0) == 0
    print(
        f"\n[six kills] intents={len(added)} never posted before recovery={len(never_posted)} "
        f"needs_review={statuses.get('needs_review', 0)} statuses={statuses}"
    )
