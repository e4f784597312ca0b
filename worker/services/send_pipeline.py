"""The batched send path: claims, stamps, POSTs and records many intents as a pipeline.

`send_payment_requests` (the protocol's steps are in its module) runs many intents as a
pipeline: claims are topped up a chunk at a time, up to `concurrency` POSTs are in flight (a
sliding window: a finished POST frees its slot at once, no batch waits for its slowest
member), and each turn of the loop is one transaction that records every answer that has come
back and stamps the next POSTs, up to one window (`concurrency`) of them ahead, so a freed
slot starts its next POST at once: the sending thread whose POST succeeded starts the next
stamped one itself, without waiting for the loop (after a failure the loop decides, as the
failure may stop the run). Those few stamped-but-unposted intents are the pipeline's only
widening of step 3 (stamp just before the POST): after a crash they are reconciled (nothing
found, then sent once), never sent twice. A usual turn is four statements whatever its size
(`_quick_turn`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from queue import Empty, SimpleQueue

from sqlalchemy.exc import IntegrityError

from worker import metrics
from worker.lago.errors import LagoError
from worker.services.channels.base import ChannelSet
from worker.services.channels.payment_request import call_lago
from worker.services.send_recording import (
    Answer,
    quick_recordable,
    record_answers,
    record_quickly,
)
from worker.services.send_types import (
    SendContext,
    SendHooks,
    SendOutcome,
    lease_lost,
    not_claimed,
)
from worker.store import intents
from worker.store.db import write_tx
from worker.store.intents import ClaimedIntent

#: How long a turn waits for more answers after the first one comes back (seconds).
GATHER_S = 0.003


class SendPipeline:
    """Claims, stamps, POSTs and records; see `send_payment_requests`."""

    def __init__(
        self,
        ctx: SendContext,
        intent_ids: Iterable[int],
        lease_seconds: int,
        batch_size: int,
        hooks: SendHooks | None,
        channels: ChannelSet,
        send_single: Callable[[ClaimedIntent], SendOutcome],
    ) -> None:
        self.ctx = ctx
        #: Sends one claimed intent the careful way (reconcile first, or a channel that does
        #: not batch): `send_payment_request`'s steps.
        self.send_single = send_single
        self.channels = channels
        self.todo: deque[int] = deque(intent_ids)
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        self.hooks = hooks
        self.ready: deque[ClaimedIntent] = deque()
        #: Claimed intents sent one at a time (reconcile first, or a channel that does not
        #: batch), waiting for their turn.
        self.singles: deque[ClaimedIntent] = deque()
        #: Stamped (`post_started_at` committed) and waiting for a free slot: at most one
        #: window (`concurrency`) of them, the only intents a crash leaves stamped unposted.
        self.stamped: deque[ClaimedIntent] = deque()
        #: Started and not yet collected (done or not), and how many of them are running.
        self.inflight: dict[Future[Answer], ClaimedIntent] = {}
        self.running = 0
        #: Guards `stamped`, `inflight`, `running` and `handoff`: a sending thread whose POST
        #: succeeded starts the next stamped one itself (`_done`), without waiting for the
        #: loop's next turn; `_give_back` turns that off before it releases anything.
        self.slots = threading.Lock()
        self.handoff = True
        self.pool: ThreadPoolExecutor | None = None
        self.concurrency = 1
        #: POSTs that came back, in the order they did (put there by the sending threads).
        self.finished: SimpleQueue[Future[Answer]] = SimpleQueue()
        self.answered: list[tuple[ClaimedIntent, Answer]] = []

    def run(
        self, pool: ThreadPoolExecutor, concurrency: int, stop: threading.Event | None = None
    ) -> Iterator[SendOutcome]:
        """Outcomes as they are recorded. An outcome that stops the run (no licence, API key
        rejected) stops claiming and starting: what is in flight is recorded, what was
        claimed but not started is given back. The same when the caller stops reading
        early (the generator is closed) or on Ctrl-C (KeyboardInterrupt)."""
        stopping = False
        self.pool, self.concurrency = pool, concurrency
        try:
            while self.todo or self.ready or self._posting() or self.answered:
                if not stopping and stop is not None and stop.is_set():
                    stopping = True
                    self.todo.clear()
                    self._give_back()
                if not stopping and len(self.ready) < concurrency and self.todo:
                    yield from self._claim_more()
                if self.answered and self.hooks is not None:
                    self.hooks.after_post()
                # Keep one window of POSTs stamped ahead, so a slot that frees starts its
                # next POST at once instead of waiting for the next turn's commit.
                with self.slots:
                    ahead = 0 if stopping else concurrency - len(self.stamped)
                outcomes, stamped = self._turn(ahead)
                # Everything the turn stamped is noted before anything is yielded: a caller
                # that stops reading at any yield leaves nothing claimed that `_wind_down`
                # cannot see.
                for intent, held in stamped:
                    if not held:
                        outcomes.append(lease_lost(intent.id))
                with self.slots:
                    self.stamped.extend(intent for intent, held in stamped if held)
                for outcome in outcomes:
                    stopping = stopping or outcome.stops_run
                    yield outcome
                if stopping:
                    self.todo.clear()
                    self._give_back()
                self._start()
                self._collect_answers()
                self._start()
        except (GeneratorExit, KeyboardInterrupt):
            # The caller stopped reading (e.g. the run is blocked), or Ctrl-C. Any other
            # exception is left as a crash would leave it: leases expire and the next holder
            # reconciles. (A second Ctrl-C during the wind-down leaves it that way too.)
            self._wind_down()
            raise

    def _posting(self) -> bool:
        with self.slots:
            return bool(self.stamped or self.inflight)

    def _start(self) -> None:
        """Start stamped POSTs in the free slots."""
        with self.slots:
            started = [self._start_one() for _ in range(self._free_slots())]
        for future in started:
            future.add_done_callback(self._done)

    def _free_slots(self) -> int:
        """How many stamped POSTs may start now (the caller holds `slots`)."""
        return max(0, min(len(self.stamped), self.concurrency - self.running))

    def _start_one(self) -> Future[Answer]:
        """Submit the next stamped POST (the caller holds `slots` and checked a slot is free)."""
        assert self.pool is not None
        intent = self.stamped.popleft()
        try:
            future = self.pool.submit(call_lago, self.ctx, intent)
        except RuntimeError:  # the pool is shutting down: leave it stamped, for give-back
            self.stamped.appendleft(intent)
            raise
        self.inflight[future] = intent
        self.running += 1
        return future

    def _done(self, future: Future[Answer]) -> None:
        """In the sending thread, as its POST comes back: hand the answer to the loop and,
        after a success, start the next stamped POST in the slot at once (after a failure the
        loop decides, as it may stop the run)."""
        handoff: Future[Answer] | None = None
        try:
            with self.slots:
                self.running -= 1
                if self.handoff and self._free_slots() > 0 and _succeeded(future):
                    with suppress(RuntimeError):
                        handoff = self._start_one()
        finally:
            self.finished.put(future)
        if handoff is not None:
            handoff.add_done_callback(self._done)

    def _turn(self, free: int) -> tuple[list[SendOutcome], list[tuple[ClaimedIntent, bool]]]:
        """One transaction: record every answer that came back, then (unless one of them stops
        the run) stamp up to `free` POSTs to start next. The outcomes recorded, and each
        intent taken from `ready` with whether it was stamped (still held).

        The usual turn (answers that are checked payment requests or plain refusals and
        reschedules, every intent still ours) is four statements plus one per failure
        (`_quick_turn`); anything else, and a quick turn that meets a surprise (rolled back),
        is done the careful way (`_careful_turn`)."""
        starting = [self.ready.popleft() for _ in range(min(free, len(self.ready)))]
        if not (self.answered or starting):
            return [], []
        answered, self.answered = self.answered, []
        if all(quick_recordable(intent, answer) for intent, answer in answered):
            try:
                return self._quick_turn(answered, starting)
            except (intents.NotAllHeldError, IntegrityError):
                pass  # rolled back: nothing of this turn was written
        return self._careful_turn(answered, starting)

    def _quick_turn(
        self, answered: list[tuple[ClaimedIntent, Answer]], starting: list[ClaimedIntent]
    ) -> tuple[list[SendOutcome], list[tuple[ClaimedIntent, bool]]]:
        with write_tx(self.ctx.engine) as session:
            outcomes = record_quickly(self.ctx, session, answered) if answered else []
            if starting:
                intents.stamp_held(
                    session,
                    owner=self.ctx.owner,
                    intent_ids=[intent.id for intent in starting],
                    now=self.ctx.now(),
                )
        for intent, answer in answered:
            if not isinstance(answer, LagoError):
                metrics.record_sent(intent.currency)
        return outcomes, [(intent, True) for intent in starting]

    def _careful_turn(
        self, answered: list[tuple[ClaimedIntent, Answer]], starting: list[ClaimedIntent]
    ) -> tuple[list[SendOutcome], list[tuple[ClaimedIntent, bool]]]:
        with write_tx(self.ctx.engine) as session:
            outcomes = record_answers(self.ctx, session, answered) if answered else []
            if any(outcome.stops_run for outcome in outcomes):
                self.ready.extendleft(reversed(starting))
                starting = []
            stamped = (
                intents.mark_post_started(
                    session,
                    owner=self.ctx.owner,
                    intent_ids=[intent.id for intent in starting],
                    now=self.ctx.now(),
                )
                if starting
                else set()
            )
        return outcomes, [(intent, intent.id in stamped) for intent in starting]

    def _collect_answers(self) -> None:
        """Wait for the next POST to come back, then gather more for up to `GATHER_S` (until a
        quarter of those in flight are back): a turn costs about the same for one answer as
        for several, so fewer, fuller turns leave the sending threads more of the process."""
        with self.slots:
            waiting = len(self.inflight)
        if not waiting:
            return
        back = [self.finished.get()]
        want = min(waiting, max(1, waiting // 4))
        deadline = time.monotonic() + GATHER_S
        while len(back) < want and (left := deadline - time.monotonic()) > 0:
            try:
                back.append(self.finished.get(timeout=left))
            except Empty:
                break
        while True:
            try:
                back.append(self.finished.get_nowait())
            except Empty:
                break
        with self.slots:
            intents_back = [self.inflight.pop(future) for future in back]
        for intent, future in zip(intents_back, back, strict=True):
            self.answered.append((intent, future.result()))

    def _give_back(self) -> None:
        """Release the intents claimed whose POST has not started (stamped ahead or not). A
        single that an earlier try may have posted stays leased: its next holder reconciles."""
        with self.slots:
            # From here on no sending thread starts anything: what is taken below stays unsent.
            self.handoff = False
            stamped = list(self.stamped)
            self.stamped.clear()
        if not (self.ready or stamped or self.singles):
            return
        try:
            with write_tx(self.ctx.engine) as session:
                intents.release_unstarted(
                    session,
                    owner=self.ctx.owner,
                    intent_ids=[intent.id for intent in (*self.ready, *self.singles)],
                    now=self.ctx.now(),
                )
                intents.release_stamped_unstarted(
                    session,
                    owner=self.ctx.owner,
                    intent_ids=[intent.id for intent in stamped],
                    now=self.ctx.now(),
                )
        except BaseException:
            with self.slots:  # not released: still ours to account for (leases expire)
                self.stamped.extendleft(reversed(stamped))
            raise
        self.ready.clear()
        self.singles.clear()

    def _wind_down(self) -> None:
        """After an early stop: record what is in flight, give back what never started. (A
        database failure here leaves leases to expire: the next holder reconciles.)"""
        if not (self.ready or self.singles or self._posting() or self.answered):
            return
        self._give_back()
        while self._posting():
            self._collect_answers()
        if self.answered:
            self._record()

    def _claim_more(self) -> Iterator[SendOutcome]:
        chunk = [self.todo.popleft() for _ in range(min(self.batch_size, len(self.todo)))]
        claimed = intents.claim_intents(
            self.ctx.engine,
            owner=self.ctx.owner,
            now=self.ctx.now(),
            lease_seconds=self.lease_seconds,
            limit=len(chunk),
            intent_ids=chunk,
        )
        metrics.record_lease_expiries(sum(intent.lease_was_expired for intent in claimed))
        held = {intent.id for intent in claimed}
        for intent in claimed:  # noted before anything is yielded (see `run`)
            (self.ready if self.channels.batches(intent) else self.singles).append(intent)
        if self.hooks is not None and claimed:
            self.hooks.after_claim()
        for intent_id in chunk:
            if intent_id not in held:
                yield not_claimed(intent_id)
        while self.singles:
            yield self.send_single(self.singles.popleft())

    def _record(self) -> list[SendOutcome]:
        """One transaction: record every answer that came back."""
        if not self.answered:
            return []
        with write_tx(self.ctx.engine) as session:
            outcomes = record_answers(self.ctx, session, self.answered)
        self.answered = []
        return outcomes


def _succeeded(future: Future[Answer]) -> bool:
    """Whether a finished POST created its payment request (no error of any kind)."""
    return (
        not future.cancelled()
        and future.exception() is None
        and not isinstance(future.result(), LagoError)
    )
