"""How fast does the sandbox serve a 100-invoice page of the dunning query over HTTP?

    uv run python bench/sandbox_page.py [--invoices 100000] [--requests 300]

Starts the sandbox in-process on a loopback port, warms the filter cache, then times
keep-alive GETs of random pages and prints median / p99 milliseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import httpx

from sandbox.generator import GeneratorSpec
from sandbox.server import running_sandbox
from sandbox.state import SandboxOptions

DUNNING_QUERY: dict[str, Any] = {
    "status": "finalized",
    "payment_overdue": "true",
    "payment_status[]": ["pending", "failed"],
    "self_billed": "false",
    "per_page": 100,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    per_customer = 4
    spec = GeneratorSpec(
        customers=args.invoices // per_customer, invoices_per_customer=per_customer
    )
    started = time.perf_counter()
    with running_sandbox(SandboxOptions(data=spec)) as sandbox:
        load_s = time.perf_counter() - started
        headers = {"Authorization": f"Bearer {sandbox.api_key}"}
        with httpx.Client(base_url=sandbox.url, headers=headers, timeout=30) as client:
            started = time.perf_counter()
            first = client.get("/api/v1/invoices", params=DUNNING_QUERY).json()
            cold_ms = (time.perf_counter() - started) * 1000
            pages = first["meta"]["total_pages"]
            rng = random.Random(1)
            timings = []
            for _ in range(args.requests):
                params = {**DUNNING_QUERY, "page": rng.randint(1, pages)}
                started = time.perf_counter()
                response = client.get("/api/v1/invoices", params=params)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
                assert len(response.json()["invoices"]) > 0
        timings.sort()
        p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        print(
            f"invoices={args.invoices} matching={first['meta']['total_count']} "
            f"pages={pages} load={load_s:.1f}s cold_first_page={cold_ms:.0f}ms"
        )
        print(
            f"100-invoice page over HTTP: median={statistics.median(timings):.2f}ms "
            f"p99={p99:.2f}ms (n={len(timings)})"
        )


if __name__ == "__main__":
    main()
