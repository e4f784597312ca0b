"""Send one payment-request intent to Lago, exactly once.

Steps (design §3):
1. Claim the intent under a lease in one short transaction (commit before any HTTP).
2. If an earlier try may have reached Lago (`post_started_at` was already set), RECONCILE:
   list the customer's payment requests and adopt one created since that try (minus a
   clock-skew margin) whose invoices overlap ours, or any still-pending one covering our
   invoices (e.g. made by Lago's own dunning campaign). Nothing found: wait until the settle
   window has passed since that try, then POST again; too many unknown outcomes: needs_review.
3. POST and record the classified answer in one short transaction (with the group's attempt
   counter on success). `hooks.after_post()` runs between the answer and that commit.

No transaction is ever open during an HTTP call. Every write after the claim only applies
while we still hold the lease; otherwise the outcome is `lease_lost` and the newer holder
reconciles whatever we did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import Engine
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
from worker.lago.models import PaymentRequest, PaymentStatus
from worker.store import group_states, intents
from worker.store.db import read_session, write_tx
from worker.store.intents import ClaimedIntent

DEFAULT_CLOCK_SKEW_SECONDS = 300
DEFAULT_RETRY_SECONDS = 60
DEFAULT_NOT_READY_RETRY_SECONDS = 3600
#: Intents claimed, posted and recorded together by `send_payment_requests`.
DEFAULT_BATCH_SIZE = 100


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
    NEEDS_REVIEW = "needs_review"  # too many unknown outcomes
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

    @property
    def stops_run(self) -> bool:
        """Nothing else in this run can succeed (no licence, or the API key is rejected)."""
        return self.status is SendStatus.BLOCKED or self.error_code == "unauthorized"


@dataclass(frozen=True, slots=True)
class _Context:
    engine: Engine
    client: PaymentRequestsApi
    owner: str
    now: Callable[[], datetime]
    settle: timedelta
    max_ambiguous_tries: int
    clock_skew: timedelta
    retry: timedelta
    not_ready_retry: timedelta


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
) -> SendOutcome:
    """Claim intent `intent_id`, reconcile if needed, POST at most once, record the result.

    `owner` must be unique per call site (e.g. host:pid:thread:uuid). Raises `StoreError` if
    the database fails; the lease then expires and a later run reconciles.
    """
    ctx = _Context(
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
        return SendOutcome(
            intent_id,
            SendStatus.NOT_CLAIMED,
            detail="not due, leased by another worker, customer paused, or already finished",
        )
    intent = claimed[0]
    if hooks is not None:
        hooks.after_claim()
    if intent.earlier_post_started_at is not None:
        settled = _reconcile(ctx, intent, intent.earlier_post_started_at)
        if settled is not None:
            return settled
    return _post(ctx, intent, hooks)


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
) -> Iterator[SendOutcome]:
    """The same protocol as `send_payment_request`, for many intents at a time.

    Per batch: ONE transaction claims the batch, the POSTs run concurrently (no transaction
    open), then ONE transaction records every answer. The database work per payment request
    is a few statements instead of two commits, which is what keeps a large sweep fast. An
    intent an earlier try may have posted goes through the single-intent path (reconcile
    first). A crash between the POSTs and the recording leaves the intents claimed with
    `post_started_at` set: exactly the state a crash of the single path leaves, recovered the
    same way (lease expiry, then reconcile and adopt).
    """
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for start in range(0, len(intent_ids), batch_size):
            chunk = list(intent_ids[start : start + batch_size])
            ctx = _Context(
                engine=engine,
                client=client,
                owner=f"{owner}:{start // batch_size}",
                now=now,
                settle=timedelta(seconds=settle_seconds),
                max_ambiguous_tries=max_ambiguous_tries,
                clock_skew=timedelta(seconds=DEFAULT_CLOCK_SKEW_SECONDS),
                retry=timedelta(seconds=DEFAULT_RETRY_SECONDS),
                not_ready_retry=timedelta(seconds=DEFAULT_NOT_READY_RETRY_SECONDS),
            )
            yield from _send_batch(ctx, chunk, lease_seconds, pool, hooks)


def _send_batch(
    ctx: _Context,
    chunk: list[int],
    lease_seconds: int,
    pool: ThreadPoolExecutor,
    hooks: SendHooks | None,
) -> Iterator[SendOutcome]:
    claimed = intents.claim_intents(
        ctx.engine,
        owner=ctx.owner,
        now=ctx.now(),
        lease_seconds=lease_seconds,
        limit=len(chunk),
        intent_ids=chunk,
    )
    held = {intent.id for intent in claimed}
    for intent_id in chunk:
        if intent_id not in held:
            yield SendOutcome(
                intent_id,
                SendStatus.NOT_CLAIMED,
                detail="not due, leased by another worker, customer paused, or already finished",
            )
    if hooks is not None and claimed:
        hooks.after_claim()
    fresh = [intent for intent in claimed if intent.earlier_post_started_at is None]
    for intent in claimed:
        if intent.earlier_post_started_at is not None:
            settled = _reconcile(ctx, intent, intent.earlier_post_started_at)
            yield settled if settled is not None else _post(ctx, intent, hooks)
    answers = list(pool.map(lambda intent: _call_lago(ctx, intent), fresh))
    if hooks is not None and fresh:
        hooks.after_post()
    if fresh:
        with write_tx(ctx.engine) as session:
            outcomes = _record_answers(ctx, session, list(zip(fresh, answers, strict=True)))
        yield from outcomes


def _record_answers(
    ctx: _Context,
    session: Session,
    answered: list[tuple[ClaimedIntent, PaymentRequest | LagoError]],
) -> list[SendOutcome]:
    """Record a batch's answers in the caller's transaction. Created requests (the common
    case) are written with two multi-row statements; errors one by one."""
    created = [(i, a) for i, a in answered if isinstance(a, PaymentRequest)]
    outcomes = [
        _record_failure(ctx, session, intent, answer)
        for intent, answer in answered
        if isinstance(answer, LagoError)
    ]
    now = ctx.now()
    try:
        with session.begin_nested():
            held = intents.record_sent_many(
                session,
                owner=ctx.owner,
                now=now,
                results=[
                    intents.SentResult(i.id, a.lago_id, tuple(a.invoice_ids), _dropped(i, a))
                    for i, a in created
                ],
            )
            group_states.record_attempts(
                session,
                attempts=[
                    group_states.Attempt(
                        i.external_customer_id,
                        i.currency,
                        i.billing_entity_code,
                        tuple(a.invoice_ids),
                    )
                    for i, a in created
                    if i.id in held
                ],
                now=now,
            )
    except IntegrityError:
        # A Lago id is already on another intent: sort it out one by one.
        outcomes += [_record_answer(ctx, session, intent, answer) for intent, answer in created]
        return outcomes
    for intent, answer in created:
        if intent.id in held:
            metrics.record_sent(intent.currency)
            outcomes.append(
                SendOutcome(
                    intent.id,
                    SendStatus.SENT,
                    lago_id=answer.lago_id,
                    detail=_dropped(intent, answer),
                    posted=True,
                )
            )
        else:
            outcomes.append(_lease_lost(intent, lago_id=answer.lago_id, posted=True))
    return outcomes


# -- reconcile ---------------------------------------------------------------------------


def _reconcile(ctx: _Context, intent: ClaimedIntent, since: datetime) -> SendOutcome | None:
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
            return _reschedule(ctx, session, intent, ctx.now() + ctx.retry, code, exc, clear=False)
    match = _pick_match(ctx, intent, found, since)
    if match is not None:
        request, detail = match
        with write_tx(ctx.engine) as session:
            return _record_success(ctx, session, intent, request, adopted=True, detail=detail)
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
                return _lease_lost(intent)
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
                return _lease_lost(intent)
        return SendOutcome(
            intent.id,
            SendStatus.RESCHEDULED,
            error_code="awaiting_settle",
            detail=f"nothing in Lago yet; looking again at {settled_at.isoformat()}",
        )
    # Settled and nothing landed: a new POST window starts now.
    with write_tx(ctx.engine) as session:
        if not intents.restart_post_window(session, intent_id=intent.id, owner=ctx.owner, now=now):
            return _lease_lost(intent)
    return None


def _pick_match(
    ctx: _Context, intent: ClaimedIntent, found: Sequence[PaymentRequest], since: datetime
) -> tuple[PaymentRequest, str] | None:
    ours = frozenset(intent.invoice_ids)
    overlapping = [request for request in found if request.invoice_ids & ours]
    if not overlapping:
        return None
    with read_session(ctx.engine) as session:
        taken = intents.known_lago_ids(session, lago_ids=[r.lago_id for r in overlapping])
    free = [request for request in overlapping if request.lago_id not in taken]
    window_start = since - ctx.clock_skew
    recent = sorted(
        (request for request in free if request.created_at >= window_start),
        key=lambda request: request.created_at,
    )
    if recent:
        return recent[0], "adopted: an earlier try's payment request was found in Lago"
    pending = [request for request in free if request.payment_status == "pending"]
    if pending:
        newest = max(pending, key=lambda request: request.created_at)
        return newest, "adopted: a pending payment request already covers these invoices"
    return None


# -- post --------------------------------------------------------------------------------


def _call_lago(ctx: _Context, intent: ClaimedIntent) -> PaymentRequest | LagoError:
    """The POST itself; its answer (or error) is recorded afterwards, never inside a tx."""
    try:
        return ctx.client.create_payment_request(
            intent.external_customer_id, list(intent.invoice_ids), email=intent.email
        )
    except LagoError as exc:
        return exc


def _post(ctx: _Context, intent: ClaimedIntent, hooks: SendHooks | None) -> SendOutcome:
    answer = _call_lago(ctx, intent)
    if hooks is not None:
        hooks.after_post()
    with write_tx(ctx.engine) as session:
        return _record_answer(ctx, session, intent, answer)


def _record_answer(
    ctx: _Context, session: Session, intent: ClaimedIntent, answer: PaymentRequest | LagoError
) -> SendOutcome:
    if isinstance(answer, LagoError):
        return _record_failure(ctx, session, intent, answer)
    return _record_success(
        ctx, session, intent, answer, adopted=False, detail=_dropped(intent, answer)
    )


def _record_success(
    ctx: _Context,
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
                return _lease_lost(intent, lago_id=request.lago_id, posted=not adopted)
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
        return _reschedule(
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


def _record_failure(
    ctx: _Context, session: Session, intent: ClaimedIntent, exc: LagoError
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
        return _reschedule(
            ctx, session, intent, now + wait, "rate_limited", exc, clear=True, posted=True
        )
    if isinstance(exc, LagoUnauthorizedError):
        return _reschedule(
            ctx, session, intent, now + ctx.retry, "unauthorized", exc, clear=True, posted=True
        )
    if isinstance(exc, LagoStatusError) and code in RETRY_LATER_CODES:
        return _reschedule(
            ctx, session, intent, now + ctx.not_ready_retry, code, exc, clear=True, posted=True
        )
    if isinstance(exc, LagoStatusError) and not isinstance(exc, LagoServerError):
        error_code = code or f"http_{exc.status}"
        return _definitive(
            ctx, session, intent, intents.record_refused, SendStatus.REFUSED, error_code, exc
        )
    if isinstance(exc, LagoConnectionError):
        # The client raises this for a POST only when the request certainly never left.
        return _reschedule(
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
        return _lease_lost(intent)
    return SendOutcome(
        intent.id,
        SendStatus.RESCHEDULED,
        error_code="ambiguous",
        detail=f"outcome unknown ({exc}); reconciling after the settle window",
        posted=True,
    )


# -- helpers -----------------------------------------------------------------------------


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
    ctx: _Context,
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
        return _lease_lost(intent)
    return SendOutcome(intent.id, status, error_code=error_code, detail=str(exc), posted=True)


def _reschedule(
    ctx: _Context,
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
        return _lease_lost(intent)
    return SendOutcome(
        intent.id,
        SendStatus.RESCHEDULED,
        error_code=error_code,
        detail=f"{error}; next try at {when.isoformat()}",
        posted=posted,
    )


def _lease_lost(
    intent: ClaimedIntent, *, lago_id: str | None = None, posted: bool = False
) -> SendOutcome:
    return SendOutcome(
        intent.id,
        SendStatus.LEASE_LOST,
        lago_id=lago_id,
        detail="the lease expired before the result was recorded; the new holder reconciles",
        posted=posted,
    )


def _dropped(intent: ClaimedIntent, request: PaymentRequest) -> str:
    missing = set(intent.invoice_ids) - request.invoice_ids
    if not missing:
        return ""
    return f"Lago left out {len(missing)} of {len(intent.invoice_ids)} invoices"
