"""The helper's side of `worker.services.send_helpers`: a forked process that sends one share.

It waits for its share (a JSON list of intent ids, then end of input), sends it through the
same pipeline as the sweep with its own database engine and Lago client, and writes one JSON
line per outcome, then `{"api_calls": n, "stopped": bool}`. It exits with `os._exit`: the
engine, client, files and exit handlers it inherited are the parent's to close.

SIGTERM and SIGINT (the parent stopping it, or Ctrl-C on the terminal) set a flag the pipeline
watches: it claims and starts nothing more, records (and so reports) what is in flight, gives
back the rest; the helper then reports `stopped` and exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from contextlib import closing
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

#: The signals a helper takes as "stop": blocked around the fork, handled once it runs.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def helper_main(rt: Runtime, work_fd: int, answers_fd: int) -> NoReturn:
    """Run in the forked child (with STOP_SIGNALS blocked): never returns."""
    code = 1
    try:
        stop = threading.Event()
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: stop.set())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        with os.fdopen(work_fd, "rb") as work:
            payload = work.read()
        share = [int(intent_id) for intent_id in json.loads(payload)] if payload else []
        with os.fdopen(answers_fd, "w", encoding="utf-8") as answers:
            calls, stopped = _send_share(rt, share, answers, stop) if share else (0, False)
            answers.write(json.dumps({"api_calls": calls, "stopped": stopped}) + "\n")
        code = 0
    except BaseException:
        log.exception("sweep.send_helper_crashed")
    finally:
        os._exit(code)


def _send_share(
    rt: Runtime, share: list[int], answers: IO[str], stop: threading.Event
) -> tuple[int, bool]:
    """Send `share` with this process's own engine and client: (Lago calls, stopped early)."""
    engine = engine_for(rt.settings)
    client = LagoClient.from_settings(
        rt.settings,
        base_url=rt.client.base_url,
        rate_limiter=limiter_from_settings(rt.settings, on_wait=metrics.observe_limiter_wait),
        observer=metrics.observe_lago_call,
    )
    own = dataclasses.replace(rt, engine=engine, client=client)
    reported = 0
    try:
        # Once `stop` is set the pipeline claims and starts nothing more, records what is in
        # flight (those outcomes are reported too) and gives back the rest.
        outcomes = send_concurrently(own, share, stop)
        with closing(outcomes):
            for outcome in outcomes:
                answers.write(json.dumps({"outcome": outcome_to_json(outcome)}) + "\n")
                answers.flush()
                reported += 1
        return client.calls_total(), stop.is_set() and reported < len(share)
    finally:
        client.close()
        engine.dispose()


def outcome_to_json(outcome: SendOutcome) -> dict[str, object]:
    return {
        "intent_id": outcome.intent_id,
        "status": outcome.status.value,
        "lago_id": outcome.lago_id,
        "error_code": outcome.error_code,
        "detail": outcome.detail,
        "posted": outcome.posted,
        "channel": outcome.channel,
    }


def outcome_from_json(data: dict[str, object]) -> SendOutcome:
    """The outcome a helper reported; ValueError/KeyError if it is not one."""

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
