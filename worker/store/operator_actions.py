"""The ledger of operators' actions (pause, resume, retry). The caller owns the transaction.

`record_action` is called before the change it records, in the same transaction: a console
form's nonce is claimed first (UNIQUE), so a replayed form fails before it changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.store.models import OperatorAction

Source = Literal["cli", "console"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where; `form_nonce`: the console form's one-time token (None from
    the CLI)."""

    name: str
    source: Source
    form_nonce: str | None = None


class ReplayedFormError(Exception):
    """This form was already applied once (its one-time nonce is in the ledger)."""


def record_action(
    session: Session,
    actor: Actor,
    action: str,
    external_customer_id: str,
    *,
    at: datetime,
    reason: str | None = None,
    detail: str | None = None,
    intent_id: int | None = None,
) -> int:
    nonce = actor.form_nonce
    if nonce is not None and session.scalar(
        select(exists().where(OperatorAction.form_nonce == nonce))
    ):
        raise ReplayedFormError
    row = OperatorAction(
        at=at,
        actor=actor.name,
        source=actor.source,
        action=action,
        external_customer_id=external_customer_id,
        intent_id=intent_id,
        reason=reason,
        detail=detail,
        form_nonce=nonce,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # the same nonce, posted twice at the same instant
        raise ReplayedFormError from exc
    return row.id


def actions_for_customer(
    session: Session, *, external_customer_id: str, limit: int = 100
) -> Sequence[OperatorAction]:
    """Newest first."""
    return session.scalars(
        select(OperatorAction)
        .where(OperatorAction.external_customer_id == external_customer_id)
        .order_by(OperatorAction.at.desc(), OperatorAction.id.desc())
        .limit(limit)
    ).all()
