"""The seam between the send protocol and the ways of asking a customer to pay.

`send_payment_request(s)` claims an intent under a lease; the intent's channel then does
everything else for it (reconcile, stamp, call, record) and answers one `SendOutcome`.
`ChannelSet` is the one place a channel is selected: by the channel the intent records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from worker.services.send_types import SendContext, SendOutcome
from worker.store.intents import ClaimedIntent

PAYMENT_REQUEST = "payment_request"
RETRY_AND_EMAIL = "retry_and_email"
AUTO = "auto"


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, ctx: SendContext, intent: ClaimedIntent) -> SendOutcome:
        """Send one intent this worker holds under a lease (not yet stamped)."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelSet:
    channels: Mapping[str, Channel]

    def for_intent(self, intent: ClaimedIntent) -> Channel | None:
        return self.channels.get(intent.channel)

    def batches(self, intent: ClaimedIntent) -> bool:
        """Sent by the batched payment-request pipeline (fresh payment-request intents)."""
        return intent.channel == PAYMENT_REQUEST and intent.earlier_post_started_at is None
