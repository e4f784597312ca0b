"""Read models: the ONE place where operators' views query the ledger.

`dunning status`, `dunning report`, the live view of `dunning run` (and the web console) read
through these functions; none of them writes. Each takes an open `Session` (one read
transaction, `reading(engine)`), so a caller composing several reads sees one state, and
returns frozen dataclasses, never rendered text.

- `runs`: the last sweeps with what became of their intents (sent / rescheduled / refused,
  whoever sent them) and their skips by reason; the send queue (in flight, due, waiting).
- `outstanding`: what is overdue now, per currency and ageing bucket (from the newest full
  sweep's snapshot: the ledger keeps no invoices).
- `recovery`: asked / paid / recovered / rate / median days to pay per policy, currency and
  attempt, and the recovered amount per day.
- `actions`: who needs a human (needs review, blocked, refused, paused, exhausted).
- `next_sweep`: what the next sweep is expected to ask, from the last full sweep's decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from worker.store.db import read_session


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """One read-only transaction for a set of read-model calls."""
    with read_session(engine) as session:
        yield session
