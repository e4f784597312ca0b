"""The `auto` channel: payment requests, falling back to retry_and_email without a licence.

The intent is switched to the channel that will send it before anything is sent, so a later
holder (after a crash or an unknown outcome) carries on with the same channel. Lago's 403
`feature_unavailable` to a payment request creates nothing: the intent is reopened on
`retry_and_email`, claimed again and sent that way, and the instance is remembered as
unlicensed (`LicenceMemory`), so later intents go straight to the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker.services.send_types import (
    SendContext,
    SendOutcome,
    SendStatus,
    lease_lost,
    not_claimed,
)
from worker.store import channel_intents, intents
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

from .base import AUTO, RETRY_AND_EMAIL, Channel
from .retry_and_email import still_held


class LicenceMemory(Protocol):
    def known_unlicensed(self) -> bool: ...

    def remember_unlicensed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AutoChannel:
    payment_request: Channel
    retry_and_email: Channel
    memory: LicenceMemory
    lease_seconds: int
    name: str = AUTO

    def send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        if not still_held(ctx, intent):
            return not_claimed(intent.id)  # e.g. emailed with a sibling (email_scope: customer)
        if self.memory.known_unlicensed():
            return self._fall_back(ctx, intent)
        outcome = self._on(ctx, intent, self.payment_request)
        if outcome.status is not SendStatus.BLOCKED or outcome.error_code != "feature_unavailable":
            return outcome
        self.memory.remember_unlicensed()
        with write_tx(ctx.engine) as session:
            reopened = channel_intents.reopen_blocked(
                session, intent_id=intent.id, channel=RETRY_AND_EMAIL, now=ctx.now()
            )
        if not reopened:
            return outcome
        claimed = intents.claim_intents(
            ctx.engine,
            owner=ctx.owner,
            now=ctx.now(),
            lease_seconds=self.lease_seconds,
            limit=1,
            intent_ids=[intent.id],
        )
        if not claimed:
            return lease_lost(intent.id)
        return self._fall_back(ctx, claimed[0])

    def _fall_back(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        """This intent and the customer's other open `auto` intents (not held by someone
        else) go over to retry_and_email, so a customer-wide statement can include them."""
        with write_tx(ctx.engine) as session:
            channel_intents.switch_open_channel(
                session,
                external_customer_id=intent.external_customer_id,
                from_channel=AUTO,
                to_channel=RETRY_AND_EMAIL,
                owner=ctx.owner,
                now=ctx.now(),
            )
        return self.retry_and_email.send(ctx, intent)

    def _on(self, ctx: SendContext, intent: ClaimedIntent, channel: Channel) -> SendOutcome:
        with write_tx(ctx.engine) as session:
            if not channel_intents.switch_channel(
                session, intent_id=intent.id, owner=ctx.owner, channel=channel.name, now=ctx.now()
            ):
                return lease_lost(intent.id)
        return channel.send(ctx, intent)
