"""A real pseudo-terminal for end-to-end tests of what a person sees: a process started on
its slave side as the session leader with it as controlling terminal (so Ctrl-C is a real
SIGINT from the terminal), its output collected from the master side, and the panels it drew
recovered from the escape sequences."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

_ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]"
)


class Terminal:
    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        columns: int = 160,
        rows: int = 50,
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

        def become_terminal_owner() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self._master = master
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)},
            preexec_fn=become_terminal_owner,  # noqa: PLW1509 - the test process starts no threads before
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the last writer closed the slave side
                return
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)

    def output(self) -> str:
        with self._lock:
            raw = b"".join(self._chunks)
        return raw.decode("utf-8", errors="replace")

    def text(self) -> str:
        """What was written, escape sequences removed."""
        return _ESCAPES.sub("", self.output()).replace("\r", "")

    def panels(self) -> list[list[str]]:
        """Every complete rounded panel drawn, as lines without their side borders."""
        found = []
        for part in self.text().split("╭")[1:]:
            if "╰" not in part:
                continue
            body = part.split("╰")[0].splitlines()[1:]
            found.append([line.strip().strip("│").rstrip() for line in body])
        return found

    def title_of_last_panel(self) -> str:
        part = self.text().split("╭")[-1]
        return part.splitlines()[0]

    def press_ctrl_c(self) -> None:
        os.write(self._master, b"\x03")

    def wait_for(self, probe: Callable[[], object], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            assert self.process.poll() is None, (
                f"exited {self.process.returncode}: {self.text()[-3000:]}"
            )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.text()[-3000:]}")
            time.sleep(0.25)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._master)
