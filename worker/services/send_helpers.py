"""Send an inline sweep's intents from several processes: this one and helpers forked from it.

One interpreter sends a few hundred payment requests a second: its one lock is shared by the
sending threads and the recording. With `DUNNING_SEND_PROCESSES=N` (N > 1), `run_sweep` forks
N - 1 helpers (`send_helper_child`) when it starts, before its heartbeat or any other thread of
the sweep runs (the CLI starts its progress display only once the sweep reports progress), with
the database pool emptied first so no connection crosses the fork. Once the intents are
written it hands each helper a share: every intent of one customer in the same share (a
customer-wide statement email gathers its siblings only from what its own process holds),
customers spread by a stable hash. A helper sends its share through the same pipeline
(`send_concurrently`) with its own engine and Lago client and reports each outcome as one JSON
line; the sweep yields them merged with its own, in the order they come.

Nothing here decides exactly-once: whoever sends an intent claims it in the ledger first (design
§3). A helper that dies, or is stopped from outside, leaves what it had claimed leased for the
next holder to reconcile once the lease expires; what it had not claimed, this process sends
once the helper is gone. When the sweep stops early (a blocked run, an error, Ctrl-C) it signals
every helper first (SIGTERM: each records what is in flight and gives back the rest), winds its
own share down, then waits for them (at most twice the HTTP timeout, then SIGKILL).

Helpers only start where they cannot overrun a limit: with the rate limiter off
(`DUNNING_RATE_LIMIT_RPS=0`) or shared through Redis. An in-process limiter would hand each
process the whole budget, so then the sweep sends alone and says so once in the log.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import IO

from worker.logging import get_logger
from worker.services.runtime import Runtime
from worker.services.send_due_intents import send_concurrently
from worker.services.send_helper_child import STOP_SIGNALS, helper_main, outcome_from_json
from worker.services.send_types import SendOutcome
from worker.store import intents
from worker.store.db import read_session

log = get_logger(__name__)

Reports = SimpleQueue[tuple["_Helper", SendOutcome | None]]
#: How long a reader thread may take to hand over the last lines of a helper that has exited.
READER_JOIN_S = 5.0


def helpers_wanted(rt: Runtime) -> int:
    """How many helpers this runtime's settings ask for and allow (0: send alone)."""
    wanted = rt.settings.send_processes - 1
    if wanted < 1:
        return 0
    if not hasattr(os, "fork"):
        log.info("sweep.send_helpers_off", reason="this platform cannot fork")
        return 0
    if rt.settings.rate_limit_rps > 0 and not rt.settings.broker_is_redis:
        log.info(
            "sweep.send_helpers_off",
            reason="the rate limiter is in-process: each process would get the whole budget; "
            "set DUNNING_RATE_LIMIT_RPS=0 or use a Redis broker to share it",
        )
        return 0
    return wanted


def shares_by_customer(rt: Runtime, intent_ids: list[int], processes: int) -> list[list[int]]:
    """`intent_ids` in `processes` shares, each customer's intents in one share (in order)."""
    with read_session(rt.engine) as session:
        customers = intents.customers_of(session, intent_ids)
    shares: list[list[int]] = [[] for _ in range(processes)]
    for intent_id in intent_ids:
        customer = customers.get(intent_id, "")
        shares[zlib.crc32(customer.encode()) % processes].append(intent_id)
    return shares


