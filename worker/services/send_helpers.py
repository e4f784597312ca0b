"""Send an inline sweep's intents from several processes: this one and helpers forked from it.

One interpreter sends a few hundred payment requests a second: its one lock is shared by the
sending threads and the recording. With `DUNNING_SEND_PROCESSES=N` (N > 1), `run_sweep` forks
N - 1 helpers when it starts, before any thread of the sweep exists (a fork copies no thread, so
none can be caught holding a lock), and hands each an equal share of the intents once they are
written. A helper builds its own database engine and Lago client, sends its share through the
same pipeline (`send_concurrently`) and writes each outcome back as one JSON line; the sweep
yields them merged with its own, in the order they come.

Nothing here decides exactly-once: whoever sends an intent claims it in the ledger first (design
§3). A helper that dies leaves what it had claimed leased, for the next holder to reconcile once
the lease expires; what it had not claimed, this process sends once the helper is gone. A helper
stopped (SIGTERM, or Ctrl-C on the terminal) stops claiming and starting, records what is in
flight and gives back the rest, like the pipeline of one process.

Helpers only start where they cannot overrun a limit: with the rate limiter off
(`DUNNING_RATE_LIMIT_RPS=0`) or shared through Redis. An in-process limiter would hand each
process the whole budget, so then the sweep sends alone and says so once in the log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import IO, NoReturn

from worker import metrics
from worker.lago import LagoClient
from worker.lago.ratelimit import limiter_from_settings
from worker.logging import get_logger
from worker.services.runtime import Runtime
from worker.services.send_due_intents import send_concurrently
from worker.services.send_types import SendOutcome, SendStatus
from worker.store.db import engine_for

log = get_logger(__name__)

#: How long a stopped helper gets to record what it has in flight before it is killed.
STOP_GRACE_S = 15.0


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
    garbled: bool = False  # a line could not be read: what it reported after is ignored
    exit_code: int | None = None

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

    def read_into(self, queue: SimpleQueue[tuple[_Helper, SendOutcome | None]]) -> None:
        """Put each outcome the helper reports on `queue`, then `(self, None)` at its end. A
        line that cannot be read makes the helper failed; the rest is drained unread (a
        helper must never block on a full pipe)."""
        try:
            for line in self.answers:
                if self.garbled:
                    continue
                try:
                    self._take(line, queue)
                except (ValueError, KeyError, TypeError) as exc:
                    self.garbled = True
                    log.error("sweep.send_helper_garbled", pid=self.pid, error=type(exc).__name__)
        finally:
            queue.put((self, None))

    def _take(self, line: str, queue: SimpleQueue[tuple[_Helper, SendOutcome | None]]) -> None:
        message = json.loads(line)
        if "outcome" in message:
            outcome = _outcome_from_json(message["outcome"])
            self.answered.add(outcome.intent_id)
            queue.put((self, outcome))
        elif "api_calls" in message:
            self.api_calls = int(message["api_calls"])
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

    def reap(self, *, wait: bool = True) -> int | None:
        """Its exit code (negative: the signal that ended it), once it has exited."""
        if self.exit_code is None:
            pid, status = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code


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

    def __init__(self, helpers: list[_Helper]) -> None:
        self._helpers = helpers

    @property
    def count(self) -> int:
        return len(self._helpers)

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
        helpers: list[_Helper] = []
        for _ in range(count):
            work_r, work_w = os.pipe()
            answers_r, answers_w = os.pipe()
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in (work_r, work_w, answers_r, answers_w):
                    os.close(fd)
                log.warning("sweep.send_helper_not_started", error=str(exc))
                break
            if pid == 0:  # the helper
                os.close(work_w)
                os.close(answers_r)
                for earlier in helpers:  # never hold another helper's pipes open
                    os.close(earlier.work)
                    earlier.answers.close()
                _helper_main(rt, work_r, answers_w)
            os.close(work_r)
            os.close(answers_w)
            answers = os.fdopen(answers_r, "r", encoding="utf-8")
            helpers.append(_Helper(pid=pid, work=work_w, answers=answers))
        if helpers:
            log.info("sweep.send_helpers_started", pids=[helper.pid for helper in helpers])
        return cls(helpers)

    def send(self, rt: Runtime, intent_ids: list[int]) -> Generator[SendOutcome, None, None]:
        """Send `intent_ids`, an equal share from each process; outcomes as they come.

        Once every helper is done, the intents a failed helper reported nothing for are sent
        from here (what it had claimed comes back `not_claimed`: it stays leased until the
        next holder reconciles it). Closing the iterator early stops the helpers."""
        processes = len(self._helpers) + 1
        shares = [intent_ids[start::processes] for start in range(processes)]
        queue: SimpleQueue[tuple[_Helper, SendOutcome | None]] = SimpleQueue()
        running = 0
        failed: list[_Helper] = []
        for helper, share in zip(self._helpers, shares[1:], strict=True):
            if not helper.hand(share):  # it is gone already
                failed += self._if_failed(helper)
                continue
            running += 1
            threading.Thread(
                target=helper.read_into, args=(queue,), name=f"send-helper-{helper.pid}",
                daemon=True,
            ).start()  # fmt: skip
        try:
            own = send_concurrently(rt, shares[0])
            with closing(own):
                for outcome in own:
                    yield outcome
                    while True:
                        try:
                            helper, reported = queue.get_nowait()
                        except Empty:
                            break
                        if reported is not None:
                            yield reported
                        else:
                            running -= 1
                            failed += self._if_failed(helper)
            while running:
                helper, reported = queue.get()
                if reported is not None:
                    yield reported
                else:
                    running -= 1
                    failed += self._if_failed(helper)
            left = [intent_id for helper in failed for intent_id in helper.left_over()]
            if left:
                log.warning("sweep.send_helper_share_resent", intents=len(left))
                resent = send_concurrently(rt, left)
                with closing(resent):
                    yield from resent
        finally:
            self.close()

    def _if_failed(self, helper: _Helper) -> list[_Helper]:
        """`[helper]` if it ended without finishing its share (logged), else `[]`."""
        code = helper.reap()
        if code == 0 and helper.finished and not helper.garbled:
            return []
        log.error(
            "sweep.send_helper_failed",
            pid=helper.pid,
            exit_code=code,
            unreported=len(helper.left_over()),
        )
        return [helper]

    def close(self) -> None:
        """End every helper: one never handed work exits at once; one still sending is
        stopped (SIGTERM: it records what is in flight) and killed after `STOP_GRACE_S`."""
        for helper in self._helpers:
            helper.close_work()
        for helper in self._helpers:
            if helper.reap(wait=False) is None:
                _signal(helper.pid, signal.SIGTERM)
        for helper in self._helpers:
            if not _reap_within(helper, STOP_GRACE_S):
                _signal(helper.pid, signal.SIGKILL)
                helper.reap()
            helper.answers.close()


def _reap_within(helper: _Helper, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while helper.reap(wait=False) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


# ---------------------------------------------------------------------------------------------
# The helper's side


def _helper_main(rt: Runtime, work_fd: int, answers_fd: int) -> NoReturn:
    """Wait for a share, send it, report every outcome; exit without running the parent's
    exit handlers (its engine, client and files are the parent's to close)."""
    code = 1
    try:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        with os.fdopen(work_fd, "rb") as work:
            payload = work.read()
        share = [int(intent_id) for intent_id in json.loads(payload)] if payload else []
        with os.fdopen(answers_fd, "w", encoding="utf-8") as answers:
            calls = _send_share(rt, share, answers, stop) if share else 0
            answers.write(json.dumps({"api_calls": calls}) + "\n")
        code = 0
    except BaseException:
        log.exception("sweep.send_helper_crashed")
    finally:
        os._exit(code)


def _send_share(rt: Runtime, share: list[int], answers: IO[str], stop: threading.Event) -> int:
    """Send `share` with this process's own engine and client; the Lago calls made."""
    engine = engine_for(rt.settings)
    client = LagoClient.from_settings(
        rt.settings,
        base_url=rt.client.base_url,
        rate_limiter=limiter_from_settings(rt.settings, on_wait=metrics.observe_limiter_wait),
        observer=metrics.observe_lago_call,
    )
    own = dataclasses.replace(rt, engine=engine, client=client)
    try:
        outcomes = send_concurrently(own, share)
        with closing(outcomes):
            for outcome in outcomes:
                answers.write(json.dumps({"outcome": _outcome_to_json(outcome)}) + "\n")
                answers.flush()
                if stop.is_set():
                    break
        return client.calls_total()
    finally:
        client.close()
        engine.dispose()


def _outcome_to_json(outcome: SendOutcome) -> dict[str, object]:
    return {
        "intent_id": outcome.intent_id,
        "status": outcome.status.value,
        "lago_id": outcome.lago_id,
        "error_code": outcome.error_code,
        "detail": outcome.detail,
        "posted": outcome.posted,
        "channel": outcome.channel,
    }


def _outcome_from_json(data: dict[str, object]) -> SendOutcome:
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return SendOutcome(
        intent_id=int(str(data["intent_id"])),
        status=SendStatus(str(data["status"])),
        lago_id=text("lago_id"),
        error_code=text("error_code"),
        detail=str(data.get("detail") or ""),
        posted=bool(data.get("posted")),
        channel=text("channel"),
    )
