"""How `dunning plan --diff` prints: the changed groups, then totals per change."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from worker.cli.common import out
from worker.services.plan_diff import CHANGES, PlanDiff, Side

MAX_ROWS = 200


def _money(amounts: Counter[str]) -> str:
    parts = [f"{cents / 100:,.2f} {currency}" for currency, cents in sorted(amounts.items())]
    return ", ".join(parts) or "-"


def _side(side: Side) -> str:
    policy = side.policy or "-"
    if side.policy_version:
        policy += f" v{side.policy_version}"
    when = side.next_eligible_at.isoformat(timespec="minutes") if side.next_eligible_at else ""
    return " ".join(filter(None, [policy, side.kind, side.reason, when]))


def print_diff(result: PlanDiff, *, current: str, candidate: str) -> None:
    table = Table(
        title=f"dunning plan --diff: {current} ({result.current_hash}) -> "
        f"{candidate} ({result.candidate_hash}) at {result.now.isoformat(timespec='minutes')}",
        title_justify="left",
    )
    for column in ("customer", "currency", "entity", "change", "now", "candidate"):
        table.add_column(column)
    for row in result.rows[:MAX_ROWS]:
        table.add_row(
            row.external_customer_id,
            row.currency,
            row.billing_entity_code or "-",
            row.change,
            _side(row.current),
            _side(row.candidate),
        )
    if result.rows:
        out.print(table)
    if len(result.rows) > MAX_ROWS:
        out.print(f"... and {len(result.rows) - MAX_ROWS} more (use --json for all)")
    totals = Table(title="Totals", title_justify="left")
    for column in ("change", "groups", "amount due"):
        totals.add_column(column)
    for change in CHANGES:
        totals.add_row(change, str(result.changes[change]), _money(result.amounts[change]))
    out.print(totals)
    out.print(
        f"{result.groups} groups compared, {len(result.rows)} changed; in dunning now "
        f"{_money(result.dunned_current)}; under the candidate {_money(result.dunned_candidate)}. "
        f"{result.api_calls} Lago API call(s), nothing written."
    )
