"""Small SQL helpers shared by `intents` (add, claim, read), `intent_results` (record) and
`channel_intents`: the lease condition every write after a claim applies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, and_, literal, update
from sqlalchemy.orm import Session

from worker.store.models import PaymentRequestIntent as Intent
from worker.store.types import UTCDateTime

_T = TypeVar("_T")
TABLE = cast("Table", Intent.__table__)
IN_CHUNK = 500  # bound IN (...) lists: SQLite's variable limit and query plans
CASE_CHUNK = 100  # rows per multi-row UPDATE ... CASE (a send turn records far fewer)


def utc(value: datetime) -> Any:
    return literal(value, type_=UTCDateTime())


def chunks(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def one_line(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split())[:1000]


def leased(intent_id: int, owner: str) -> Any:
    return and_(Intent.id == intent_id, Intent.status == "sending", Intent.lease_owner == owner)


def update_leased(session: Session, intent_id: int, owner: str, **values: Any) -> bool:
    result = session.execute(
        update(Intent)
        .where(leased(intent_id, owner))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def release(now: datetime) -> dict[str, Any]:
    return {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
