"""Many new intent rows in one statement, skipping those a unique index refuses.

SQLite: one multi-row `INSERT ... VALUES ... ON CONFLICT DO NOTHING RETURNING`.

PostgreSQL: `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING`, one
array parameter per varying column. A multi-row VALUES statement has a different text for
every number of rows and is thousands of characters long, so the driver parses it again each
time (psycopg caches only statements up to 4 KB): a third of the decide phase's CPU at 10k
invoices. The unnest statement is one short text whatever the number of rows: parsed once,
and prepared by the server after a few runs.

Either way a row is skipped (no error) when its dedupe key exists or its group already has an
open intent: `ON CONFLICT DO NOTHING` names no constraint, so every unique index counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, text
from sqlalchemy.orm import Session

from worker.store._dialect import insert_for
from worker.store.models import PaymentRequestIntent as Intent
from worker.store.types import UTCDateTime

_TABLE = cast("Table", Intent.__table__)

#: The columns that differ from row to row, with their PostgreSQL array type.
VARYING: dict[str, str] = {
    "external_customer_id": "text[]",
    "currency": "text[]",
    "billing_entity_code": "text[]",
    "group_key": "text[]",
    "invoice_ids": "text[]",  # JSON text, cast to jsonb per row
    "amount_cents": "bigint[]",
    "email": "text[]",
    "channel": "text[]",
    "policy": "text[]",
    "policy_version": "text[]",
    "policy_hash": "text[]",
    "attempt_number": "integer[]",
    "dedupe_key": "text[]",
}


def insert_intents(
    session: Session,
    *,
    run_id: int | None,
    rows: Sequence[dict[str, Any]],
    next_attempt_at: datetime,
    now: datetime,
) -> dict[str, int]:
    """Insert pending intents (`rows` hold the `VARYING` columns); {dedupe_key: id} of those
    inserted."""
    if not rows:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        params: dict[str, Any] = {
            name: [row[name] for row in rows] for name in VARYING if name != "invoice_ids"
        }
        params["invoice_ids"] = [json.dumps(row["invoice_ids"]) for row in rows]
        params.update(run_id=run_id, next_attempt_at=next_attempt_at, now=now)
        inserted = session.execute(_unnest_statement(), params).all()
    else:
        shared = {
            "run_id": run_id,
            "status": "pending",
            "tries": 0,
            "ambiguous_tries": 0,
            "next_attempt_at": next_attempt_at,
            "created_at": now,
            "updated_at": now,
        }
        statement = (
            insert_for(session, _TABLE)
            .on_conflict_do_nothing()
            .returning(_TABLE.c.dedupe_key, _TABLE.c.id)
        )
        inserted = session.execute(statement, [{**row, **shared} for row in rows]).all()
    return {str(key): int(intent_id) for key, intent_id in inserted}


@cache
def _unnest_statement() -> Any:
    varying = list(VARYING)
    picked = [
        f"CAST(v.{name} AS jsonb)" if name == "invoice_ids" else f"v.{name}" for name in varying
    ]
    arrays = [f"CAST(:{name} AS {array})" for name, array in VARYING.items()]
    # Every name in the text comes from the constants above: no value is ever formatted in.
    sql = (
        f"INSERT INTO {_TABLE.name} ({', '.join(varying)}, run_id, status, tries, "  # noqa: S608
        "ambiguous_tries, next_attempt_at, created_at, updated_at) "
        f"SELECT {', '.join(picked)}, CAST(:run_id AS bigint), 'pending', 0, 0, "
        ":next_attempt_at, :now, :now "
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(varying)}) "
        "ON CONFLICT DO NOTHING RETURNING dedupe_key, id"
    )
    return text(sql).bindparams(
        bindparam("next_attempt_at", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime())
    )
