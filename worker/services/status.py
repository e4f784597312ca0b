"""`dunning status`: what the ledger holds right now, for operators (one read transaction).

Intents per status, the send queue, open intents, who needs a human (needs review, blocked,
refused, paused, exhausted) and the last sweeps with what became of their intents, whoever
sent them. Everything is read through `worker.read`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from worker.read import reading
from worker.read.actions import ActionItem, action_list
from worker.read.intents import (
    IntentLine,
    PausedCustomer,
    intents_with_status,
    open_intents,
    paused_customers,
)
from worker.read.runs import (
    RunLine,
    SendQueue,
    channel_step_counts,
    intent_counts_by_channel,
    recent_runs,
    send_queue,
)
from worker.read.runs import intent_counts as count_intents


@dataclass(frozen=True, slots=True)
class StatusReport:
    intent_counts: dict[str, int]
    queue: SendQueue
    open_intents: list[IntentLine]
    needs_review: list[IntentLine]
    paused_customers: list[PausedCustomer]
    actions: list[ActionItem]
    last_sweeps: list[RunLine]
    #: {channel: {status: count}}: how intents were asked, and what became of them.
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    #: {retry|link|email: {status: count}}: the steps of the retry-and-email channel.
    channel_steps: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = to_jsonable(asdict(self))
        result["queue"]["in_flight"] = self.queue.in_flight
        for line, run in zip(result["last_sweeps"], self.last_sweeps, strict=True):
            line["skipped"] = run.skipped
        return result


def to_jsonable(value: Any) -> Any:
    """Dates and times as ISO 8601 strings, recursively (dataclasses: `asdict` first)."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def intent_counts(engine: Engine) -> dict[str, int]:
    """Intents per status (every known status present, zero included)."""
    with reading(engine) as session:
        return count_intents(session)


def build_status(
    engine: Engine, *, now: datetime, limit: int = 50, sweeps: int = 5
) -> StatusReport:
    with reading(engine) as session:
        return StatusReport(
            intent_counts=count_intents(session),
            queue=send_queue(session, now=now),
            open_intents=open_intents(session, limit=limit),
            needs_review=intents_with_status(session, "needs_review", limit=limit),
            paused_customers=paused_customers(session, now=now),
            actions=action_list(session, now=now, limit=limit),
            last_sweeps=recent_runs(session, limit=sweeps),
            by_channel=intent_counts_by_channel(session),
            channel_steps=channel_step_counts(session),
        )
