"""Run every due intent through the send service: pending and due, expired leases (a worker
died mid-flight), and ambiguous tries whose settle window has passed.

Bounded concurrency with a thread pool (the Lago client is thread-safe; every send uses its
own short transactions). A `blocked` or `unauthorized` outcome stops submitting more work:
nothing else in this pass could succeed.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from worker.services.channels.base import ChannelSet
from worker.services.send_payment_request import (
    PaymentRequestsApi,
    SendHooks,
    SendOutcome,
    SendStatus,
    send_payment_request,
)
from worker.store import intents
from worker.store.db import read_session


@dataclass(frozen=True, slots=True)
class RecoverSummary:
    due: int
    by_status: Mapping[SendStatus, int] = field(default_factory=dict)
    posts: int = 0
    stopped_by: SendOutcome | None = None  # the outcome that stopped the pass, if any

    def count(self, status: SendStatus) -> int:
        return self.by_status.get(status, 0)


def worker_identity() -> str:
    """`host:pid` of this process, the prefix of lease owners."""
    return f"{socket.gethostname()}:{os.getpid()}"


def recover_intents(
    *,
    engine: Engine,
    client: PaymentRequestsApi,
    now: Callable[[], datetime],
    settle_seconds: int,
    lease_seconds: int,
    max_ambiguous_tries: int,
    concurrency: int = 8,
    limit: int = 1000,
    owner_prefix: str | None = None,
    hooks: SendHooks | None = None,
    channels: ChannelSet | None = None,
) -> RecoverSummary:
    """Send up to `limit` due intents, `concurrency` at a time; return what happened."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    with read_session(engine) as session:
        due = intents.due_intent_ids(session, now=now(), limit=limit)
    if not due:
        return RecoverSummary(due=0)
    prefix = owner_prefix or worker_identity()
    stop = threading.Event()
    stopped: list[SendOutcome] = []

    def run(intent_id: int) -> SendOutcome | None:
        if stop.is_set():
            return None
        outcome = send_payment_request(
            engine=engine,
            client=client,
            intent_id=intent_id,
            owner=f"{prefix}:{uuid.uuid4().hex[:12]}",
            now=now,
            settle_seconds=settle_seconds,
            lease_seconds=lease_seconds,
            max_ambiguous_tries=max_ambiguous_tries,
            hooks=hooks,
            channels=channels,
        )
        if outcome.stops_run:
            stopped.append(outcome)
            stop.set()
        return outcome

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="recover") as pool:
        outcomes = [outcome for outcome in pool.map(run, due) if outcome is not None]
    return RecoverSummary(
        due=len(due),
        by_status=dict(Counter(outcome.status for outcome in outcomes)),
        posts=sum(1 for outcome in outcomes if outcome.posted),
        stopped_by=stopped[0] if stopped else None,
    )