@dataclass(eq=False)
class _Helper:
    """The parent's side of one helper process."""

    pid: int
    work: int  # write end of the pipe the helper reads its share from
    answers: IO[str]  # read end of the pipe it writes its outcomes to
    share: list[int] = field(default_factory=list)
    answered: set[int] = field(default_factory=set)
    api_calls: int = 0
    finished: bool = False  # its last line (the API call count) arrived
    stopped: bool = False  # it said it stopped before the end of its share
    garbled: bool = False  # a line could not be read: what it reported after is ignored
    exit_code: int | None = None
    reader: threading.Thread | None = None

    @property
    def succeeded(self) -> bool:
        """It sent its whole share and reported every outcome."""
        return self.finished and not self.stopped and not self.garbled

    def hand(self, share: list[int]) -> bool:
        """Give the helper its share (then end of input); False if it is already gone."""
        self.share = share
        try:
            with os.fdopen(self.work, "wb", closefd=True) as pipe:
                self.work = -1
                if share:
                    pipe.write(json.dumps(share).encode())
        except BrokenPipeError:
            return False
        return True

    def start_reading(self, reports: Reports) -> None:
        self.reader = threading.Thread(
            target=self._read_into, args=(reports,), name=f"send-helper-{self.pid}", daemon=True
        )
        self.reader.start()

    def _read_into(self, reports: Reports) -> None:
        """Put each outcome the helper reports on `reports`, then `(self, None)` at its end.
        A line that cannot be read makes the helper failed; the rest is drained unread (a
        helper must never block on a full pipe)."""
        try:
            for line in self.answers:
                if self.garbled:
                    continue
                try:
                    self._take(line, reports)
                except Exception as exc:
                    self.garbled = True
                    log.error("sweep.send_helper_garbled", pid=self.pid, error=type(exc).__name__)
        except (OSError, ValueError):  # the pipe was closed under us: the sweep is stopping
            self.garbled = True
        finally:
            reports.put((self, None))

    def _take(self, line: str, reports: Reports) -> None:
        message = json.loads(line)
        if "outcome" in message:
            outcome = outcome_from_json(message["outcome"])
            self.answered.add(outcome.intent_id)
            reports.put((self, outcome))
        elif "api_calls" in message:
            self.api_calls = int(message["api_calls"])
            self.stopped = message.get("stopped") is True
            self.finished = True
        else:
            raise ValueError("not an outcome")

    def left_over(self) -> list[int]:
        """The share's intents it reported nothing for (all of them if it never finished)."""
        return [intent_id for intent_id in self.share if intent_id not in self.answered]

    def close_work(self) -> None:
        if self.work >= 0:
            os.close(self.work)
            self.work = -1

    def reap(self, *, wait: bool) -> bool:
        """Whether it has exited (and was reaped); its code in `exit_code` (negative: the
        signal that ended it; -1 also when SIGCHLD is ignored and the system reaped it)."""
        if self.exit_code is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                self.exit_code = -1
            else:
                if pid:
                    self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code is not None

    def reap_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.reap(wait=False):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def signal(self, signum: signal.Signals) -> None:
        if self.exit_code is None:  # never a pid that is not ours any more
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill_and_reap(self, grace_s: float) -> None:
        if not self.reap_within(grace_s):
            self.signal(signal.SIGKILL)
            self.reap(wait=True)


@contextmanager
def send_helpers(rt: Runtime, count: int) -> Iterator[SendHelpers | None]:
    """`count` helpers started (None for 0), all ended on the way out."""
    if count < 1:
        yield None
        return
    helpers = SendHelpers.start(rt, count)
    try:
        yield helpers
    finally:
        helpers.close()


