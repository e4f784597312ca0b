"""A send-service process for the crash tests; it SIGKILLs itself at the point asked for.

    python -m tests.services.crash_worker DB_URL LAGO_URL API_KEY INTENT_ID MODE TIMEOUT_S \
        [CLOCK_OFFSET_S]

MODE: after_claim | after_post (kill at that hook), or none (run to the end; the test may
kill it from outside, e.g. while the POST hangs). Prints the outcome if it survives.
INTENT_ID `all`: every due intent through the batched pipeline (`send_payment_requests`),
killed at the first answer back when MODE is after_post. CLOCK_OFFSET_S moves this
process's clock forward (leases of earlier, killed runs have expired).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from worker.lago.client import LagoClient
from worker.services.send_payment_request import send_payment_request, send_payment_requests
from worker.store import intents
from worker.store.db import make_engine, read_session

LEASE_SECONDS = 30
SETTLE_SECONDS = 60


class KillAt:
    def __init__(self, point: str) -> None:
        self.point = point

    def _maybe_die(self, point: str) -> None:
        if point == self.point:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def after_claim(self) -> None:
        self._maybe_die("after_claim")

    def after_post(self) -> None:
        self._maybe_die("after_post")


def main_batch(db_url: str, lago_url: str, api_key: str, mode: str, offset: float) -> None:
    engine = make_engine(db_url)

    def now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    with read_session(engine) as session:
        due = intents.due_intent_ids(session, now=now())
    with LagoClient(lago_url, SecretStr(api_key), timeout_s=30.0, max_retries=0) as client:
        outcomes = list(
            send_payment_requests(
                engine=engine,
                client=client,
                intent_ids=due,
                owner=f"crash-batch:{os.getpid()}",
                now=now,
                settle_seconds=SETTLE_SECONDS,
                lease_seconds=LEASE_SECONDS,
                max_ambiguous_tries=5,
                concurrency=4,
                batch_size=5,
                hooks=KillAt(mode),
            )
        )
    engine.dispose()
    print(f"survived {len(outcomes)}", flush=True)


def main(
    db_url: str, lago_url: str, api_key: str, intent_id: int, mode: str, timeout: float
) -> None:
    engine = make_engine(db_url)
    with LagoClient(lago_url, SecretStr(api_key), timeout_s=timeout, max_retries=0) as client:
        outcome = send_payment_request(
            engine=engine,
            client=client,
            intent_id=intent_id,
            owner=f"crash-worker:{os.getpid()}",
            now=lambda: datetime.now(UTC),
            settle_seconds=SETTLE_SECONDS,
            lease_seconds=LEASE_SECONDS,
            max_ambiguous_tries=5,
            hooks=KillAt(mode),
        )
    engine.dispose()
    print(f"{outcome.status} {outcome.error_code or ''}", flush=True)


if __name__ == "__main__":
    db, lago, key, intent, mode, timeout = sys.argv[1:7]
    clock_offset = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    if intent == "all":
        main_batch(db, lago, key, mode, clock_offset)
    else:
        main(db, lago, key, int(intent), mode, float(timeout))
