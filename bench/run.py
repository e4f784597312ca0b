"""Benchmarks against the sandbox (a child process on loopback). `make bench ARGS="..."`.

    python -m bench.run [--quick] [--only cold-start,compare,peer,sweep,rate-limited,memory]
                        [--compare-customers 1000] [--compare-rounds 5] [--latency-ms 20]
                        [--scale 10000,100000] [--rate-limited-customers 3500]
                        [--memory-sizes 10000,100000,1000000] [--name NAME] [--json]

Scenarios (each figure is measured in this run; nothing is hard-coded; each row shows its
target and whether it holds, and the machine's load beside it):
- cold-start: fresh `python -m worker.cli --help` / `status` processes, median
  (`bench.cold_start`).
- compare (+ peer): ours (`dunning sweep --once`), the bare async httpx loop and the sequential
  official-client script as whole processes on the same fresh data, ours and bare interleaved
  (`bench.compare`).
- sweep: the scale rows, one inline sweep per size (total invoices, `--scale`) in its own
  process (`bench.sweep_worker`) on a fresh PostgreSQL database through the real HTTP client:
  wall, API calls vs the minimum, worker CPU s per 1,000 invoices, peak RSS.
- rate-limited: 4 Celery workers at DUNNING_RATE_LIMIT_RPS=50 against a sandbox limiting 50
  calls/s, fixed and sliding window (`bench.rate_limited`).
- memory: peak RSS of list+group+decide from a generated page stream (no HTTP;
  `bench.memory_worker`).
Results: rich tables (`bench.tables`), and bench/results/<name>-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
    fresh_postgres_database,
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
    work: Path,
    say: Any,
    send_processes: int = 1,
) -> dict[str, Any]:
    spec = SandboxSpec(
        customers=customers,
        invoices_per_customer=invoices_per_customer,
        seed=SEED,
        latency_ms=latency_ms,
    )
    total = customers * invoices_per_customer
    say(
        f"sweep: {total} invoices ({customers} customers), {latency_ms:g} ms latency, PostgreSQL, "
        f"{send_processes} send process(es)"
    )
    sandbox_child, sandbox = start_sandbox(children, spec, log_dir=work, name=f"sandbox-{total}")
    try:
        policy = write_policy_file(work / f"policy-{total}")
        _fresh(sandbox)
        with fresh_postgres_database("dunning_scale") as database_url:
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
                {
                    "DUNNING_RATE_LIMIT_RPS": "0",
                    "DUNNING_LOG_LEVEL": "WARNING",
                    "DUNNING_DATABASE_URL": database_url,
                    "DUNNING_SEND_PROCESSES": str(send_processes),
                },
                work,
                timeout=4 * 3600,
            )
        stats = sandbox.stats()
        calls = count_calls(stats)
        pages = math.ceil(ours["invoices_seen"] / 100) if ours["invoices_seen"] else 1
        # + the one page of pending payment requests (none on fresh data: one empty page).
        minimum = pages + 1 + ours["intents"]
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
            "phases": ours.get("phases", {}),
            "database": "postgresql",
            "send_processes": send_processes,
            "holds": ours["cpu_s"] / max(1, ours["invoices_seen"]) * 1000 <= 0.75
            and calls <= minimum,
            "load_1m": os.getloadavg()[0],
        }
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
    parser.add_argument("--invoices-per-customer", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--scale", default=None, help="sweep sizes, total invoices")
    parser.add_argument(
        "--send-processes", type=int, default=1, help="DUNNING_SEND_PROCESSES of the scale sweeps"
    )
    parser.add_argument("--only", default="cold-start,compare,peer,sweep,rate-limited,memory")
    parser.add_argument("--compare-customers", type=int, default=None)
    parser.add_argument("--compare-rounds", type=int, default=None)
    parser.add_argument("--cold-start-rounds", type=int, default=None)
    parser.add_argument("--memory-sizes", default=None)
    parser.add_argument("--rate-limited-customers", type=int, default=None)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.send_processes <= 16:
        parser.error("--send-processes must be between 1 and 16 (as DUNNING_SEND_PROCESSES)")
    only = set(args.only.split(","))
    ipc = args.invoices_per_customer
    scale_text = args.scale or ("2000" if args.quick else "10000,100000")
    sizes = sorted({int(s) for s in scale_text.split(",") if s})
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
                            work=work,
                            say=say,
                            send_processes=args.send_processes,
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
