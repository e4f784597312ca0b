"""When to look again at the outcome of a sent or adopted payment request.

One row per intent that reconciliation has looked at (no row = never checked, due at once).
`next_check_at` NULL means "no more checks": the outcome is final or a newer attempt for the
same group took over. Kept in its own table so outcome tracking evolves without touching the
intent rows the sweep writes under its lease.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.store._dialect import insert_for
from worker.store.models import Base
from worker.store.types import BigIntPK


class IntentOutcomeCheck(Base):
    __tablename__ = "intent_outcome_checks"
    __table_args__ = (Index("ix_intent_outcome_checks_next_check_at", "next_check_at"),)

    intent_id: Mapped[int] = mapped_column(
        BigIntPK,
        ForeignKey("payment_request_intents.id", ondelete="CASCADE"),
        primary_key=True,
    )
    next_check_at: Mapped[datetime | None]
    checks: Mapped[int] = mapped_column(Integer, default=0)
    last_checked_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))


def schedule_check(
    session: Session,
    intent_id: int,
    *,
    next_check_at: datetime | None,
    checked_at: datetime | None,
    error: str | None = None,
) -> None:
    """Upsert the intent's check row. `checked_at` set = one more check was done now."""
    values: dict[str, Any] = {"next_check_at": next_check_at, "last_error": error}
    if checked_at is not None:
        values["last_checked_at"] = checked_at
    increment = 1 if checked_at is not None else 0
    statement = (
        insert_for(session, IntentOutcomeCheck)
        .values(intent_id=intent_id, checks=increment, **values)
        .on_conflict_do_update(
            index_elements=["intent_id"],
            set_={**values, "checks": IntentOutcomeCheck.checks + increment},
        )
    )
    session.execute(statement)


def checks_done(session: Session, intent_id: int) -> int:
    row = session.get(IntentOutcomeCheck, intent_id)
    return 0 if row is None else row.checks
