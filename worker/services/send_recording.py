"""Record what Lago answered to a send, in the caller's short transaction.

Every write only applies while the caller still holds the intent's lease; otherwise the
outcome is `lease_lost` and the newer holder reconciles whatever we did. The classification
(design §3): 200 sent (once the answer is checked: `answer_checks`); 404/405/422 refused for
good; 403 blocked; 429, 401, not-ready 405 and a connection never made are rescheduled with
nothing created; timeouts, dropped connections and 5xx are ambiguous (reconcile later).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker import metrics
from worker.lago.errors import (
    RETRY_LATER_CODES,
    FeatureUnavailableError,
    LagoConnectionError,
    LagoError,
    LagoForbiddenError,
    LagoRateLimitedError,
    LagoServerError,
    LagoStatusError,
    LagoUnauthorizedError,
)
from worker.lago.models import PaymentRequest
from worker.logging import get_logger
from worker.services.answer_checks import Mismatch, check_answer
from worker.services.send_types import SendContext, SendOutcome, SendStatus, lease_lost
from worker.store import group_states, intents
from worker.store.intents import ClaimedIntent

log = get_logger(__name__)

Answer = PaymentRequest | LagoError


def record_answer(
    ctx: SendContext, session: Session, intent: ClaimedIntent, answer: Answer
) -> SendOutcome:
    """Record one POST's answer (checked first when it is a payment request)."""
    if isinstance(answer, LagoError):
        return record_failure(ctx, session, intent, answer)
    mismatch = _check(intent, answer)
    if mismatch is not None:
        return record_mismatch(ctx, session, intent, answer, mismatch, stage="sent")
    return record_success(
        ctx, session, intent, answer, adopted=False, detail=dropped(intent, answer)
    )


def record_answers(
    ctx: SendContext, session: Session, answered: list[tuple[ClaimedIntent, Answer]]
) -> list[SendOutcome]:
    """Record many answers in the caller's transaction. Checked, created requests (the common
    case) are written with two multi-row statements; everything else one by one."""
    created: list[tuple[ClaimedIntent, PaymentRequest]] = []
    outcomes: list[SendOutcome] = []
    for intent, answer in answered:
        if isinstance(answer, PaymentRequest) and _check(intent, answer) is None:
            created.append((intent, answer))
        else:
            outcomes.append(record_answer(ctx, session, intent, answer))
    if not created:
        return outcomes
    now = ctx.now()
    try:
        with session.begin_nested():
            held = intents.record_sent_many(
                session, owner=ctx.owner, now=now, results=_sent_results(created)
            )
            group_states.record_attempts(
                session,
                attempts=_attempts([(i, a) for i, a in created if i.id in held]),
                now=now,
            )
    except IntegrityError:
        # A Lago id is already on another intent: sort it out one by one.
        return outcomes + [
            record_answer(ctx, session, intent, answer) for intent, answer in created
        ]
    for intent, answer in created:
        if intent.id in held:
            metrics.record_sent(intent.currency)
            outcomes.append(_sent_outcome(intent, answer))
        else:
            outcomes.append(lease_lost(intent.id, lago_id=answer.lago_id, posted=True))
    return outcomes


def quick_recordable(intent: ClaimedIntent, answer: Answer) -> bool:
    """Whether `record_quickly` may take this answer: a payment request that passes its
    checks, or a failure that is simply refused or rescheduled (nothing counted, nothing that
    stops the run). An unknown outcome, a mismatch, a 401 or a 403 go the careful way."""
    if isinstance(answer, PaymentRequest):
        return _check(intent, answer) is None
    if isinstance(answer, LagoForbiddenError | LagoUnauthorizedError | LagoServerError):
        return False
    return isinstance(answer, LagoStatusError | LagoConnectionError)


def record_quickly(
    ctx: SendContext, session: Session, answered: list[tuple[ClaimedIntent, Answer]]
) -> list[SendOutcome]:
    """`record_answers` for answers that `quick_recordable` passed, on intents the caller
    expects to hold still: the created requests with two statements whatever their number
    (no rows read back, no savepoint), each failure with one.

    Raises `intents.NotAllHeldError` (a created request's intent is no longer held) or
    `IntegrityError` (its Lago id is already on another intent): the caller rolls back and
    takes `record_answers`. Counts nothing in the metrics (the caller counts the requests
    sent once the transaction has committed)."""
    if not all(quick_recordable(intent, answer) for intent, answer in answered):
        raise ValueError("record_quickly takes what quick_recordable passed only")
    now = ctx.now()
    created = [(i, a) for i, a in answered if isinstance(a, PaymentRequest)]
    if created:
        intents.record_sent_held(session, owner=ctx.owner, now=now, results=_sent_results(created))
        group_states.record_attempts(session, attempts=_attempts(created), now=now)
    outcomes = [_sent_outcome(intent, answer) for intent, answer in created]
    outcomes += [
        record_failure(ctx, session, intent, answer)
        for intent, answer in answered
        if isinstance(answer, LagoError)
    ]
    return outcomes


