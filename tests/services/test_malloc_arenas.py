"""The C allocator's arena cap that `open_runtime` applies before a process starts threads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Eight threads allocate at once (buffers above pymalloc's size, so from malloc), then glibc's
# own report lists one "Arena N:" block per arena on stderr.
_PROBE = """
import ctypes, sys, threading
from worker.malloc_arenas import cap_malloc_arenas
print(cap_malloc_arenas() if sys.argv[1] == "cap" else "none")
barrier = threading.Barrier(8)
kept = []
def allocate():
    barrier.wait()
    kept.append([bytearray(100_000) for _ in range(20)])
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sys.stdout.flush()
ctypes.CDLL(None).malloc_stats()
"""

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the arena cap is a glibc setting"
)


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    base = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    arenas = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    return done.stdout.strip(), arenas


@glibc_only
def test_threads_share_two_arenas_once_capped() -> None:
    applied, capped = _arenas("cap")
    _, uncapped = _arenas("none")
    assert applied == "True"
    assert capped == 2
    assert uncapped > 2  # the probe does make threads take arenas of their own


@glibc_only
def test_the_operators_malloc_arena_max_wins() -> None:
    applied, arenas = _arenas("cap", {"MALLOC_ARENA_MAX": "4"})
    assert applied == "False"
    assert arenas <= 4
