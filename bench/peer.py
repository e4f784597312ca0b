"""The peer: what a user would write without this worker. A sequential cron-style script with the
official `lago-python-client` (bench-only dependency): list the overdue invoices with the same
filters, group them per customer/currency/billing entity, and create one payment request per
group, one call after the other.

    python -m bench.peer --lago-url URL [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import PaymentRequest

from bench.launch import own_peak_rss_mb

PER_PAGE = 100
OVERDUE_FILTERS: dict[str, Any] = {
    "status": "finalized",
    "payment_overdue": "true",
    # The client urlencodes lists as repeated keys: the `[]` must be in the name.
    "payment_status[]": ["pending", "failed"],
    "self_billed": "false",
    "per_page": PER_PAGE,
}


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def run_peer(lago_url: str, api_key: str) -> dict[str, Any]:
    client = Client(api_key=api_key, api_url=lago_url)
    started = time.perf_counter()
    groups: dict[tuple[str, str, str | None], list[str]] = defaultdict(list)
    emails: dict[str, str | None] = {}
    invoices_seen = 0
    page = 1
    while True:
        # The client's self-typed mixins confuse mypy on every call (an upstream typing quirk).
        result = client.invoices.find_all(options={**OVERDUE_FILTERS, "page": page})  # type: ignore[misc]
        invoices = result["invoices"]
        for invoice in invoices:
            invoices_seen += 1
            if (_field(invoice, "total_due_amount_cents") or 0) <= 0:
                continue
            customer = _field(invoice, "customer")
            external_id = _field(customer, "external_id")
            emails[external_id] = _field(customer, "email")
            key = (external_id, _field(invoice, "currency"), _field(invoice, "billing_entity_code"))
            groups[key].append(_field(invoice, "lago_id"))
        if len(invoices) < PER_PAGE:
            break
        page += 1
    created = 0
    failed = 0
    for (external_id, _currency, _entity), invoice_ids in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
    ):
        try:
            client.payment_requests.create(  # type: ignore[misc]
                PaymentRequest(
                    email=emails.get(external_id) or "",
                    external_customer_id=external_id,
                    lago_invoice_ids=invoice_ids,
                )
            )
            created += 1
        except Exception:
            failed += 1
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": wall,
        "invoices_seen": invoices_seen,
        "groups": len(groups),
        "payment_requests_created": created,
        "payment_requests_failed": failed,
        "list_pages": page,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": own_peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("--lago-url", required=True)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    result = run_peer(args.lago_url, args.api_key)
    text = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
