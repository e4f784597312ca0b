"""Benchmarks against the sandbox (a child process on loopback). `make bench ARGS="..."`.

    python -m bench.run [--quick] [--customers N] [--invoices-per-customer K] [--latency-ms L]
                        [--scale 2000,200000] [--peer-max-invoices 10000]
                        [--only sweep,peer,rate-limited,memory] [--json]

Scenarios (each figure is measured in this run; nothing is hard-coded):
- sweep: one inline sweep in a separate process (`bench.sweep_worker`, rate limiter off, fresh
  SQLite): wall time, API calls (sandbox stats) vs the minimum (list pages + one POST per
  intent), calls/s, worker CPU s per 1,000 invoices, peak RSS, payment requests created;
  at the main size and at every `--scale` size (total invoices).
- peer: the same fresh data swept by a sequential script on the official lago-python-client
  (`bench.peer`); our wall / its wall. Run at sizes up to `--peer-max-invoices` (the peer takes
  tens of minutes at 100k invoices).
- rate-limited: sandbox `--rate-limit 50`, 4 Celery worker processes on Redis (127.0.0.1:6379,
  an empty DB number) sharing the Redis token bucket at 47 rps, PostgreSQL ledger (fresh DB):
  sustained accepted calls/s as a share of 50, share of 429s.
- memory: peak RSS of list+group+decide at 10k/100k/1M invoices from a generated page stream
  (no HTTP; `bench.memory_worker`).
Results: a rich table, and bench/results/<name>-<timestamp>.json (`--json` prints it too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cold_start import cold_start
from bench.compare import side_by_side
from bench.policy_file import write_policy_file
from bench.procs import (
    Child,
    Children,
    HarnessError,
    base_env,
    python_command,
    stop_all,
    supervised,
)
from bench.rate_limited import rate_limited
from bench.sandbox_proc import SandboxControl, SandboxSpec, count_calls, start_sandbox
from bench.stack import (
    REPO_ROOT,
)
from bench.tables import print_tables

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 11
TARGETS = {
    "calls_over_minimum_pct": 1.0,
    "speedup_vs_peer": 20.0,
    "rate_limit_share": 0.90,
    "share_429": 0.01,
}


def _run_child(
    children: Children, name: str, args: list[str], env: dict[str, str], work: Path, timeout: float
) -> dict[str, Any]:
    out = work / f"{name}.json"
    out.unlink(missing_ok=True)
    child = children.add(
        Child(
            name=name,
            command=python_command(*args, "--json-out", str(out)),
            env=base_env(env, cwd=REPO_ROOT),
            log_path=work / f"{name}.log",
        )
    )
    child.start()
    assert child.process is not None
    try:
        code = child.process.wait(timeout=timeout)
    except Exception:
        child.kill()
        raise HarnessError(f"{name} did not finish within {timeout:.0f} s") from None
    if code != 0 or not out.exists():
        raise HarnessError(f"{name} failed (exit {code}): {child.tail(3)!r}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _fresh(sandbox: SandboxControl) -> None:
    sandbox.reset_data()
    sandbox.reset_stats()


def sweep_and_peer(
    children: Children,
    *,
    customers: int,
    invoices_per_customer: int,
    latency_ms: float,
    with_peer: bool,
    work: Path,
    say: Any,
) -> dict[str, Any]:
    spec = SandboxSpec(
        customers=customers,
        invoices_per_customer=invoices_per_customer,
        seed=SEED,
        latency_ms=latency_ms,
    )
    total = customers * invoices_per_customer
    say(f"sweep: {total} invoices ({customers} customers), {latency_ms:g} ms latency")
    sandbox_child, sandbox = start_sandbox(children, spec, log_dir=work, name=f"sandbox-{total}")
    try:
        policy = write_policy_file(work / f"policy-{total}")
        _fresh(sandbox)
        ours = _run_child(
            children,
            f"sweep-{total}",
            [
                "-m",
                "bench.sweep_worker",
                "--lago-url",
                sandbox.url,
                "--policy",
                str(policy),
                "--data-dir",
                str(work / f"sweep-{total}-data"),
            ],
            {"DUNNING_RATE_LIMIT_RPS": "0", "DUNNING_LOG_LEVEL": "WARNING"},
            work,
            timeout=3600,
        )
        stats = sandbox.stats()
        calls = count_calls(stats)
        pages = math.ceil(ours["invoices_seen"] / 100) if ours["invoices_seen"] else 1
        minimum = pages + ours["intents"]
        row: dict[str, Any] = {
            "invoices": total,
            "overdue_invoices": ours["invoices_seen"],
            "groups": ours["groups"],
            "wall_s": ours["wall_s"],
            "api_calls": calls,
            "api_calls_min": minimum,
            "calls_over_minimum_pct": 100.0 * (calls - minimum) / minimum,
            "calls_per_s": calls / ours["wall_s"],
            "cpu_s_per_1k_invoices": ours["cpu_s"] / max(1, ours["invoices_seen"]) * 1000,
            "cpu_s": ours["cpu_s"],
            "peak_rss_mb": ours["peak_rss_mb"],
            "payment_requests_created": ours["payment_requests_created"],
            "calls_by_endpoint": stats,
        }
        if with_peer:
            say(f"peer: official client, same {total} invoices")
            _fresh(sandbox)
            peer = _run_child(
                children,
                f"peer-{total}",
                ["-m", "bench.peer", "--lago-url", sandbox.url],
                {},
                work,
                timeout=7200,
            )
            row["peer_wall_s"] = peer["wall_s"]
            row["peer_api_calls"] = count_calls(sandbox.stats())
            row["peer_payment_requests_created"] = peer["payment_requests_created"]
            row["speedup_vs_peer"] = peer["wall_s"] / ours["wall_s"]
            row["ours_over_peer_wall"] = ours["wall_s"] / peer["wall_s"]
        return row
    finally:
        sandbox.close()
        stop_all([sandbox_child])


def memory(children: Children, sizes: list[int], *, work: Path, say: Any) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        say(f"memory: {size} invoices (generated page stream, no HTTP)")
        result = _run_child(
            children,
            f"memory-{size}",
            ["-m", "bench.memory_worker", "--invoices", str(size)],
            {},
            work,
            timeout=3600,
        )
        rows.append(result)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--invoices-per-customer", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--scale", default=None, help="extra sweep sizes, total invoices")
    parser.add_argument("--peer-max-invoices", type=int, default=10_000)
    parser.add_argument("--only", default="cold-start,compare,peer,sweep,rate-limited,memory")
    parser.add_argument("--compare-customers", type=int, default=None)
    parser.add_argument("--compare-rounds", type=int, default=None)
    parser.add_argument("--cold-start-rounds", type=int, default=None)
    parser.add_argument("--memory-sizes", default=None)
    parser.add_argument("--rate-limited-customers", type=int, default=None)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    ipc = args.invoices_per_customer
    customers = args.customers or (400 if args.quick else 20_000)
    scale_text = args.scale if args.scale is not None else ("" if args.quick else "2000,200000")
    sizes = sorted({customers * ipc, *(int(s) for s in scale_text.split(",") if s)})
    memory_sizes = [
        int(s)
        for s in (
            args.memory_sizes or ("10000,100000" if args.quick else "10000,100000,1000000")
        ).split(",")
    ]
    # About 70 s of sends at 50 calls/s (the target counts a busy span of >= 60 s).
    limited_customers = args.rate_limited_customers or (300 if args.quick else 3500)

    def say(message: str) -> None:
        print(message, flush=True)

    document: dict[str, Any] = {
        "name": args.name,
        "at": datetime.now(UTC).isoformat(),
        "latency_ms": args.latency_ms,
        "targets": TARGETS,
        "sweep": [],
    }
    work = Path(tempfile.mkdtemp(prefix="dunning-bench-"))
    try:
        with supervised() as children:
            if "cold-start" in only:
                document["cold_start"] = cold_start(
                    rounds=args.cold_start_rounds or (5 if args.quick else 9), work=work, say=say
                )
            if "compare" in only:
                document["compare"] = side_by_side(
                    children,
                    customers=args.compare_customers or (300 if args.quick else 1000),
                    invoices_per_customer=ipc,
                    latency_ms=args.latency_ms,
                    rounds=args.compare_rounds or (3 if args.quick else 5),
                    with_peer="peer" in only,
                    work=work,
                    say=say,
                )
            if "sweep" in only:
                for size in sizes:
                    document["sweep"].append(
                        sweep_and_peer(
                            children,
                            customers=max(1, size // ipc),
                            invoices_per_customer=ipc,
                            latency_ms=args.latency_ms,
                            with_peer="peer" in only and size <= args.peer_max_invoices,
                            work=work,
                            say=say,
                        )
                    )
            if "rate-limited" in only:
                document["rate_limited"] = [
                    rate_limited(
                        children, customers=limited_customers, window=window, work=work, say=say
                    )
                    for window in ("fixed", "sliding")
                ]
            if "memory" in only:
                document["memory"] = memory(children, memory_sizes, work=work, say=say)
    except HarnessError as exc:
        print(f"error: {exc} (logs in {work})", file=sys.stderr)
        return 2
    print_tables(document)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{args.name}-{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    print(f"results: {path}")
    if args.json:
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
