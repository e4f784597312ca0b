"""The Lago calls of the retry_and_email channel, one ledger step each (`channel_steps`).

- A retry (`retry_payment`) is stamped before the call and never made twice: a 5xx,
  timeout or dropped connection leaves it `unknown` (Lago may have started a charge). A
  connection never made removes the stamp (nothing left), so a later try may make it.
- A link (`payment_url`) only reads a checkout link from the provider (Lago reuses the
  payment intent), so it is recorded after the call; a made link is reused by a later try.
  Its answer must name the invoice we asked about and be an http(s) URL (`check_link`).
Lago answers `retry_payment` with an empty 200, so there is nothing to check in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker import metrics
from worker.lago.errors import (
    LagoConnectionError,
    LagoError,
    LagoRateLimitedError,
    LagoStatusError,
    LagoUnauthorizedError,
)
from worker.lago.models import Invoice, InvoicePaymentDetails
from worker.logging import get_logger
from worker.services.answer_checks import check_link
from worker.services.send_types import SendContext
from worker.store import channel_steps
from worker.store.channel_steps import Step, StepRef
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

log = get_logger(__name__)

#: Lago makes no payment links for GoCardless (mandates are collected, not paid by link).
NO_LINK_PROVIDERS = frozenset({"gocardless"})


class InvoicePaymentsApi(Protocol):
    def get_invoice(self, lago_id: str) -> Invoice: ...

    def retry_payment(self, lago_id: str) -> None: ...

    def payment_url(self, lago_id: str) -> InvoicePaymentDetails: ...


class LeaseLostError(Exception):
    """Our lease on the intent expired mid-way: the new holder carries on."""


class StopSendingError(Exception):
    """Lago rejects the API key: nothing more can succeed in this run."""

    def __init__(self, error: LagoError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class InvoiceResult:
    retried: bool
    payment_url: str | None


def _code(exc: LagoError) -> str:
    if isinstance(exc, LagoStatusError):
        return exc.code or f"http_{exc.status}"
    return type(exc).__name__


def retry_invoice(
    ctx: SendContext,
    api: InvoicePaymentsApi,
    intent: ClaimedIntent,
    lago_id: str,
    earlier: Step | None,
) -> bool:
    """Retry the invoice's payment once in the intent's life; True if Lago took it."""
    if earlier is not None:
        return earlier.status == "done"
    key = StepRef(intent.id, ctx.owner, "retry", lago_id)
    with write_tx(ctx.engine) as session:
        if not channel_steps.start_step(session, key, now=ctx.now()):
            raise LeaseLostError
    status, code, detail = "done", None, None
    try:
        api.retry_payment(lago_id)
    except (LagoConnectionError, LagoRateLimitedError, LagoUnauthorizedError) as exc:
        # Certainly not taken (no connection, or refused before any work): may be made later.
        with write_tx(ctx.engine) as session:
            channel_steps.forget_step(session, key, now=ctx.now())
        if isinstance(exc, LagoUnauthorizedError):
            raise StopSendingError(exc) from exc
        log.info("channel.retry_not_made", intent_id=intent.id, invoice=lago_id, error=str(exc))
        return False
    except LagoStatusError as exc:
        ambiguous = exc.status >= 500
        status, code, detail = ("unknown" if ambiguous else "refused"), _code(exc), str(exc)
    except LagoError as exc:  # timeout, dropped connection, 5xx: it may have been taken
        status, code, detail = "unknown", _code(exc), str(exc)
    with write_tx(ctx.engine) as session:
        if not channel_steps.finish_step(
            session, key, now=ctx.now(), status=status, error_code=code, detail=detail
        ):
            raise LeaseLostError
    return status == "done"


def link_for_invoice(
    ctx: SendContext,
    api: InvoicePaymentsApi,
    intent: ClaimedIntent,
    lago_id: str,
    earlier: Step | None,
) -> str | None:
    """A payment link for the invoice (made once, then reused), or None."""
    if earlier is not None:
        return earlier.payment_url if earlier.status == "done" else None
    url: str | None = None
    status, code, detail = "done", None, None
    try:
        details = api.payment_url(lago_id)
    except LagoUnauthorizedError as exc:
        raise StopSendingError(exc) from exc
    except LagoStatusError as exc:
        if exc.status >= 500 or isinstance(exc, LagoRateLimitedError):
            return None  # no link this time; nothing recorded
        status, code, detail = "refused", _code(exc), str(exc)
    except LagoError:
        return None
    else:
        mismatch = check_link(
            details, lago_id=lago_id, external_customer_id=intent.external_customer_id
        )
        if mismatch is None:
            url = details.payment_url
        else:
            problem = mismatch.detail
            metrics.record_answer_mismatch("link", mismatch.problem)
            log.warning(
                "channel.link_mismatch", intent_id=intent.id, invoice=lago_id, problem=problem
            )
            status, code, detail = "refused", "answer_mismatch", problem
    key = StepRef(intent.id, ctx.owner, "link", lago_id)
    with write_tx(ctx.engine) as session:
        now = ctx.now()
        recorded = channel_steps.start_step(session, key, now=now) and channel_steps.finish_step(
            session, key, now=now, status=status, payment_url=url, error_code=code, detail=detail
        )
        if not recorded:
            raise LeaseLostError
    return url
