"""Cold start: wall time of fresh `python -m worker.cli ...` processes, median of N.

The bare interpreter (`python -c pass`) is timed in the same rounds, interleaved with the
commands, as the floor a reader can compare against. Bytecode is cached as an install leaves it
(the image compiles it): one unmeasured warm-up run of each command comes first.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import HarnessError, base_env
from bench.stack import REPO_ROOT

#: name -> (arguments after `python`, target wall seconds or None for the floor)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "python -c pass": (["-c", "pass"], None),
    "dunning --help": (["-m", "worker.cli", "--help"], 0.3),
    "dunning status": (["-m", "worker.cli", "status"], 0.6),
}


def _env(data_dir: Path) -> dict[str, str]:
    env = base_env({"DUNNING_DATA_DIR": str(data_dir)}, cwd=REPO_ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _once(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise HarnessError(
            f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')[-300:]}"
        )
    return wall


def cold_start(*, rounds: int, work: Path, say: Any) -> list[dict[str, Any]]:
    data_dir = work / "cold-start-data"
    env = _env(data_dir)
    say(f"cold start: {rounds} rounds of fresh processes, interleaved")
    _once(["-m", "worker.cli", "db", "upgrade"], env)
    for args, _target in COMMANDS.values():
        _once(args, env)  # warm-up: bytecode written, files in the page cache
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    loads: list[float] = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, (args, _target) in COMMANDS.items():
            walls[name].append(_once(args, env))
    rows = []
    for name, (_args, target) in COMMANDS.items():
        median = statistics.median(walls[name])
        rows.append(
            {
                "command": name,
                "rounds": rounds,
                "median_wall_s": median,
                "min_wall_s": min(walls[name]),
                "max_wall_s": max(walls[name]),
                "target_s": target,
                "holds": None if target is None else median <= target,
                "load_1m": statistics.median(loads),
            }
        )
    return rows