def _sent_outcome(intent: ClaimedIntent, answer: PaymentRequest) -> SendOutcome:
    return SendOutcome(
        intent.id,
        SendStatus.SENT,
        lago_id=answer.lago_id,
        detail=dropped(intent, answer),
        posted=True,
    )


def _sent_results(
    created: list[tuple[ClaimedIntent, PaymentRequest]],
) -> list[intents.SentResult]:
    return [
        intents.SentResult(i.id, a.lago_id, tuple(a.invoice_ids), dropped(i, a)) for i, a in created
    ]


def _attempts(created: list[tuple[ClaimedIntent, PaymentRequest]]) -> list[group_states.Attempt]:
    return [
        group_states.Attempt(
            i.external_customer_id, i.currency, i.billing_entity_code, tuple(a.invoice_ids)
        )
        for i, a in created
    ]


def _check(intent: ClaimedIntent, request: PaymentRequest) -> Mismatch | None:
    return check_answer(
        request,
        external_customer_id=intent.external_customer_id,
        currency=intent.currency,
        invoice_ids=intent.invoice_ids,
    )


def record_mismatch(
    ctx: SendContext,
    session: Session,
    intent: ClaimedIntent,
    request: PaymentRequest,
    mismatch: Mismatch,
    *,
    stage: str,
) -> SendOutcome:
    """A payment request we cannot explain: to review, never counted as an attempt. Its Lago
    id is kept on the intent (unless another intent already holds it) for the human."""
    now = ctx.now()
    code = "answer_mismatch" if stage == "sent" else "adoption_mismatch"
    reason = (
        f"{mismatch.detail}; not counted as an attempt: check it in Lago, then cancel the intent "
        "or retry it"
    )
    log.warning(
        "send.answer_mismatch",
        intent_id=intent.id,
        stage=stage,
        problem=mismatch.problem,
        lago_id=request.lago_id,
        detail=mismatch.detail,
    )
    metrics.record_answer_mismatch(stage, mismatch.problem)
    try:
        with session.begin_nested():
            recorded = intents.record_needs_review(
                session,
                intent_id=intent.id,
                owner=ctx.owner,
                now=now,
                error_code=code,
                reason=reason,
                lago_payment_request_id=request.lago_id,
                lago_invoice_ids=request.invoice_ids,
            )
    except IntegrityError:
        recorded = intents.record_needs_review(
            session, intent_id=intent.id, owner=ctx.owner, now=now, error_code=code, reason=reason
        )
    if not recorded:
        return lease_lost(intent.id, lago_id=request.lago_id, posted=stage == "sent")
    return SendOutcome(
        intent.id,
        SendStatus.NEEDS_REVIEW,
        lago_id=request.lago_id,
        error_code=code,
        detail=reason,
        posted=stage == "sent",
    )


def record_success(
    ctx: SendContext,
    session: Session,
    intent: ClaimedIntent,
    request: PaymentRequest,
    *,
    adopted: bool,
    detail: str,
) -> SendOutcome:
    now = ctx.now()
    status = SendStatus.ADOPTED if adopted else SendStatus.SENT
    try:
        # A savepoint, so a clash on the Lago id does not undo a caller's batch.
        with session.begin_nested():
            if not intents.record_sent(
                session,
                intent_id=intent.id,
                owner=ctx.owner,
                now=now,
                lago_payment_request_id=request.lago_id,
                lago_invoice_ids=request.invoice_ids,
                adopted=adopted,
                detail=detail or None,
            ):
                return lease_lost(intent.id, lago_id=request.lago_id, posted=not adopted)
            group_states.record_attempt(
                session,
                external_customer_id=intent.external_customer_id,
                currency=intent.currency,
                billing_entity_code=intent.billing_entity_code,
                invoice_ids=request.invoice_ids,
                now=now,
            )
    except IntegrityError:
        # Another intent recorded this Lago id first (adopted concurrently): look again later.
        return reschedule(
            ctx,
            session,
            intent,
            now + ctx.retry,
            "lago_id_taken",
            f"payment request {request.lago_id} is already recorded on another intent",
            clear=False,
        )
    if adopted:
        metrics.record_adoption()
    else:
        metrics.record_sent(intent.currency)
    return SendOutcome(
        intent.id, status, lago_id=request.lago_id, detail=detail, posted=not adopted
    )


