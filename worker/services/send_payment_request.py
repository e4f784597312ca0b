"""Send payment-request intents to Lago, exactly once.

Steps (design §3), for one intent or many (the intent's channel, `worker.services.channels`,
does steps 2-4; below, those of the `payment_request` channel):
1. Claim the intent under a lease in one short transaction (commit before any HTTP).
2. If an earlier try may have reached Lago (`post_started_at` was already set), reconcile
   first (`send_reconcile`): adopt what Lago has, wait for the settle window, or give up.
3. Stamp `post_started_at` in a short transaction, just before the intent's own POST: only
   from then on is a crash an unknown outcome for that intent.
4. POST, then record the checked and classified answer in a short transaction
   (`send_recording`, with the group's attempt counter on success).

No transaction is ever open during an HTTP call. Every write after the claim only applies
while we still hold the lease; otherwise the outcome is `lease_lost` and the newer holder
reconciles whatever we did.

`send_payment_requests` runs many intents through `send_pipeline.SendPipeline`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Engine

from worker import metrics
from worker.services.channels.base import PAYMENT_REQUEST, ChannelSet
from worker.services.channels.payment_request import PaymentRequestChannel
from worker.services.send_pipeline import SendPipeline
from worker.services.send_recording import retry_soon
from worker.services.send_types import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    DEFAULT_NOT_READY_RETRY_SECONDS,
    DEFAULT_RETRY_SECONDS,
    PaymentRequestsApi,
    SendContext,
    SendHooks,
    SendOutcome,
    SendStatus,
    not_claimed,
)
from worker.store import intents
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PaymentRequestsApi",
    "SendHooks",
    "SendOutcome",
    "SendStatus",
    "send_payment_request",
    "send_payment_requests",
]

#: Intents claimed at a time by `send_payment_requests`.
DEFAULT_BATCH_SIZE = 100


def send_payment_request(
    *,
    engine: Engine,
    client: PaymentRequestsApi,
    intent_id: int,
    owner: str,
    now: Callable[[], datetime],
    settle_seconds: int,
    lease_seconds: int,
    max_ambiguous_tries: int,
    hooks: SendHooks | None = None,
    clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS,
    retry_seconds: int = DEFAULT_RETRY_SECONDS,
    not_ready_retry_seconds: int = DEFAULT_NOT_READY_RETRY_SECONDS,
    channels: ChannelSet | None = None,
) -> SendOutcome:
    """Claim intent `intent_id`, reconcile if needed, POST at most once, record the result.

    `owner` must be unique per call site (e.g. host:pid:thread:uuid). Raises `StoreError` if
    the database fails; the lease then expires and a later run reconciles.
    """
    ctx = SendContext(
        engine=engine,
        client=client,
        owner=owner,
        now=now,
        settle=timedelta(seconds=settle_seconds),
        max_ambiguous_tries=max_ambiguous_tries,
        clock_skew=timedelta(seconds=clock_skew_seconds),
        retry=timedelta(seconds=retry_seconds),
        not_ready_retry=timedelta(seconds=not_ready_retry_seconds),
    )
    claimed = intents.claim_intents(
        engine,
        owner=owner,
        now=now(),
        lease_seconds=lease_seconds,
        limit=1,
        intent_ids=[intent_id],
    )
    if not claimed:
        return _counted(not_claimed(intent_id))
    metrics.record_lease_expiries(sum(intent.lease_was_expired for intent in claimed))
    if hooks is not None:
        hooks.after_claim()
    return _counted(_send_claimed(ctx, claimed[0], hooks, channels))


def _counted(outcome: SendOutcome) -> SendOutcome:
    metrics.record_send(outcome.status.value)
    return outcome


def _send_claimed(
    ctx: SendContext, intent: ClaimedIntent, hooks: SendHooks | None, channels: ChannelSet | None
) -> SendOutcome:
    """One claimed intent, through the channel it records."""
    chosen = (channels or default_channels(hooks)).for_intent(intent)
    if chosen is None:
        with write_tx(ctx.engine) as session:
            return retry_soon(
                ctx,
                session,
                intent,
                "channel_unavailable",
                f"no {intent.channel} sender",
            )
    return chosen.send(ctx, intent)


def default_channels(hooks: SendHooks | None = None) -> ChannelSet:
    """Payment requests only (what a caller without mail settings can send)."""
    return ChannelSet({PAYMENT_REQUEST: PaymentRequestChannel(hooks)})


def send_payment_requests(
    *,
    engine: Engine,
    client: PaymentRequestsApi,
    intent_ids: Sequence[int],
    owner: str,
    now: Callable[[], datetime],
    settle_seconds: int,
    lease_seconds: int,
    max_ambiguous_tries: int,
    concurrency: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    hooks: SendHooks | None = None,
    channels: ChannelSet | None = None,
    stop: threading.Event | None = None,
) -> Generator[SendOutcome, None, None]:
    """The same protocol as `send_payment_request`, for many intents, as a pipeline.

    Outcomes are yielded as they are recorded (not in `intent_ids` order). An intent an
    earlier try may have posted goes through the single-intent steps (reconcile first). A
    crash leaves the intents whose POST had started claimed with `post_started_at` set (they
    are reconciled after their lease expires), and the others claimed without it (they are
    simply sent by the next holder). Once `stop` is set, nothing more is claimed or started:
    what is in flight is recorded (and yielded), the rest given back.
    """
    if concurrency < 1 or batch_size < 1:
        raise ValueError("concurrency and batch_size must be >= 1")
    ctx = SendContext(
        engine=engine,
        client=client,
        owner=owner,
        now=now,
        settle=timedelta(seconds=settle_seconds),
        max_ambiguous_tries=max_ambiguous_tries,
    )
    chosen = channels or default_channels(hooks)
    pipeline = SendPipeline(
        ctx,
        dict.fromkeys(intent_ids),
        lease_seconds,
        batch_size,
        hooks,
        chosen,
        lambda intent: _send_claimed(ctx, intent, hooks, chosen),
    )
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") as pool:
        for outcome in pipeline.run(pool, concurrency, stop):
            yield _counted(outcome)
