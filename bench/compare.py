"""Whole processes on identical work, side by side in one run: ours, the bare loop, the peer.

- ours: `python -m worker.cli sweep --once --json` (fresh SQLite ledger, migrated before the
  clock starts; rate limiter off);
- bare: `python -m bench.bare_loop` (same calls, no DB, no policy; the limit on this machine);
- peer: `python -m bench.peer` (the sequential official-client script), once.

Ours and bare alternate (ABAB...) and the sandbox is reset to the same fresh data before each
side; the figure of each side is its median. Wall time, CPU and peak RSS of each process are
measured by `bench.launch`, a small parent between the harness and the command (spawned straight
from the harness, a command would report the harness's own RSS high-water mark as its peak).
Each side's work (invoices listed, groups, payment requests the sandbox created) is reported
next to its time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.policy_file import write_policy_file
from bench.procs import Children, HarnessError, base_env, python_command, stop_all
from bench.sandbox_proc import API_KEY, SandboxControl, SandboxSpec, count_calls, start_sandbox
from bench.stack import REPO_ROOT

SEED = 11


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


def _ours(sandbox: SandboxControl, policy: Path, work: Path, index: int) -> dict[str, Any]:
    data_dir = work / f"ours-{index}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = base_env(
        {
            "LAGO_API_URL": sandbox.url,
            "LAGO_API_KEY": API_KEY,
            "DUNNING_DATA_DIR": str(data_dir),
            "DUNNING_POLICY_FILE": str(policy),
            "DUNNING_RATE_LIMIT_RPS": "0",
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
        ours: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        loads: list[float] = []
        for index in range(rounds):
            loads.append(os.getloadavg()[0])
            if index % 2 == 0:
                ours.append(_ours(sandbox, policy, work, index))
                bare.append(_script(sandbox, work, "bench.bare_loop", 3600))
            else:
                bare.append(_script(sandbox, work, "bench.bare_loop", 3600))
                ours.append(_ours(sandbox, policy, work, index))
        row: dict[str, Any] = {
            "customers": customers,
            "latency_ms": latency_ms,
            "rounds": rounds,
            "ours": _median(ours),
            "bare": _median(bare),
            "load_1m": statistics.median(loads),
        }
        row["ours_over_bare_wall"] = row["ours"]["wall_s"] / row["bare"]["wall_s"]
        row["ours_over_bare_cpu"] = row["ours"]["cpu_s"] / row["bare"]["cpu_s"]
        if with_peer:
            say("peer: the sequential official-client script on the same fresh data")
            peer = _script(sandbox, work, "bench.peer", 7200)
            row["peer"] = peer
            row["speedup_vs_peer"] = peer["wall_s"] / row["ours"]["wall_s"]
        return row
    finally:
        sandbox.close()
        stop_all([sandbox_child])
