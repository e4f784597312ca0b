"""The child processes of `dunning run`: free ports, start, stop.

Children run in their own sessions, so the terminal's Ctrl-C reaches `dunning run` only and
it signals them itself; on Linux they also get SIGTERM if `dunning run` dies (even by
SIGKILL), so no worker or sandbox outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

POLL_INTERVAL_S = 0.1
PR_SET_PDEATHSIG = 1  # prctl(2) option


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a server listen on `port`? Probed the way the sandbox binds (SO_REUSEADDR): the
    connections of a server stopped a moment ago linger in TIME-WAIT and do not stop a new
    one from listening, so they must not make the port look busy either."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(
    command: list[str], env: dict[str, str], output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session; stdout and stderr go to `output` (None: ours)."""
    # preexec_fn is safe here: this process starts no threads before its children.
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def stop_child(
    process: subprocess.Popen[bytes] | None, timeout: float, hurry: Callable[[], bool]
) -> None:
    """SIGTERM the child's main process only; SIGKILL its whole group if it lingers past
    `timeout` or as soon as `hurry()` (a second Ctrl-C)."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline and not hurry():
            time.sleep(POLL_INTERVAL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers (pool children, embedded beat)
    process.wait()
