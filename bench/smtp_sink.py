"""A mail server for chaos runs: takes every message, notes it, answers slowly.

    python -m bench.smtp_sink --port P --out received.jsonl [--answer-delay-ms 150]

Each message taken is appended (and flushed to disk) to `--out` as one JSON line with its
Message-ID and recipients BEFORE the server answers: a kill during the answer delay leaves a
message the server took while the sender never heard so (the unknown outcome a worker must
not resend). Restarted on the same port and file, it carries on appending.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class _Sink:
    def __init__(self, out: Path, delay_s: float) -> None:
        self.out = out
        self.delay_s = delay_s
        self.lock = threading.Lock()

    async def handle_DATA(  # noqa: N802 - the hook name aiosmtpd calls
        self, server: Any, session: Session, envelope: Envelope
    ) -> str:
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        line = json.dumps({"message_id": str(parsed["Message-ID"]), "to": list(envelope.rcpt_tos)})
        with self.lock, self.out.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        await asyncio.sleep(self.delay_s)
        return "250 OK"


def received(out: Path) -> list[dict[str, Any]]:
    """The messages a sink took (a line cut by a kill is not a message)."""
    if not out.exists():
        return []
    found = []
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_sink")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--answer-delay-ms", type=float, default=150.0)
    args = parser.parse_args()
    controller = Controller(
        _Sink(args.out, args.answer_delay_ms / 1000), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print(f"smtp sink ready on 127.0.0.1:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
