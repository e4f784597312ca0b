"""The `payment_request` channel: Lago's `POST /payment_requests` (premium licence).

One claimed intent: if an earlier try may have reached Lago, reconcile first
(`send_reconcile`); otherwise stamp `post_started_at`, POST, and record the checked,
classified answer (`send_recording`). The batched pipeline in `send_payment_request` uses
`call_lago` and the same recording for fresh intents.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.lago.errors import LagoError
from worker.services.send_reconcile import reconcile_before_resend
from worker.services.send_recording import Answer, record_answer
from worker.services.send_types import SendContext, SendHooks, SendOutcome, lease_lost
from worker.store import intents
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

from .base import PAYMENT_REQUEST


def call_lago(ctx: SendContext, intent: ClaimedIntent) -> Answer:
    """The POST itself; its answer (or error) is recorded afterwards, never inside a tx."""
    try:
        return ctx.client.create_payment_request(
            intent.external_customer_id, list(intent.invoice_ids), email=intent.email
        )
    except LagoError as exc:
        return exc


@dataclass(frozen=True, slots=True)
class PaymentRequestChannel:
    hooks: SendHooks | None = None
    name: str = PAYMENT_REQUEST

    def send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        """Reconcile if an earlier try may have landed, else stamp and POST; record."""
        if intent.earlier_post_started_at is not None:
            settled = reconcile_before_resend(ctx, intent, intent.earlier_post_started_at)
            if settled is not None:
                return settled
            # Reconciled and settled: `restart_post_window` stamped the new POST already.
        else:
            with write_tx(ctx.engine) as session:
                stamped = intents.mark_post_started(
                    session, owner=ctx.owner, intent_ids=[intent.id], now=ctx.now()
                )
            if intent.id not in stamped:
                return lease_lost(intent.id)
        answer = call_lago(ctx, intent)
        if self.hooks is not None:
            self.hooks.after_post()
        with write_tx(ctx.engine) as session:
            return record_answer(ctx, session, intent, answer)
