"""Where a whole-process sweep spends its time: `dunning sweep --once` under cProfile.

The same work as the `compare` scenario (a sandbox with 1,000 customers at 20 ms latency, the
bench policy, a fresh SQLite ledger migrated before the clock starts), in one process run under
`python -m cProfile` (the main thread only), or with `--py-spy` under py-spy (`pip install
py-spy`; every thread, sampled only while it holds the interpreter lock, so the figures are CPU
spent in Python, sending threads included). Prints the wall time, the functions with the most
cumulative time and those with the most time of their own, so a reader sees what binds.

    python -m bench.profile_sweep [--customers 1000] [--latency-ms 20] [--top 25]
                                  [--sort cumulative] [--out FILE] [--py-spy]
"""

from __future__ import annotations

import argparse
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
        spy = ["py-spy", "record", "--format", "raw", "--rate", "250", "--gil", "--threads"]
        command = (
            [*spy, "-o", str(out), "--", *python_command(*sweep)]
            if py_spy
            else python_command("-m", "cProfile", "-o", str(out), *sweep)
        )
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=REPO_ROOT, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        sandbox.close()
        stop_all([sandbox_child])


def print_py_spy(path: Path, top: int) -> None:
    """Samples (collapsed stacks) per function: inclusive for ours, own time for any."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]
        for frame in set(frames):
            inclusive[frame] += samples
        if frames:
            own[frames[-1]] += samples
    print(f"{total} samples of threads holding the interpreter lock (250 per second)")
    ours = [(f, n) for f, n in inclusive.most_common() if "(worker/" in f or "(config/" in f]
    for title, rows in (("inclusive, our functions", ours[:top]), ("own", own.most_common(top))):
        print(f"--- {title}")
        for frame, samples in rows:
            print(f"{samples:6d} {100 * samples / max(total, 1):5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_sweep")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--py-spy", action="store_true", help="sample every thread (py-spy)")
    args = parser.parse_args()
    if args.py_spy and shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy (or drop --py-spy)")
    with tempfile.TemporaryDirectory(prefix="dunning-profile-") as tmp:
        out = args.out or Path(tmp) / ("sweep.txt" if args.py_spy else "sweep.prof")
        wall = profile_sweep(args.customers, args.latency_ms, out, Path(tmp), py_spy=args.py_spy)
        print(f"sweep --once, profiled: {wall:.2f} s wall (profiling slows it down)")
        if args.py_spy:
            print_py_spy(out, args.top)
            return
        stats = pstats.Stats(str(out))
        stats.sort_stats(args.sort).print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
