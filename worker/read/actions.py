"""Who needs a human: the action list of `dunning status` and `dunning report`.

- needs_review: too many unknown outcomes; someone checks Lago, then `dunning retry`;
- blocked: Lago refused for lack of the premium licence;
- refused: Lago said no for good (the newest intent of its group only: a later attempt
  supersedes it), with Lago's code;
- paused: customers an operator paused, with what they owe per currency;
- exhausted: groups whose attempts are used up and that still owe money.
Amounts owed by paused and exhausted groups come from the newest full sweep's decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from worker.read.intents import IntentLine, intent_line, intents_with_status, paused_customers
from worker.store.ageing import latest_full_run_id
from worker.store.models import DecisionRow, PaymentRequestIntent

ActionKind = Literal["needs_review", "blocked", "refused", "paused", "exhausted"]
ACTION_KINDS: tuple[ActionKind, ...] = (
    "needs_review",
    "blocked",
    "refused",
    "paused",
    "exhausted",
)


@dataclass(frozen=True, slots=True)
class ActionItem:
    kind: ActionKind
    external_customer_id: str
    currency: str | None
    amount_cents: int | None
    since: datetime | None
    detail: str
    intent_id: int | None = None
    policy: str | None = None


def action_list(session: Session, *, now: datetime, limit: int = 200) -> list[ActionItem]:
    """Every item at `now`, grouped by kind in `ACTION_KINDS` order (at most `limit` per kind)."""
    return [
        *_intents(session, "needs_review", limit),
        *_intents(session, "blocked", limit),
        *_refused(session, limit),
        *_paused(session, limit, now),
        *_exhausted(session, limit),
    ]


def _item(kind: ActionKind, line: IntentLine) -> ActionItem:
    return ActionItem(
        kind=kind,
        external_customer_id=line.external_customer_id,
        currency=line.currency,
        amount_cents=line.amount_cents,
        since=line.updated_at,
        detail=line.reason or "",
        intent_id=line.id,
        policy=line.policy,
    )


def _intents(session: Session, kind: ActionKind, limit: int) -> list[ActionItem]:
    return [_item(kind, line) for line in intents_with_status(session, kind, limit=limit)]


def _refused(session: Session, limit: int) -> list[ActionItem]:
    newer = aliased(PaymentRequestIntent)
    intent = PaymentRequestIntent
    superseded = (
        select(newer.id).where(newer.group_key == intent.group_key, newer.id > intent.id).exists()
    )
    rows = session.scalars(
        select(intent)
        .where(intent.status == "refused", ~superseded)
        .order_by(intent.updated_at.desc(), intent.id.desc())
        .limit(limit)
    ).all()
    return [_item("refused", intent_line(row)) for row in rows]


def _decisions(
    session: Session, *, run_id: int | None, **where: tuple[str, ...]
) -> list[DecisionRow]:
    if run_id is None:
        return []
    statement = select(DecisionRow).where(DecisionRow.run_id == run_id)
    for column, values in where.items():
        statement = statement.where(getattr(DecisionRow, column).in_(values))
    return list(
        session.scalars(
            statement.order_by(DecisionRow.external_customer_id, DecisionRow.currency)
        ).all()
    )


def _paused(session: Session, limit: int, now: datetime) -> list[ActionItem]:
    owed: dict[str, list[DecisionRow]] = {}
    held = ("paused", "on_hold_until")
    for row in _decisions(session, run_id=latest_full_run_id(session), reason=held):
        owed.setdefault(row.external_customer_id, []).append(row)
    items: list[ActionItem] = []
    for customer in paused_customers(session, now=now)[:limit]:
        groups: list[DecisionRow | None] = [*owed.get(customer.external_customer_id, [])]
        items.extend(
            ActionItem(
                kind="paused",
                external_customer_id=customer.external_customer_id,
                currency=group.currency if group else None,
                amount_cents=group.amount_cents if group else None,
                since=customer.since,
                detail=_hold(customer.reason, customer.until),
                policy=group.policy if group else None,
            )
            for group in groups or [None]
        )
    return items


def _hold(reason: str | None, until: datetime | None) -> str:
    ends = f"until {until.isoformat(timespec='minutes')}" if until else "until resumed"
    return f"{reason} ({ends})" if reason else ends


def _exhausted(session: Session, limit: int) -> list[ActionItem]:
    rows = _decisions(session, run_id=latest_full_run_id(session), kind=("exhausted",))[:limit]
    return [
        ActionItem(
            kind="exhausted",
            external_customer_id=row.external_customer_id,
            currency=row.currency,
            amount_cents=row.amount_cents,
            since=row.decided_at,
            detail=row.detail or "",
            policy=row.policy,
        )
        for row in rows
    ]
