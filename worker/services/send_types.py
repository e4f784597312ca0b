"""The vocabulary of the send service: what it needs from Lago, what it answers, its context.

Shared by the steps of sending (`send_payment_request`: claim and call; `send_reconcile`:
look in Lago before any re-send; `send_recording`: write the classified answer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import Engine

from worker.lago.models import PaymentRequest, PaymentStatus

DEFAULT_CLOCK_SKEW_SECONDS = 300
DEFAULT_RETRY_SECONDS = 60
DEFAULT_NOT_READY_RETRY_SECONDS = 3600


class PaymentRequestsApi(Protocol):
    """The part of `worker.lago.client.LagoClient` this service uses."""

    def create_payment_request(
        self,
        external_customer_id: str,
        lago_invoice_ids: list[str] | tuple[str, ...] | frozenset[str],
        *,
        email: str | None = None,
    ) -> PaymentRequest: ...

    def iter_payment_requests(
        self,
        *,
        external_customer_id: str | None = None,
        payment_status: PaymentStatus | None = None,
        currency: str | None = None,
        per_page: int = ...,
    ) -> Iterator[PaymentRequest]: ...


class SendHooks(Protocol):
    """Test seams at exact points of the protocol (production passes None)."""

    def after_claim(self) -> None: ...

    def after_post(self) -> None: ...


class SendStatus(StrEnum):
    SENT = "sent"  # our POST created the payment request
    ADOPTED = "adopted"  # a matching request already existed in Lago: no POST
    REFUSED = "refused"  # Lago said no for good (404/405/422)
    BLOCKED = "blocked"  # 403: the instance cannot create payment requests; stop the run
    NEEDS_REVIEW = "needs_review"  # too many unknown outcomes, or an answer we cannot explain
    RESCHEDULED = "rescheduled"  # back to pending; `detail` says why and when
    NOT_CLAIMED = "not_claimed"  # not due, leased elsewhere, paused, or already finished
    LEASE_LOST = "lease_lost"  # our lease expired meanwhile; the new holder takes over


@dataclass(frozen=True, slots=True)
class SendOutcome:
    intent_id: int
    status: SendStatus
    lago_id: str | None = None
    error_code: str | None = None
    detail: str = ""
    posted: bool = False  # a POST was made by this call
    channel: str | None = None  # how it was asked; None: a payment request

    @property
    def stops_run(self) -> bool:
        """Nothing else in this run can succeed (no licence, or the API key is rejected)."""
        return self.status is SendStatus.BLOCKED or self.error_code == "unauthorized"


@dataclass(frozen=True, slots=True)
class SendContext:
    """What every step of one send call needs. `owner` holds the leases."""

    engine: Engine
    client: PaymentRequestsApi
    owner: str
    now: Callable[[], datetime]
    settle: timedelta
    max_ambiguous_tries: int
    clock_skew: timedelta = timedelta(seconds=DEFAULT_CLOCK_SKEW_SECONDS)
    retry: timedelta = timedelta(seconds=DEFAULT_RETRY_SECONDS)
    not_ready_retry: timedelta = timedelta(seconds=DEFAULT_NOT_READY_RETRY_SECONDS)


NOT_CLAIMED_DETAIL = "not due, leased by another worker, customer paused, or already finished"


def not_claimed(intent_id: int) -> SendOutcome:
    return SendOutcome(intent_id, SendStatus.NOT_CLAIMED, detail=NOT_CLAIMED_DETAIL)


def lease_lost(intent_id: int, *, lago_id: str | None = None, posted: bool = False) -> SendOutcome:
    return SendOutcome(
        intent_id,
        SendStatus.LEASE_LOST,
        lago_id=lago_id,
        detail="the lease expired before the result was recorded; the new holder reconciles",
        posted=posted,
    )
