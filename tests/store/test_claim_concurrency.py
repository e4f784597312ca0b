"""Six real processes claiming one backlog never claim the same intent twice (both engines)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from worker.store import intents
from worker.store.db import read_session, write_tx

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 6
BACKLOG = 500


@pytest.mark.slow
def test_concurrent_claimers_never_share_an_intent(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    with write_tx(engine) as session:
        for number in range(BACKLOG):
            intents.add_intent(
                session,
                run_id=None,
                external_customer_id=f"cus_{number}",
                currency="EUR",
                billing_entity_code=None,
                invoice_ids=[f"inv_{number}"],
                amount_cents=100,
                email=None,
                policy=None,
                attempt_number=1,
                now=now,
            )
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.claim_worker", db_url, f"w{n}", str(barrier)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("*.ready"))) < PROCESSES:
        assert all(worker.poll() is None for worker in workers), "a claimer died at start-up"
        assert time.monotonic() < deadline, "claimers did not start"
        time.sleep(0.05)
    (barrier / "go").touch()
    per_worker: list[list[int]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        per_worker.append([int(line) for line in out.split()])

    claims = Counter(intent_id for ids in per_worker for intent_id in ids)
    duplicates = {intent_id: n for intent_id, n in claims.items() if n > 1}
    assert duplicates == {}
    assert len(claims) == BACKLOG
    assert sum(1 for ids in per_worker if ids) >= 2  # they really competed
    with read_session(engine) as session:
        assert intents.count_by_status(session) == {"sending": BACKLOG}
