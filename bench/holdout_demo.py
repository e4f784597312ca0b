"""A holdout experiment on the sandbox, day by day, to see `dunning report` compare the arms.

    python -m bench.holdout_demo --lago-url http://127.0.0.1:PORT --data-dir DIR \
        --policy POLICY.yaml [--days 21] [--seed 1]

Each simulated day: one sweep (requests for the dunned arm, holdout decisions for the other),
then customers pay their overdue invoices at random: a customer who got a payment request pays
with probability `--dunned-rate` per day, any other with `--base-rate` (what dunning adds is
the difference the report should find), then reconciliation settles both arms. Afterwards run
`dunning report` on the same database. The simulated clock moves a day per step; the sandbox
stamps payments with the real time. Uses the sandbox's control plane for the payers' side.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from config import load_settings
from worker.services.reconcile_holdouts import reconcile_holdouts
from worker.services.reconcile_outcomes import reconcile_outcomes
from worker.services.runtime import open_runtime
from worker.services.sweep import run_sweep
from worker.store.migrate import upgrade


class Clock:
    """Real time plus an offset the demo moves a day at a time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, *, days: float) -> None:
        self.offset += timedelta(days=days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lago-url", required=True)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dunned-rate", type=float, default=0.08)
    parser.add_argument("--base-rate", type=float, default=0.04)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        data_dir=args.data_dir,
        lago_api_url=args.lago_url,
        lago_api_key=args.api_key,
        policy_file=args.policy,
        rate_limit_rps=0,
    )
    upgrade(settings.resolved_database_url)
    clock = Clock()
    rng = random.Random(args.seed)
    lago = httpx.Client(
        base_url=args.lago_url, headers={"Authorization": f"Bearer {args.api_key}"}, timeout=60
    )
    runtime = open_runtime(settings, clock=clock)
    try:
        for day in range(args.days):
            summary = run_sweep(runtime, trigger="cli")
            paid = _pay(lago, rng, args.dunned_rate, args.base_rate)
            clock.advance(days=1)
            reconcile_outcomes(runtime, limit=5000)
            reconcile_holdouts(runtime, now=clock(), still_overdue=frozenset(), limit=5000)
            print(
                f"day {day + 1:2d}: requests {summary.requests_created:4d}, "
                f"holdout decisions {summary.decisions.get('holdout', 0):4d}, "
                f"customers paying {paid:4d}"
            )
    finally:
        runtime.close()
        lago.close()


def _pay(lago: httpx.Client, rng: random.Random, dunned_rate: float, base_rate: float) -> int:
    asked = {
        request["external_customer_id"]
        for request in lago.get("/_sandbox/payment_requests").json()["payment_requests"]
    }
    overdue: dict[str, list[dict[str, object]]] = {}
    for invoice in lago.get("/_sandbox/invoices").json()["invoices"]:
        if invoice["payment_overdue"] and invoice["total_due_amount_cents"] > 0:
            overdue.setdefault(invoice["customer"]["external_id"], []).append(invoice)
    payers = [
        customer
        for customer in sorted(overdue)
        if rng.random() < (dunned_rate if customer in asked else base_rate)
    ]
    for customer in payers:
        for invoice in overdue[customer]:
            lago.post(
                "/api/v1/payments",
                json={
                    "payment": {
                        "invoice_id": invoice["lago_id"],
                        "amount_cents": invoice["total_due_amount_cents"],
                        "reference": "holdout demo",
                    }
                },
            ).raise_for_status()
    return len(payers)


if __name__ == "__main__":
    main()
