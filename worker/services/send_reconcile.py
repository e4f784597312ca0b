"""Before any re-send, look in Lago: an earlier try (or someone else) may have asked already.

Called when an earlier try may have reached Lago (`post_started_at` was already set). Lists
the customer's payment requests and adopts one created since that try (minus a clock-skew
margin) whose invoices overlap ours, or else any still-pending one covering our invoices (e.g.
made by Lago's own dunning campaign). A candidate is adopted only if it passes the same checks
as a POST's answer (`answer_checks`); a candidate that fails them goes to review. Nothing
found: wait until the settle window has passed since that try, then POST again; too many
unknown outcomes: needs_review.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from worker.lago.errors import LagoError, LagoUnauthorizedError
from worker.lago.models import PaymentRequest
from worker.services.answer_checks import Mismatch, check_answer
from worker.services.send_recording import record_mismatch, record_success, reschedule
from worker.services.send_types import SendContext, SendOutcome, SendStatus, lease_lost
from worker.store import intents
from worker.store.db import read_session, write_tx
from worker.store.intents import ClaimedIntent


def reconcile_before_resend(
    ctx: SendContext, intent: ClaimedIntent, since: datetime
) -> SendOutcome | None:
    """Adopt a matching request, or decide to wait / give up. None = go ahead and POST."""
    try:
        found = list(
            ctx.client.iter_payment_requests(
                external_customer_id=intent.external_customer_id, currency=intent.currency
            )
        )
    except LagoError as exc:
        code = "unauthorized" if isinstance(exc, LagoUnauthorizedError) else "reconcile_failed"
        with write_tx(ctx.engine) as session:
            return reschedule(ctx, session, intent, ctx.now() + ctx.retry, code, exc, clear=False)
    match = pick_match(ctx, intent, found, since)
    if isinstance(match, tuple):
        request, mismatch = match
        with write_tx(ctx.engine) as session:
            return record_mismatch(ctx, session, intent, request, mismatch, stage="adopted")
    if match is not None:
        request, detail = match.request, match.detail
        with write_tx(ctx.engine) as session:
            return record_success(ctx, session, intent, request, adopted=True, detail=detail)
    return _nothing_found(ctx, intent, since)


def _nothing_found(ctx: SendContext, intent: ClaimedIntent, since: datetime) -> SendOutcome | None:
    now = ctx.now()
    if intent.ambiguous_tries >= ctx.max_ambiguous_tries:
        reason = (
            f"{intent.ambiguous_tries} tries with unknown outcome and no matching payment "
            "request in Lago: check Lago, then cancel the intent or send it by hand"
        )
        with write_tx(ctx.engine) as session:
            if not intents.record_needs_review(
                session,
                intent_id=intent.id,
                owner=ctx.owner,
                now=now,
                error_code="too_many_ambiguous_tries",
                reason=reason,
            ):
                return lease_lost(intent.id)
        return SendOutcome(intent.id, SendStatus.NEEDS_REVIEW, detail=reason)
    settled_at = since + ctx.settle
    if now < settled_at:
        with write_tx(ctx.engine) as session:
            if not intents.reschedule(
                session,
                intent_id=intent.id,
                owner=ctx.owner,
                now=now,
                next_attempt_at=settled_at,
                error_code="awaiting_settle",
                error="an earlier try may still land in Lago; looking again once it settles",
                clear_post_started=False,
            ):
                return lease_lost(intent.id)
        return SendOutcome(
            intent.id,
            SendStatus.RESCHEDULED,
            error_code="awaiting_settle",
            detail=f"nothing in Lago yet; looking again at {settled_at.isoformat()}",
        )
    # Settled and nothing landed: a new POST window starts now.
    with write_tx(ctx.engine) as session:
        if not intents.restart_post_window(session, intent_id=intent.id, owner=ctx.owner, now=now):
            return lease_lost(intent.id)
    return None


class Match:
    """A request to adopt, and why."""

    __slots__ = ("detail", "request")

    def __init__(self, request: PaymentRequest, detail: str) -> None:
        self.request = request
        self.detail = detail


def pick_match(
    ctx: SendContext, intent: ClaimedIntent, found: Sequence[PaymentRequest], since: datetime
) -> Match | tuple[PaymentRequest, Mismatch] | None:
    """The request to adopt; or a relevant request overlapping ours that fails the answer
    checks (to review, with why); or None when nothing in Lago stands for our ask.

    Relevant = created since the earlier try (minus the clock-skew margin), or still pending.
    """
    ours = frozenset(intent.invoice_ids)
    overlapping = [request for request in found if request.invoice_ids & ours]
    if not overlapping:
        return None
    with read_session(ctx.engine) as session:
        taken = intents.known_lago_ids(session, lago_ids=[r.lago_id for r in overlapping])
    window_start = since - ctx.clock_skew

    def recent(request: PaymentRequest) -> bool:
        return request.created_at is not None and request.created_at >= window_start

    relevant = [
        request
        for request in overlapping
        if request.lago_id not in taken and (recent(request) or request.payment_status == "pending")
    ]
    checked = [(request, _check(intent, request)) for request in relevant]
    good = sorted(
        (request for request, mismatch in checked if mismatch is None),
        key=lambda request: (_created(request), request.lago_id),
    )
    earliest_recent = next((request for request in good if recent(request)), None)
    if earliest_recent is not None:
        return Match(earliest_recent, "adopted: an earlier try's payment request was found in Lago")
    if good:
        return Match(good[-1], "adopted: a pending payment request already covers these invoices")
    bad = [(request, mismatch) for request, mismatch in checked if mismatch is not None]
    return bad[0] if bad else None


def _created(request: PaymentRequest) -> datetime:
    return request.created_at or datetime.min.replace(tzinfo=UTC)


def _check(intent: ClaimedIntent, request: PaymentRequest) -> Mismatch | None:
    return check_answer(
        request,
        external_customer_id=intent.external_customer_id,
        currency=intent.currency,
        invoice_ids=intent.invoice_ids,
    )
