"""Celery tasks: thin wrappers that turn a message (ids only) into one service call.

Names are explicit and stable; beat and the CLI reach them by name. No task retries itself
or uses ETA/countdown: a failed or interrupted run is re-derived from the ledger by the next
sweep or reconcile pass.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast

from celery import Task, shared_task

from tasks.runtime import get_runtime
from tasks.slots import tick_slot
from worker.lago.errors import FeatureUnavailableError, LagoError, LagoUnauthorizedError
from worker.logging import get_logger
from worker.services.channels import channels_for
from worker.services.instance import HaltCode, record_halt
from worker.services.reconcile_outcomes import reconcile_outcomes
from worker.services.recover_intents import recover_intents
from worker.services.run_sends import settle_run_of, settle_runs_of, settle_runs_touched_since
from worker.services.runtime import Runtime
from worker.services.send_payment_request import SendOutcome, SendStatus
from worker.services.send_payment_request import send_payment_request as send_service
from worker.services.send_payment_request import send_payment_requests as send_many
from worker.services.sweep import run_sweep
from worker.store.errors import StoreError
from worker.store.models import RUN_TRIGGERS

SWEEP = "dunning.sweep"
SEND_PAYMENT_REQUEST = "dunning.send_payment_request"
SEND_PAYMENT_REQUESTS = "dunning.send_payment_requests"
#: Intents per batched send task: one broker message, one claim, pipelined POSTs.
SEND_BATCH = 50
#: Seconds of the shared rate budget one batch may take (see `batch_size`).
BATCH_BUDGET_S = 10
RECONCILE = "dunning.reconcile"

#: `trigger` beat puts in the sweep's kwargs: only those runs claim a tick slot.
BEAT_TRIGGER = "beat"
#: Sends running at once inside one reconcile task (each is mostly waiting on Lago).
RECONCILE_CONCURRENCY = 4

log = get_logger("tasks.dunning")

_F = TypeVar("_F", bound=Callable[..., Any])


#: Failures we explain in one log line ourselves: Celery still counts them as failed tasks
#: (Flower, events) but logs them without a traceback. The message is acked, not retried:
#: the next sweep or reconcile pass re-derives the work from the ledger.
EXPECTED_ERRORS = (LagoError, StoreError)


def stable_task(name: str) -> Callable[[_F], _F]:
    """`shared_task` with an explicit name, bound (`self` is the Task), no result stored."""
    return cast(
        "Callable[[_F], _F]",
        shared_task(name=name, bind=True, ignore_result=True, throws=EXPECTED_ERRORS),
    )


_licence_warned = threading.Event()


def owner_for(task: Task) -> str:
    """A lease owner unique to this execution (a redelivered message gets a new one)."""
    host = task.request.hostname or socket.gethostname()
    return f"{host}:{os.getpid()}:{task.request.id or '-'}:{uuid.uuid4().hex[:8]}"


def warn_licence_once(detail: str) -> bool:
    """Log the missing premium licence once per process; True if this call logged it."""
    if _licence_warned.is_set():
        return False
    _licence_warned.set()
    log.error(
        "lago_premium_licence_missing",
        detail=detail,
        hint="Lago refuses payment requests without a premium licence; intents stay in the "
        "ledger as blocked until it is active (then `dunning retry INTENT_ID`)",
    )
    return True


def batch_size(rate_limit_rps: float) -> int:
    """Intents per send task: `SEND_BATCH`, or fewer under a low rate limit, so a batch takes
    about `BATCH_BUDGET_S` of the whole budget and ends well inside its lease."""
    if rate_limit_rps == 0:
        return SEND_BATCH
    return max(1, min(SEND_BATCH, int(rate_limit_rps * BATCH_BUDGET_S)))


def _enqueue_sends(task: Task, rt: Runtime, intent_ids: list[int]) -> None:
    size = batch_size(rt.settings.rate_limit_rps)
    for start in range(0, len(intent_ids), size):
        task.app.send_task(SEND_PAYMENT_REQUESTS, args=[intent_ids[start : start + size]])


def halt(rt: Runtime, code: HaltCode) -> None:
    """Nothing can succeed until an operator acts: ask `dunning run` (if it supervises this
    worker) to stop with one line. A worker run on its own just logs it."""
    record_halt(rt.settings.data_dir, code)


def _halt_for(rt: Runtime, outcome: SendOutcome | None) -> None:
    if outcome is None:
        return
    if outcome.status is SendStatus.BLOCKED:
        warn_licence_once(outcome.detail)
        halt(rt, "licence_missing")
    elif outcome.stops_run:
        log.error("lago_api_key_rejected", intent_id=outcome.intent_id, hint="check LAGO_API_KEY")
        halt(rt, "api_key_rejected")


def _send_options(task: Task, rt: Runtime) -> dict[str, Any]:
    """What every send needs besides its intents: the ledger, Lago, an owner, the timings."""
    settings = rt.settings
    return {
        "engine": rt.engine,
        "client": rt.client,
        "owner": owner_for(task),
        "now": rt.clock,
        "settle_seconds": settings.settle_seconds,
        "lease_seconds": settings.lease_seconds,
        "max_ambiguous_tries": settings.max_ambiguous_tries,
        "channels": channels_for(rt),
    }


@stable_task(SWEEP)
def sweep(self: Task, trigger: str = "celery", customer: str | None = None) -> dict[str, Any]:
    """Plan one sweep and fan out its intents in send batches of `SEND_BATCH`. Beat-triggered
    runs own their cron slot, so a double fire of one slot is a no-op."""
    if trigger not in RUN_TRIGGERS:
        log.error("sweep_rejected", trigger=trigger, expected=list(RUN_TRIGGERS))
        return {"status": "rejected", "trigger": trigger}
    rt = get_runtime()
    now = rt.clock()
    slot = tick_slot(rt.policies.cron, now) if trigger == BEAT_TRIGGER else None
    try:
        summary = run_sweep(
            rt, trigger=trigger, now=now, customer=customer, slot=slot, send_inline=False
        )
    except FeatureUnavailableError as exc:
        warn_licence_once(str(exc))
        halt(rt, "licence_missing")
        return {"status": "blocked", "slot": slot}
    except EXPECTED_ERRORS as exc:
        log.error("sweep_failed", trigger=trigger, slot=slot, error=str(exc))
        if isinstance(exc, LagoUnauthorizedError):
            halt(rt, "api_key_rejected")
        raise
    if not summary.slot_taken:
        return {"status": "slot_taken", "slot": slot}
    _enqueue_sends(self, rt, summary.intent_ids)
    if summary.intent_ids:
        log.info("sweep.sends_enqueued", run_id=summary.run_id, sends=len(summary.intent_ids))
    return {"status": "done", "slot": slot, "run_id": summary.run_id, "intents": summary.intent_ids}


@stable_task(SEND_PAYMENT_REQUEST)
def send_payment_request(self: Task, intent_id: int) -> str:
    """Claim, reconcile-or-send, record: the ledger decides whether anything is sent."""
    rt = get_runtime()
    try:
        outcome = send_service(intent_id=int(intent_id), **_send_options(self, rt))
    except EXPECTED_ERRORS as exc:
        log.error("send_failed", intent_id=intent_id, error=str(exc))
        raise
    _halt_for(rt, outcome)
    log.info(
        "send_finished",
        intent_id=outcome.intent_id,
        status=outcome.status.value,
        lago_id=outcome.lago_id,
        error_code=outcome.error_code,
        detail=outcome.detail,
        posted=outcome.posted,
    )
    settle_run_of(rt.engine, outcome.intent_id)
    return outcome.status.value


@stable_task(SEND_PAYMENT_REQUESTS)
def send_payment_requests(self: Task, intent_ids: list[int]) -> dict[str, int]:
    """A batch of intents (at most `SEND_BATCH`), pipelined; the ledger still decides each one
    (claim, reconcile-or-send, record) exactly as `dunning.send_payment_request` does."""
    ids = list(dict.fromkeys(int(intent_id) for intent_id in intent_ids))
    if len(ids) > SEND_BATCH:
        log.error("send_batch_rejected", intents=len(ids), most=SEND_BATCH)
        return {"rejected": len(ids)}
    rt = get_runtime()
    counts: Counter[str] = Counter()
    stopped_by: SendOutcome | None = None
    try:
        options = _send_options(self, rt)
        for outcome in send_many(
            intent_ids=ids, concurrency=rt.settings.http_concurrency, **options
        ):
            counts[outcome.status.value] += 1
            if stopped_by is None and outcome.stops_run:
                stopped_by = outcome
    except EXPECTED_ERRORS as exc:
        log.error("send_batch_failed", intents=len(ids), error=str(exc))
        raise
    finally:
        settle_runs_of(rt.engine, ids)
    _halt_for(rt, stopped_by)
    log.info("send_batch_finished", intents=len(ids), by_status=dict(counts))
    return dict(counts)


@stable_task(RECONCILE)
def reconcile(self: Task) -> dict[str, Any]:
    """Run what is due again: expired leases (a worker died mid-send), pending intents whose
    time has come, ambiguous tries past their settle window (each send reconciles with Lago
    before it POSTs). Then check the outcomes of sent requests (paid? reset the counters)."""
    rt = get_runtime()
    settings = rt.settings
    started = rt.clock()
    try:
        summary = recover_intents(
            engine=rt.engine,
            client=rt.client,
            now=rt.clock,
            settle_seconds=settings.settle_seconds,
            lease_seconds=settings.lease_seconds,
            max_ambiguous_tries=settings.max_ambiguous_tries,
            concurrency=RECONCILE_CONCURRENCY,
            owner_prefix=owner_for(self),
            channels=channels_for(rt),
        )
        outcomes = reconcile_outcomes(rt, now=rt.clock())
    except EXPECTED_ERRORS as exc:
        log.error("reconcile_failed", error=str(exc))
        raise
    _halt_for(rt, summary.stopped_by)
    if summary.due:
        settle_runs_touched_since(rt.engine, started)
    by_status = {str(status): count for status, count in summary.by_status.items()}
    if summary.due:
        log.info("reconcile_finished", due=summary.due, posts=summary.posts, by_status=by_status)
    return {
        "status": "done",
        "due": summary.due,
        "posts": summary.posts,
        "by_status": by_status,
        "outcomes_checked": outcomes.examined,
    }
