"""Record what a sweep's listing showed as overdue (per currency and ageing bucket).

Only a sweep that read the WHOLE overdue listing records one: a `--customer` sweep sees one
customer and would make the company look nearly paid up. `dunning report` shows the newest.
"""

from __future__ import annotations

from datetime import datetime

from worker.services.collect_groups import CollectedGroups
from worker.services.runtime import Runtime
from worker.store.ageing import record_snapshot
from worker.store.db import write_tx


def record_overdue_snapshot(
    rt: Runtime,
    collected: CollectedGroups,
    *,
    run_id: int | None,
    now: datetime,
    customer: str | None,
) -> bool:
    """Store the ageing of `collected` for run `run_id`; False when it does not apply (a dry
    run, or a sweep of one customer)."""
    if run_id is None or customer is not None:
        return False
    figures = collected.ageing(now.date())
    with write_tx(rt.engine) as session:
        record_snapshot(
            session, run_id=run_id, taken_at=rt.clock(), as_of=now.date(), figures=figures
        )
    return True
