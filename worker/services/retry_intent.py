"""Re-queue one intent an operator wants sent again (`dunning retry INTENT_ID`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from worker.services.operator import Actor
from worker.store import channel_steps, intents, requeue
from worker.store.db import write_tx
from worker.store.operator_actions import record_action


class RetryError(Exception):
    """The intent cannot be retried. `str()` is one line that says why and what to do."""


@dataclass(frozen=True, slots=True)
class Requeued:
    intent_id: int
    previous_status: str
    external_customer_id: str


def retry_intent(
    engine: Engine, *, intent_id: int, now: datetime, actor: Actor, reason: str | None = None
) -> Requeued:
    """Make the intent `pending` and due now, recorded with who and why; raise `RetryError`
    if it cannot be (nothing is recorded then)."""
    with write_tx(engine) as session:
        intent = intents.get_intent(session, intent_id)
        if intent is None:
            raise RetryError(f"no intent #{intent_id}: `dunning status` lists the intents")
        status = intent.status
        record_action(
            session,
            actor,
            "retry",
            intent.external_customer_id,
            at=now,
            reason=reason,
            detail=f"re-queued from {status}",
            intent_id=intent_id,
        )
        if status not in requeue.RETRYABLE_STATUSES:
            allowed = ", ".join(requeue.RETRYABLE_STATUSES)
            raise RetryError(f"intent #{intent_id} is {status}: only {allowed} can be retried")
        blocking = requeue.other_open_intent(
            session, intent_id=intent_id, group_key=intent.group_key
        )
        if blocking is not None:
            raise RetryError(
                f"intent #{intent_id} cannot be re-queued: intent #{blocking} for the same "
                "customer, currency and billing entity is still open"
            )
        if not requeue.requeue_intent(
            session, intent_id=intent_id, expected_status=status, now=now
        ):
            raise RetryError(f"intent #{intent_id} changed meanwhile: run the command again")
        # The operator checked the mailbox: an email that may have gone is sent again.
        channel_steps.clear_unknown_email(session, intent_id=intent_id)
        return Requeued(intent_id, status, intent.external_customer_id)