class SendHelpers:
    """Helpers forked by `start`; `send` shares intents with them; `close` ends them all."""

    def __init__(self, helpers: list[_Helper], grace_s: float) -> None:
        self._helpers = helpers
        #: How long a stopped helper may take to record what it has in flight.
        self.grace_s = grace_s

    @property
    def pids(self) -> list[int]:
        return [helper.pid for helper in self._helpers]

    @property
    def api_calls(self) -> int:
        """Lago calls the helpers made (they report it when they finish)."""
        return sum(helper.api_calls for helper in self._helpers)

    @classmethod
    def start(cls, rt: Runtime, count: int) -> SendHelpers:
        """Fork `count` helpers that wait for their share. Call it before the sweep starts any
        thread. A fork the system refuses leaves fewer helpers (logged), never an error."""
        rt.engine.dispose()  # no pooled connection may cross the fork (reopened on demand)
        helpers: list[_Helper] = []
        for _ in range(count):
            helper = _fork_helper(rt, helpers)
            if helper is None:
                break
            helpers.append(helper)
        if helpers:
            log.info("sweep.send_helpers_started", pids=[helper.pid for helper in helpers])
        return cls(helpers, grace_s=2 * rt.settings.lago_timeout_s + 10)

    def send(self, rt: Runtime, intent_ids: list[int]) -> Generator[SendOutcome, None, None]:
        """Send `intent_ids`, a share from each process; outcomes as they come.

        Once every helper is done, the intents a failed or stopped helper reported nothing
        for are sent from here (what it had claimed comes back `not_claimed`: it stays leased
        until the next holder reconciles it). Closing the iterator, or an error, stops the
        helpers first."""
        shares = shares_by_customer(rt, intent_ids, len(self._helpers) + 1)
        reports: Reports = SimpleQueue()
        running = 0
        failed: list[_Helper] = []
        for helper, share in zip(self._helpers, shares[1:], strict=True):
            if not helper.hand(share):  # it is gone already
                failed += self._if_failed(helper)
                continue
            helper.start_reading(reports)
            running += 1
        own = send_concurrently(rt, shares[0])
        try:
            for outcome in own:
                yield outcome
                while running:
                    try:
                        helper, reported = reports.get_nowait()
                    except Empty:
                        break
                    if reported is not None:
                        yield reported
                    else:
                        running -= 1
                        failed += self._if_failed(helper)
            while running:
                helper, reported = reports.get()
                if reported is not None:
                    yield reported
                else:
                    running -= 1
                    failed += self._if_failed(helper)
            left = [intent_id for helper in failed for intent_id in helper.left_over()]
            if left:
                log.warning("sweep.send_helper_share_resent", intents=len(left))
                yield from send_concurrently(rt, left)
        except BaseException:
            # Stop the helpers first: they wind down while this process winds its own down.
            for helper in self._helpers:
                helper.signal(signal.SIGTERM)
            own.close()
            raise
        finally:
            self.close()

    def _if_failed(self, helper: _Helper) -> list[_Helper]:
        """`[helper]` (logged) if it ended without sending its whole share, else `[]`."""
        helper.kill_and_reap(self.grace_s)
        if helper.reader is not None:
            helper.reader.join(READER_JOIN_S)
        if helper.succeeded:
            return []
        log.error(
            "sweep.send_helper_failed",
            pid=helper.pid,
            exit_code=helper.exit_code,
            stopped=helper.stopped,
            unreported=len(helper.left_over()),
        )
        return [helper]

    def close(self) -> None:
        """End every helper: one never handed work exits at once; one still sending is
        stopped (SIGTERM: it records what is in flight) and killed after `grace_s`."""
        for helper in self._helpers:
            helper.close_work()
        for helper in self._helpers:
            if not helper.reap(wait=False):
                helper.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for helper in self._helpers:
            helper.kill_and_reap(max(0.0, deadline - time.monotonic()))
        for helper in self._helpers:
            if helper.reader is not None:
                helper.reader.join(READER_JOIN_S)
            helper.answers.close()


def _fork_helper(rt: Runtime, earlier: list[_Helper]) -> _Helper | None:
    """Fork one helper (the stop signals blocked until it has its handlers); None if the
    system refuses (logged)."""
    work_r, work_w = os.pipe()
    answers_r, answers_w = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (work_r, work_w, answers_r, answers_w):
            os.close(fd)
        log.warning("sweep.send_helper_not_started", error=str(exc))
        return None
    if pid == 0:  # the helper: never returns (it unblocks the signals once it handles them)
        try:
            os.close(work_w)
            os.close(answers_r)
            for helper in earlier:  # never hold another helper's pipes open
                helper.close_work()
                helper.answers.close()
            helper_main(rt, work_r, answers_w)
        finally:
            os._exit(1)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(work_r)
    os.close(answers_w)
    return _Helper(pid=pid, work=work_w, answers=os.fdopen(answers_r, "r", encoding="utf-8"))
