"""Rate-limited: a Celery sweep on 4 worker processes against a sandbox that limits 50 calls/s.

The workers share the Redis token bucket at `DUNNING_RATE_LIMIT_RPS=50` and pace from the
sandbox's X-RateLimit-* headers; the sandbox counts per clock second (`fixed`) or over the last
second (`sliding`). Sends go in batches (`dunning.send_payment_requests`). Figures: accepted
calls per second over the busy span (first call to the last intent settled) as a share of the
limit, and the share of calls answered 429. The target needs that span to last >= 60 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis

from bench.policy_file import write_policy_file
from bench.procs import Child, Children, HarnessError, stop_all, wait_for_output
from bench.sandbox_proc import SandboxSpec, count_calls, start_sandbox
from bench.stack import Ledger, StackConfig, TaskSender, fresh_postgres_database, worker_child

LIMIT = 50
OURS_RPS = 50
PROCESSES = 4
SEED = 11
#: Accepted share of the limit, 429 share, and the least busy span the figures count for.
TARGET_SHARE, TARGET_429, TARGET_SPAN_S = 0.90, 0.01, 60.0


def _empty_redis_db() -> int:
    for number in range(15, 1, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        try:
            if client.dbsize() == 0:
                client.set("lago-dunning:bench:claimed", "1", ex=3600)
                return number
        finally:
            client.close()
    raise HarnessError("no empty Redis DB number on 127.0.0.1:6379 for the rate-limited bench")


def rate_limited(
    children: Children,
    *,
    customers: int,
    window: str,
    work: Path,
    say: Any,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """One Celery sweep fanned out to 4 workers against a sandbox limiting 50 calls/s."""
    spec = SandboxSpec(
        customers=customers,
        invoices_per_customer=5,
        seed=SEED,
        rate_limit=LIMIT,
        rate_limit_window=window,
    )
    say(
        f"rate-limited ({window} window): {customers} customers, sandbox limit {LIMIT}/s, "
        f"{PROCESSES} workers at DUNNING_RATE_LIMIT_RPS={OURS_RPS}"
    )
    name = f"sandbox-ratelimit-{window}"
    sandbox_child, sandbox = start_sandbox(children, spec, log_dir=work, name=name)
    db = _empty_redis_db()
    workers: list[Child] = []
    try:
        with fresh_postgres_database("dunning_bench") as database_url:
            config = StackConfig(
                name=f"ratelimit-{window}",
                data_dir=work / f"ratelimit-{window}",
                policy_file=write_policy_file(work / f"policy-ratelimit-{window}"),
                lago_url=sandbox.url,
                database_url=database_url,
                broker_url=f"redis://127.0.0.1:6379/{db}",
                env={"DUNNING_RATE_LIMIT_RPS": str(OURS_RPS), "DUNNING_LOG_LEVEL": "INFO"},
            )
            ledger = Ledger(database_url)
            ledger.migrate()
            workers = [
                children.add(
                    worker_child(config, index, log_dir=work, concurrency=1, loglevel="INFO")
                )
                for index in range(1, PROCESSES + 1)
            ]
            for worker in workers:
                worker.start()
            wait_for_output(workers, "ready.", timeout=120)
            sender = TaskSender(config.settings())
            sandbox.reset_stats()
            started = time.monotonic()
            sender.send("dunning.sweep", trigger="celery")
            samples: list[tuple[float, int, int]] = []
            done_at: float | None = None
            while time.monotonic() - started < timeout_s:
                time.sleep(1.0)
                stats = sandbox.stats()
                samples.append(
                    (
                        time.monotonic() - started,
                        count_calls(stats),
                        count_calls(stats, status="429"),
                    )
                )
                rows = ledger.intents()
                if rows and not any(row.unsettled for row in rows):
                    done_at = time.monotonic() - started
                    break
            sender.close()
            ledger.close()
    finally:
        stop_all(workers)
        sandbox.close()
        stop_all([sandbox_child])
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        client.flushdb()
        client.close()
    if not samples:
        raise HarnessError("the rate-limited run recorded nothing")
    final = samples[-1]
    # Over the whole busy span (first call to the last intent settled: listing, deciding and
    # writing intents included) and over the best 60 s of it (the sends, sustained).
    busy = [s for s in samples if s[1] > 0]
    first_t = busy[0][0] - 1.0 if busy else 0.0
    span = max(1.0, final[0] - first_t)
    accepted = final[1] - final[2]
    sustained = best_sustained_rate(samples, TARGET_SPAN_S)
    share_429 = final[2] / max(1, final[1])
    return {
        "window": window,
        "limit_rps": LIMIT,
        "worker_rps_setting": OURS_RPS,
        "processes": PROCESSES,
        "customers": customers,
        "settled": done_at is not None,
        "window_s": span,
        "api_calls": final[1],
        "http_429": final[2],
        "accepted_calls_per_s": accepted / span,
        "busy_span_share": accepted / span / LIMIT,
        "sustained_60s_calls_per_s": sustained,
        "rate_limit_share": None if sustained is None else sustained / LIMIT,
        "share_429": share_429,
        "load_1m": os.getloadavg()[0],
        "holds": (
            done_at is not None
            and sustained is not None
            and sustained / LIMIT >= TARGET_SHARE
            and share_429 < TARGET_429
        ),
    }


def best_sustained_rate(samples: list[tuple[float, int, int]], span_s: float) -> float | None:
    """The highest accepted calls/s over any `span_s` of the samples (t, calls, 429s); None
    when the run was shorter than `span_s`."""
    best: float | None = None
    end = 0
    for start, (t0, calls0, limited0) in enumerate(samples):
        end = max(end, start)
        while end < len(samples) and samples[end][0] - t0 < span_s:
            end += 1
        if end == len(samples):
            break
        t1, calls1, limited1 = samples[end]
        rate = ((calls1 - limited1) - (calls0 - limited0)) / (t1 - t0)
        best = rate if best is None else max(best, rate)
    return best
