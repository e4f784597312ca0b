"""A claiming process for the concurrency test: claims in small batches until nothing is
left, then prints the claimed ids (one per line). Started by tests as a real subprocess:

    python -m tests.store.claim_worker URL OWNER BARRIER_DIR

It connects, writes BARRIER_DIR/OWNER.ready, and starts claiming once BARRIER_DIR/go exists,
so all processes compete from the same moment whatever their start-up time.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from worker.store.db import make_engine
from worker.store.intents import claim_intents


def main(url: str, owner: str, barrier: Path) -> None:
    engine = make_engine(url)
    engine.connect().close()
    (barrier / f"{owner}.ready").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)
    claimed: list[int] = []
    while True:
        batch = claim_intents(
            engine, owner=owner, now=datetime.now(UTC), lease_seconds=600, limit=10
        )
        if not batch:
            break
        claimed.extend(intent.id for intent in batch)
    engine.dispose()
    sys.stdout.write("".join(f"{intent_id}\n" for intent_id in claimed))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
