"""Whole processes on identical work, side by side in one run: ours, the bare loop, the peer.

- ours: `python -m worker.cli sweep --once --json` (fresh SQLite ledger, migrated before the
  clock starts; rate limiter off), as configured by default (one process) and with
  `DUNNING_SEND_PROCESSES=2` (the sweep forks a helper that sends half the intents; its CPU and
  peak RSS are counted with the sweep's);
- bare: `python -m bench.bare_loop` (same calls, no DB, no policy; the limit on this machine);
- peer: `python -m bench.peer` (the sequential official-client script), once.

After one warm-up round that is not counted, the sides take turns (the one that starts moves
each round) and the sandbox is reset to the same fresh data before each side; the figure of
each side is its median. Wall time, CPU and
peak RSS of each process are measured by `bench.launch`, a small parent between the harness
and the command (spawned straight from the harness, a command would report the harness's own
RSS high-water mark as its peak). Each side's work (invoices listed, groups, payment requests
the sandbox created) is reported next to its time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.policy_file import write_policy_file
from bench.procs import Children, HarnessError, base_env, python_command, stop_all
from bench.sandbox_proc import API_KEY, SandboxControl, SandboxSpec, count_calls, start_sandbox
from bench.stack import REPO_ROOT

SEED = 11
#: The send processes of the second "ours" side (this bench's machines have two cores).
SEND_PROCESSES = 2


def _timed(command: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run `command` to its end; its JSON stdout plus wall, CPU and peak RSS of the process."""
    usage_file = log.with_suffix(".usage.json")
    launched = python_command("-m", "bench.launch", "--usage-out", str(usage_file), "--", *command)
    with log.open("ab") as errors:
        process = subprocess.run(
            launched, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=errors,
            timeout=timeout + 60, check=False,
        )  # fmt: skip
    if process.returncode != 0:
        raise HarnessError(f"{command[1:4]} failed (exit {process.returncode}); see {log}")
    usage = json.loads(usage_file.read_text())
    if usage["wall_s"] > timeout:
        took = usage["wall_s"]
        raise HarnessError(f"{command[1:4]} took {took:.0f} s (more than {timeout:.0f} s)")
    result: dict[str, Any] = json.loads(process.stdout.decode().strip().splitlines()[-1])
    result.update(
        process_wall_s=usage["wall_s"],
        process_cpu_s=usage["cpu_s"],
        process_peak_rss_mb=usage["peak_rss_mb"],
    )
    return result


def _work(sandbox: SandboxControl, result: dict[str, Any]) -> dict[str, Any]:
    stats = sandbox.stats()
    return {
        "wall_s": result["process_wall_s"],
        "cpu_s": result["process_cpu_s"],
        "peak_rss_mb": result["process_peak_rss_mb"],
        "invoices": result["invoices_seen"],
        "groups": result["groups"],
        "requests": len(sandbox.payment_requests()),
        "api_calls": count_calls(stats),
    }


def _ours(
    sandbox: SandboxControl, policy: Path, work: Path, index: int, processes: int = 1
) -> dict[str, Any]:
    data_dir = work / f"ours-{processes}p-{index}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = base_env(
        {
            "LAGO_API_URL": sandbox.url,
            "LAGO_API_KEY": API_KEY,
            "DUNNING_DATA_DIR": str(data_dir),
            "DUNNING_POLICY_FILE": str(policy),
            "DUNNING_RATE_LIMIT_RPS": "0",
            "DUNNING_SEND_PROCESSES": str(processes),
            "DUNNING_LOG_LEVEL": "WARNING",
        },
        cwd=REPO_ROOT,
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    log = work / "ours.log"
    with log.open("ab") as errors:
        subprocess.run(
            python_command("-m", "worker.cli", "db", "upgrade"),
            env=env, cwd=REPO_ROOT, stdout=errors, stderr=errors, check=True, timeout=300,
        )  # fmt: skip
    sandbox.reset_data()
    sandbox.reset_stats()
    result = _timed(python_command("-m", "worker.cli", "sweep", "--once", "--json"), env, log, 3600)
    return _work(sandbox, result)


def _script(sandbox: SandboxControl, work: Path, module: str, timeout: float) -> dict[str, Any]:
    """The bare loop or the peer (`module`) as a whole process on fresh data."""
    env = base_env({}, cwd=REPO_ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sandbox.reset_data()
    sandbox.reset_stats()
    command = python_command("-m", module, "--lago-url", sandbox.url)
    return _work(sandbox, _timed(command, env, work / f"{module}.log", timeout))


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall_s", "cpu_s", "peak_rss_mb")
    row: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in keys}
    row["walls"] = [run["wall_s"] for run in runs]
    # The work of every run, which must be the same each time.
    for key in ("invoices", "groups", "requests", "api_calls"):
        values = {run[key] for run in runs}
        row[key] = values.pop() if len(values) == 1 else sorted(values)
    return row


def side_by_side(
    children: Children,
    *,
    customers: int,
    invoices_per_customer: int,
    latency_ms: float,
    rounds: int,
    with_peer: bool,
    work: Path,
    say: Any,
) -> dict[str, Any]:
    spec = SandboxSpec(customers, invoices_per_customer, seed=SEED, latency_ms=latency_ms)
    say(
        f"ours vs bare loop: {customers} customers, {latency_ms:g} ms latency, {rounds} rounds "
        "(whole processes, interleaved)" + (", then the peer once" if with_peer else "")
    )
    sandbox_child, sandbox = start_sandbox(children, spec, log_dir=work, name="sandbox-compare")
    try:
        policy = write_policy_file(work / "policy-compare")
        sides: dict[str, Callable[[int], dict[str, Any]]] = {
            "ours": lambda index: _ours(sandbox, policy, work, index),
            "ours_processes": lambda index: _ours(sandbox, policy, work, index, SEND_PROCESSES),
            "bare": lambda _index: _script(sandbox, work, "bench.bare_loop", 3600),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        names = list(sides)
        # One round first, not counted: the first run of each side compiles its bytecode and
        # warms the page cache (it took 1.2-1.5x the later rounds on every side).
        for name in names:
            sides[name](-1)
        loads: list[float] = []
        for index in range(rounds):
            loads.append(os.getloadavg()[0])
            start = index % len(names)
            for name in names[start:] + names[:start]:
                runs[name].append(sides[name](index))
        row: dict[str, Any] = {
            "customers": customers,
            "latency_ms": latency_ms,
            "rounds": rounds,
            "send_processes": SEND_PROCESSES,
            **{name: _median(found) for name, found in runs.items()},
            "load_1m": statistics.median(loads),
        }
        for name in ("ours", "ours_processes"):
            row[f"{name}_over_bare_wall"] = row[name]["wall_s"] / row["bare"]["wall_s"]
            row[f"{name}_over_bare_cpu"] = row[name]["cpu_s"] / row["bare"]["cpu_s"]
        if with_peer:
            say("peer: the sequential official-client script on the same fresh data")
            peer = _script(sandbox, work, "bench.peer", 7200)
            row["peer"] = peer
            for name in ("ours", "ours_processes"):
                key = "speedup_vs_peer" if name == "ours" else f"{name}_speedup_vs_peer"
                row[key] = peer["wall_s"] / row[name]["wall_s"]
        return row
    finally:
        sandbox.close()
        stop_all([sandbox_child])
