"""The bare loop (the bench's reference) does a sweep's calls: the whole overdue listing, one
POST per customer and currency with that group's invoices, nothing else."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from bench.bare_loop import sweep
from tests.fixtures.sandbox import SandboxHandle


def test_the_bare_loop_asks_once_per_customer_and_currency_for_the_listed_invoices(
    sandbox: SandboxHandle,
) -> None:
    sandbox.reset(customers=40, invoices_per_customer=3, seed=5)
    sandbox.reset_stats()
    result = asyncio.run(sweep(sandbox.url, sandbox.api_key, concurrency=4))
    created = sandbox.payment_requests()
    assert result["payment_requests_created"] == len(created) > 0
    posts = sandbox.request_count("POST /api/v1/payment_requests")
    assert posts == result["groups"]
    by_group: dict[tuple[str, str], set[str]] = defaultdict(set)
    invoices = {invoice["lago_id"]: invoice for invoice in sandbox.invoices()}
    for request in created:
        ids = {invoice["lago_id"] for invoice in request["invoices"]}
        customers = {invoices[lago_id]["customer"]["external_id"] for lago_id in ids}
        currencies = {invoices[lago_id]["currency"] for lago_id in ids}
        assert len(customers) == len(currencies) == 1
        key = (customers.pop(), currencies.pop())
        assert key not in by_group
        by_group[key] = ids
    assert sum(len(ids) for ids in by_group.values()) <= result["invoices_seen"]
