"""Settle holdout entries the way sent intents are settled, so the report compares like
with like: an entry whose invoices all still show in the sweep's overdue listing is open (no
API call); otherwise its invoices are confirmed with `GET /invoices/{id}` and judged by
`assess_outcome` (paid, partially paid, voided, ...). At most `limit` GETs per pass.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from worker.logging import get_logger
from worker.policy.types import Decision, DecisionKind, Group, Reason
from worker.services.reconcile_outcomes import InvoiceLookupError, assess_outcome, fetch_invoices
from worker.services.runtime import Runtime
from worker.store import holdouts
from worker.store.db import read_session, write_tx

log = get_logger(__name__)
DEFAULT_LIMIT = 50


def new_holdout(group: Group, decision: Decision) -> holdouts.NewHoldout | None:
    """The entry a holdout decision opens (None for any other decision)."""
    if decision.kind is not DecisionKind.SKIP or decision.reason is not Reason.HOLDOUT:
        return None
    return holdouts.NewHoldout(
        external_customer_id=group.customer.external_id,
        currency=group.currency,
        billing_entity_code=group.billing_entity_code,
        policy=decision.policy,
        policy_version=decision.policy_version,
        policy_hash=decision.policy_hash,
        invoice_ids=group.invoice_ids,
        amount_cents=group.overdue_amount_cents,
    )


@dataclass(slots=True)
class HoldoutCheck:
    still_overdue: int = 0
    confirmed: int = 0
    settled: int = 0
    errors: int = 0


def reconcile_holdouts(
    rt: Runtime,
    *,
    now: datetime,
    still_overdue: AbstractSet[str],
    limit: int = DEFAULT_LIMIT,
) -> HoldoutCheck:
    summary = HoldoutCheck()
    with read_session(rt.engine) as session:
        entries = [
            (row.id, tuple(row.invoice_ids), row.amount_cents)
            for row in holdouts.open_entries(session, limit=limit * 20)
        ]
    listed = [entry_id for entry_id, ids, _ in entries if set(ids) <= still_overdue]
    if listed:
        with write_tx(rt.engine) as session:
            holdouts.note_checked(session, entry_ids=listed, now=now)
    summary.still_overdue = len(listed)
    skip = set(listed)
    to_confirm = [entry for entry in entries if entry[0] not in skip][:limit]
    for entry_id, invoice_ids, amount in to_confirm:
        try:
            found = fetch_invoices(rt, invoice_ids)
        except InvoiceLookupError as exc:
            summary.errors += 1
            log.warning("holdout check failed", entry_id=entry_id, error=str(exc))
            continue
        assessment = assess_outcome(amount, [found[i] for i in invoice_ids])
        with write_tx(rt.engine) as session:
            holdouts.record_holdout_outcome(
                session,
                entry_id=entry_id,
                outcome=assessment.outcome,
                recovered_cents=assessment.recovered_cents,
                final=assessment.final,
                now=now,
            )
        summary.confirmed += 1
        summary.settled += int(assessment.final)
    return summary
