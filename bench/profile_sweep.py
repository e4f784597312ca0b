"""Where a whole-process sweep spends its time: `dunning sweep --once` under cProfile.

The same work as the `compare` scenario (a sandbox with 1,000 customers at 20 ms latency, the
bench policy, a fresh SQLite ledger migrated before the clock starts), in one process run under
`python -m cProfile`. Prints the wall time, the functions with the most cumulative time and
those with the most time of their own, so a reader sees what binds.

    python -m bench.profile_sweep [--customers 1000] [--latency-ms 20] [--top 25]
                                  [--sort cumulative] [--out FILE.prof]
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

from bench.compare import SEED
from bench.policy_file import write_policy_file
from bench.procs import Children, base_env, python_command, stop_all
from bench.sandbox_proc import API_KEY, SandboxSpec, start_sandbox
from bench.stack import REPO_ROOT


def profile_sweep(
    customers: int, latency_ms: float, out: Path, work: Path, *, py_spy: bool = False
) -> float:
    """Profile one sweep into `out` (cProfile, or py-spy's collapsed stacks of every thread,
    idle frames left out); its wall time."""
    children = Children()
    spec = SandboxSpec(customers, 3, seed=SEED, latency_ms=latency_ms)
    sandbox_child, sandbox = start_sandbox(children, spec, log_dir=work, name="sandbox-profile")
    try:
        policy = write_policy_file(work / "policy")
        env = base_env(
            {
                "LAGO_API_URL": sandbox.url,
                "LAGO_API_KEY": API_KEY,
                "DUNNING_DATA_DIR": str(work / "data"),
                "DUNNING_POLICY_FILE": str(policy),
                "DUNNING_RATE_LIMIT_RPS": "0",
                "DUNNING_LOG_LEVEL": "WARNING",
            },
            cwd=REPO_ROOT,
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            python_command("-m", "worker.cli", "db", "upgrade"),
            env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        sandbox.reset_data()
        sandbox.reset_stats()
        sweep = ["-m", "worker.cli", "sweep", "--once", "--json"]
        command = (
            ["py-spy", "record", "--format", "raw", "--rate", "250", "--gil", "--threads", "-o", str(out)]
            + ["--", *python_command(*sweep)]
            if py_spy
            else python_command("-m", "cProfile", "-o", str(out), *sweep)
        )
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=REPO_ROOT, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        sandbox.close()
        stop_all([sandbox_child])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_sweep")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dunning-profile-") as tmp:
        out = args.out or Path(tmp) / "sweep.prof"
        wall = profile_sweep(args.customers, args.latency_ms, out, Path(tmp))
        print(f"sweep --once under cProfile: {wall:.2f} s wall (profiling slows it down)")
        stats = pstats.Stats(str(out))
        stats.sort_stats(args.sort).print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
