"""Peak memory of listing + grouping + deciding N overdue invoices, WITHOUT HTTP (labelled so).

    python -m bench.memory_worker --invoices N [--json-out FILE]

A generated page stream stands in for Lago: realistic invoice objects (each with its embedded
customer, from the sandbox generator) are cloned under fresh ids, 100 per page, serialized to
JSON bytes and parsed by the worker's own page parser, then fed to `collect_groups` and
`decide()` exactly as a sweep does (groups read back from the spool one at a time). Nothing is
written to the ledger. Run in its own process so
its peak RSS (`VmHWM`, its own, not the harness's) belongs to one size only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.launch import own_peak_rss_mb

PER_PAGE = 100
BASE_CUSTOMERS = 200


def _rss_mb() -> float:
    return own_peak_rss_mb()


def base_invoices() -> list[dict[str, Any]]:
    """Overdue invoice objects in Lago's listing shape, from the sandbox's data generator."""
    from sandbox.generator import GeneratorSpec
    from sandbox.state import build_dataset_from
    from sandbox.store import Store

    today = datetime.now(UTC).date()
    store = Store(build_dataset_from(GeneratorSpec(customers=BASE_CUSTOMERS), today))
    rows = [store.invoice_object(store.invoices[lago_id]) for lago_id in store.ordered_ids]
    return [
        row
        for row in rows
        if row["status"] == "finalized"
        and row["payment_overdue"]
        and row["payment_status"] in ("pending", "failed")
        and not row["self_billed"]
    ]


def page_bodies(total: int, base: list[dict[str, Any]]) -> Iterator[bytes]:
    """`total` invoices as JSON page bodies; each round of the base set gets new customers."""
    pages = (total + PER_PAGE - 1) // PER_PAGE
    produced = 0
    for page in range(1, pages + 1):
        rows = []
        for _ in range(min(PER_PAGE, total - produced)):
            round_, index = divmod(produced, len(base))
            template = base[index]
            customer = {
                **template["customer"],
                "external_id": f"{template['customer']['external_id']}-r{round_}",
            }
            rows.append({**template, "lago_id": f"inv-{produced:09d}", "customer": customer})
            produced += 1
        meta = {
            "current_page": page,
            "next_page": page + 1 if page < pages else None,
            "prev_page": page - 1 if page > 1 else None,
            "total_pages": pages,
            "total_count": total,
        }
        yield json.dumps({"invoices": rows, "meta": meta}).encode()


def run(total: int) -> dict[str, Any]:
    from bench.policy_file import policy_yaml
    from config.policies import parse_policies
    from worker.lago.models import Invoice, MalformedRecord
    from worker.lago.parsing import decode_json, parse_page_lenient
    from worker.policy import decide
    from worker.policy.types import GroupState
    from worker.services.collect_groups import collect_groups

    base = base_invoices()
    policies = parse_policies(policy_yaml(), source="bench-policies.yaml")
    baseline = _rss_mb()
    started = time.perf_counter()

    def stream() -> Iterator[Invoice | MalformedRecord]:
        endpoint = "GET /api/v1/invoices"
        for number, body in enumerate(page_bodies(total, base), start=1):
            decoded = decode_json(body, endpoint=endpoint)
            page = parse_page_lenient(decoded, "invoices", Invoice, endpoint=endpoint, page=number)
            yield from page.items

    now = datetime.now(UTC)
    state = GroupState()  # never dunned: every group gets a full decision
    decisions = 0
    # As the sweep does: groups come back from the spool one at a time and each decision is
    # handed on (the sweep writes them in batches), not kept.
    with collect_groups(stream(), now=now) as collected:
        for group in collected.iter_groups():
            decide(policies, group, state, now)
            decisions += 1
        invoices_seen, groups = collected.invoices_seen, collected.group_count
    return {
        "invoices": invoices_seen,
        "groups": groups,
        "decisions": decisions,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_worker")
    parser.add_argument("--invoices", type=int, required=True)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    text = json.dumps(run(args.invoices))
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