def record_failure(
    ctx: SendContext, session: Session, intent: ClaimedIntent, exc: LagoError
) -> SendOutcome:
    now = ctx.now()
    code = exc.code if isinstance(exc, LagoStatusError) else None
    if isinstance(exc, LagoForbiddenError):
        error_code = code or (
            "feature_unavailable" if isinstance(exc, FeatureUnavailableError) else "forbidden"
        )
        return _definitive(
            ctx, session, intent, intents.record_blocked, SendStatus.BLOCKED, error_code, exc
        )
    if isinstance(exc, LagoRateLimitedError):
        wait = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else ctx.retry
        return reschedule(
            ctx, session, intent, now + wait, "rate_limited", exc, clear=True, posted=True
        )
    if isinstance(exc, LagoUnauthorizedError):
        return reschedule(
            ctx, session, intent, now + ctx.retry, "unauthorized", exc, clear=True, posted=True
        )
    if isinstance(exc, LagoStatusError) and code in RETRY_LATER_CODES:
        return reschedule(
            ctx, session, intent, now + ctx.not_ready_retry, code, exc, clear=True, posted=True
        )
    if isinstance(exc, LagoStatusError) and not isinstance(exc, LagoServerError):
        error_code = code or f"http_{exc.status}"
        return _definitive(
            ctx, session, intent, intents.record_refused, SendStatus.REFUSED, error_code, exc
        )
    if isinstance(exc, LagoConnectionError):
        # The client raises this for a POST only when the request certainly never left.
        return reschedule(
            ctx, session, intent, now + ctx.retry, "connect_failed", exc, clear=True, posted=True
        )
    # LagoAmbiguousError, timeouts, 5xx, an unreadable 200: it may have landed. Reconcile later.
    metrics.record_ambiguous()
    if not intents.reschedule(
        session,
        intent_id=intent.id,
        owner=ctx.owner,
        now=now,
        next_attempt_at=now + ctx.settle,
        error_code="ambiguous",
        error=str(exc),
        clear_post_started=False,
        count_ambiguous=True,
    ):
        return lease_lost(intent.id)
    return SendOutcome(
        intent.id,
        SendStatus.RESCHEDULED,
        error_code="ambiguous",
        detail=f"outcome unknown ({exc}); reconciling after the settle window",
        posted=True,
    )


class _FinalRecorder(Protocol):
    def __call__(
        self,
        session: Session,
        *,
        intent_id: int,
        owner: str,
        now: datetime,
        error_code: str,
        error: str,
    ) -> bool: ...


def _definitive(
    ctx: SendContext,
    session: Session,
    intent: ClaimedIntent,
    record: _FinalRecorder,
    status: SendStatus,
    error_code: str,
    exc: LagoError,
) -> SendOutcome:
    """Lago answered for good (refused, or no licence): record it, if we still hold the lease."""
    if not record(
        session,
        intent_id=intent.id,
        owner=ctx.owner,
        now=ctx.now(),
        error_code=error_code,
        error=str(exc),
    ):
        return lease_lost(intent.id)
    return SendOutcome(intent.id, status, error_code=error_code, detail=str(exc), posted=True)


def reschedule(
    ctx: SendContext,
    session: Session,
    intent: ClaimedIntent,
    when: datetime,
    error_code: str,
    error: Exception | str,
    *,
    clear: bool,
    posted: bool = False,
) -> SendOutcome:
    if not intents.reschedule(
        session,
        intent_id=intent.id,
        owner=ctx.owner,
        now=ctx.now(),
        next_attempt_at=when,
        error_code=error_code,
        error=str(error),
        clear_post_started=clear,
    ):
        return lease_lost(intent.id)
    return SendOutcome(
        intent.id,
        SendStatus.RESCHEDULED,
        error_code=error_code,
        detail=f"{error}; next try at {when.isoformat()}",
        posted=posted,
    )


def retry_soon(
    ctx: SendContext, session: Session, intent: ClaimedIntent, error_code: str, error: object
) -> SendOutcome:
    """Back to pending for another try after `ctx.retry`; nothing was sent."""
    return reschedule(
        ctx, session, intent, ctx.now() + ctx.retry, error_code, str(error), clear=True
    )


def dropped(intent: ClaimedIntent, request: PaymentRequest) -> str:
    missing = set(intent.invoice_ids) - request.invoice_ids
    if not missing:
        return ""
    return f"Lago left out {len(missing)} of {len(intent.invoice_ids)} invoices"
