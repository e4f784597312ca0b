"""Child processes for the bench and chaos harnesses: start in their own session, kill the whole
group, and make sure nothing outlives the harness (even on an exception or Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class HarnessError(RuntimeError):
    """The harness cannot go on (a child did not start, a server did not answer). One line."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """One child process (and its process group) with its output in a log file."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_offset: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start #{self.starts + 1}: {' '.join(self.command)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group (main process and any pool children) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the main process, then SIGKILL the group after `timeout`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.kill()

    def output_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def says(self, marker: str) -> bool:
        """The current run of the child has printed `marker`."""
        return self.alive() and marker in self.output_since_start()

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """Every child the harness started; `close()` stops them all, last started first."""

    items: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        self.items.append(child)
        return child

    def close(self, timeout: float = 5.0) -> None:
        stop_all(list(reversed(self.items)), timeout=timeout)


def stop_all(children: Sequence[Child], *, timeout: float = 5.0) -> None:
    """SIGTERM every child at once, wait up to `timeout` in total, then SIGKILL the groups."""
    for child in children:
        if child.alive() and child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(child.alive() for child in children):
        time.sleep(0.05)
    for child in children:
        child.kill()


@contextlib.contextmanager
def supervised() -> Iterator[Children]:
    """Children stopped at exit, also on SIGTERM (turned into SystemExit) and Ctrl-C."""
    children = Children()

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield children
    finally:
        children.close()
        signal.signal(signal.SIGTERM, previous)


def wait_for_output(children: Sequence[Child], marker: str, *, timeout: float) -> None:
    """Wait until every child's current run has printed `marker` (e.g. Celery's "ready.")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                raise HarnessError(
                    f"{child.name} exited at start (code {child.process.returncode}): "
                    f"{child.tail(3)!r}"
                )
        if all(marker in child.output_since_start() for child in children):
            return
        time.sleep(0.2)
    slow = [child.name for child in children if marker not in child.output_since_start()]
    raise HarnessError(f"{', '.join(slow)} not ready within {timeout:.0f} s")


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_http(url: str, *, timeout: float, child: Child | None = None) -> None:
    """Wait until `url` answers 200 (or fail with the child's last output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.process is not None and child.process.poll() is not None:
            raise HarnessError(
                f"{child.name} exited at start (code {child.process.returncode}): {child.tail(3)!r}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise HarnessError(f"{url} did not answer within {timeout:.0f} s")


def base_env(extra: dict[str, str], *, cwd: Path | None = None) -> dict[str, str]:
    """The harness's environment minus any DUNNING_/LAGO_ settings of the caller, plus `extra`."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DUNNING_", "LAGO_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    if cwd is not None:
        env["PYTHONPATH"] = str(cwd)
    env.update(extra)
    return env


def join(parts: Sequence[str]) -> str:
    return " ".join(parts)
