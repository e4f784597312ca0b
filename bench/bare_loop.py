"""The bare loop: the least work a dunning sweep can do on this machine, as the reference.

The same calls as our sweep (the overdue listing with the same filters and pagination, the
pending payment requests listing, one POST /payment_requests per group) with async httpx at the
same concurrency, grouping by customer and currency in a dict. No database, no policy, no
ledger, no retries, no checks of the answers.

    python -m bench.bare_loop --lago-url URL [--concurrency 16]     (one JSON line on stdout)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import defaultdict
from typing import Any

import httpx

PER_PAGE = 100
Query = list[tuple[str, str | int | float | bool | None]]
OVERDUE: Query = [
    ("status", "finalized"),
    ("payment_overdue", "true"),
    ("payment_status[]", "pending"),
    ("payment_status[]", "failed"),
    ("self_billed", "false"),
]


async def _pages(
    http: httpx.AsyncClient, path: str, key: str, query: Query, gate: Any
) -> list[dict[str, Any]]:
    async def page(number: int) -> dict[str, Any]:
        async with gate:
            params = [*query, ("page", str(number)), ("per_page", str(PER_PAGE))]
            response = await http.get(path, params=params)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    first = await page(1)
    last = int(first.get("meta", {}).get("total_pages") or 1)
    rest = await asyncio.gather(*(page(number) for number in range(2, last + 1)))
    return [row for body in (first, *rest) for row in body[key]]


async def sweep(lago_url: str, api_key: str, concurrency: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=lago_url, headers=headers, limits=limits) as http:
        invoices, pending = await asyncio.gather(
            _pages(http, "/api/v1/invoices", "invoices", OVERDUE, gate),
            _pages(
                http,
                "/api/v1/payment_requests",
                "payment_requests",
                [("payment_status", "pending")],
                gate,
            ),
        )
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        emails: dict[str, str | None] = {}
        for invoice in invoices:
            if (invoice.get("total_due_amount_cents") or 0) <= 0:
                continue
            customer = invoice["customer"]
            emails[customer["external_id"]] = customer.get("email")
            groups[(customer["external_id"], invoice["currency"])].append(invoice["lago_id"])

        async def post(external_id: str, invoice_ids: list[str]) -> bool:
            body: dict[str, Any] = {
                "external_customer_id": external_id,
                "lago_invoice_ids": sorted(invoice_ids),
            }
            if emails.get(external_id):
                body["email"] = emails[external_id]
            async with gate:
                response = await http.post(
                    "/api/v1/payment_requests", json={"payment_request": body}
                )
            return response.status_code == 200

        results = await asyncio.gather(*(post(key[0], ids) for key, ids in groups.items()))
    return {
        "invoices_seen": len(invoices),
        "pending_requests_seen": len(pending),
        "groups": len(groups),
        "payment_requests_created": sum(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_loop")
    parser.add_argument("--lago-url", required=True)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(sweep(args.lago_url, args.api_key, args.concurrency))
    result["wall_s"] = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**result, "cpu_s": own.ru_utime + own.ru_stime}))


if __name__ == "__main__":
    main()
