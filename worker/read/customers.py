"""One customer as the ledger knows them: search, and the timeline of everything done.

The ledger keeps external ids and the e-mail an intent was sent to, not Lago's customer
names: search matches those two (case-insensitive, anywhere in the text).

The timeline: the customer's groups (attempts used, last attempt, exhausted), whether they
are paused now, and every decision (with its reason), intent (status, attempt, Lago payment
request id, outcome) and operator action (who, when, why), newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, or_, select, union_all
from sqlalchemy.orm import Session

from worker.read.intents import IntentLine, intent_line
from worker.store.controls import get_control
from worker.store.decisions import latest_decisions_for_customer
from worker.store.models import (
    CustomerControl,
    DecisionRow,
    GroupStateRow,
    PaymentRequestIntent,
)
from worker.store.operator_actions import actions_for_customer

MAX_QUERY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class CustomerMatch:
    external_customer_id: str
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class GroupLine:
    currency: str
    billing_entity_code: str | None
    attempts_used: int
    last_attempt_at: datetime | None
    exhausted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str | None
    since: datetime
    until: datetime | None


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    kind: Literal["decision", "intent", "action"]
    title: str  # e.g. "skip: too_soon", "intent #12 sent", "pause by ana (console)"
    detail: str
    currency: str | None = None
    amount_cents: int | None = None
    intent_id: int | None = None


@dataclass(frozen=True, slots=True)
class CustomerTimeline:
    external_customer_id: str
    known: bool  # the ledger has anything at all about this customer
    groups: tuple[GroupLine, ...]
    paused: Pause | None
    intents: tuple[IntentLine, ...]
    events: tuple[TimelineEvent, ...]  # newest first


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def find_customers(session: Session, query: str, *, limit: int = 50) -> list[CustomerMatch]:
    """Customers whose external id or dunning e-mail contains `query`, most recent first."""
    pattern = _like(query.strip()[:MAX_QUERY_LENGTH])
    intent, decision = PaymentRequestIntent, DecisionRow
    seen = union_all(
        select(intent.external_customer_id.label("customer"), intent.updated_at.label("at")).where(
            or_(
                func.lower(intent.external_customer_id).like(pattern, escape="\\"),
                func.lower(intent.email).like(pattern, escape="\\"),
            )
        ),
        select(decision.external_customer_id, decision.decided_at).where(
            func.lower(decision.external_customer_id).like(pattern, escape="\\")
        ),
        select(CustomerControl.external_customer_id, CustomerControl.updated_at).where(
            func.lower(CustomerControl.external_customer_id).like(pattern, escape="\\")
        ),
    ).subquery()
    rows = session.execute(
        select(seen.c.customer, func.max(seen.c.at).label("last"))
        .group_by(seen.c.customer)
        .order_by(func.max(seen.c.at).desc(), seen.c.customer)
        .limit(limit)
    ).all()
    return [CustomerMatch(customer, last) for customer, last in rows]


def customer_timeline(
    session: Session, external_customer_id: str, *, now: datetime, limit: int = 200
) -> CustomerTimeline:
    customer = external_customer_id
    groups = session.scalars(
        select(GroupStateRow)
        .where(GroupStateRow.external_customer_id == customer)
        .order_by(GroupStateRow.currency, GroupStateRow.billing_entity_code)
    ).all()
    intents = session.scalars(
        select(PaymentRequestIntent)
        .where(PaymentRequestIntent.external_customer_id == customer)
        .order_by(PaymentRequestIntent.created_at.desc(), PaymentRequestIntent.id.desc())
        .limit(limit)
    ).all()
    decisions = latest_decisions_for_customer(session, external_customer_id=customer, limit=limit)
    actions = actions_for_customer(session, external_customer_id=customer, limit=limit)
    control = get_control(session, external_customer_id=customer)
    paused = None
    if (
        control is not None
        and control.paused
        and (control.paused_until is None or control.paused_until > now)
    ):
        paused = Pause(control.reason, control.updated_at, control.paused_until)
    events = [
        *(_decision_event(row) for row in decisions),
        *(event for row in intents for event in _intent_events(row)),
        *(
            TimelineEvent(
                at=row.at,
                kind="action",
                title=f"{row.action} by {row.actor} ({row.source})",
                detail=" · ".join(filter(None, [row.reason and f"why: {row.reason}", row.detail])),
                intent_id=row.intent_id,
            )
            for row in actions
        ),
    ]
    # Newest first; at the same instant the later step first (sent after created).
    ordered = [
        event for _, event in sorted(enumerate(events), key=lambda p: (p[1].at, p[0]), reverse=True)
    ]
    return CustomerTimeline(
        external_customer_id=customer,
        known=bool(groups or intents or decisions or actions or control),
        groups=tuple(
            GroupLine(
                row.currency,
                row.billing_entity_code,
                row.attempts_used,
                row.last_attempt_at,
                row.exhausted_at,
            )
            for row in groups
        ),
        paused=paused,
        intents=tuple(intent_line(row) for row in intents),
        events=tuple(ordered[:limit]),
    )


def _decision_event(row: DecisionRow) -> TimelineEvent:
    policy = f" · policy {row.policy}" if row.policy else ""
    run = f"sweep #{row.run_id}" if row.run_id is not None else "sweep"
    return TimelineEvent(
        at=row.decided_at,
        kind="decision",
        title=f"{row.kind}: {row.reason}",
        detail=f"{run}{policy}" + (f" · {row.detail}" if row.detail else ""),
        currency=row.currency,
        amount_cents=row.amount_cents,
        intent_id=row.intent_id,
    )


def _intent_events(row: PaymentRequestIntent) -> list[TimelineEvent]:
    """Created; sent (with Lago's id); settled (the outcome): each at its own time."""
    base = f"intent #{row.id} (attempt {row.attempt_number})"
    error = " ".join(filter(None, [row.last_error_code, row.last_error]))
    steps = [
        (
            row.created_at,
            "created",
            f"{len(row.invoice_ids)} invoice(s) · now {row.status}"
            + (f" · {error}" if error else ""),
            row.amount_cents,
        )
    ]
    if row.sent_at is not None:
        lago_id = row.lago_payment_request_id or "-"
        steps.append((row.sent_at, row.status, f"Lago payment request {lago_id}", row.amount_cents))
    if row.outcome is not None and row.resolved_at is not None:
        steps.append(
            (
                row.resolved_at,
                f"outcome: {row.outcome}",
                "recovered after the request",
                row.recovered_cents or 0,
            )
        )
    return [
        TimelineEvent(
            at=at,
            kind="intent",
            title=f"{base} {what}",
            detail=detail,
            currency=row.currency,
            amount_cents=amount,
            intent_id=row.id,
        )
        for at, what, detail, amount in steps
    ]
