"""Backtests: replay a policy over billing history, deciding at each tick as of that instant.

Pure: the history and the ticks are given. At each tick the invoices overdue at that instant
(issued, past their due date, not yet paid or voided, with what was still due then) form the
groups; each group is decided by `decide()` with the state the simulation built (attempts,
last touch, the customer's recent touches for contact caps). A touch is a payment request the
policy would have made. A group's cycle starts over once every invoice of its last touch is
settled and one was paid (the rule reconciliation applies to real requests).

Only groups whose facts changed since their last decision (an invoice became overdue, was
paid in part or in full, or voided) or whose `next_eligible_at` has come are decided again:
`decide()` promises nothing changes for a group before then, so this is the same as deciding
every group at every tick, in far less time.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from config.policies import PolicySet
from worker.policy.decide import decide
from worker.policy.types import (
    CustomerFacts,
    DecisionKind,
    Group,
    GroupState,
    InvoiceFacts,
    Reason,
    group_key,
)


@dataclass(frozen=True, slots=True)
class HistoricalInvoice:
    """One invoice of the history. `payments` are (instant, cents) in time order; `paid_at` is
    when it was settled in full (None if never), `voided_at` when voided."""

    lago_id: str
    number: str
    customer: CustomerFacts
    currency: str
    billing_entity_code: str | None
    payment_due_date: date
    issued_at: datetime
    due_cents: int  # what was owed before any payment (total net of credit notes)
    payments: tuple[tuple[datetime, int], ...] = ()
    paid_at: datetime | None = None
    voided_at: datetime | None = None

    @property
    def overdue_from(self) -> datetime:
        """Lago flags an invoice overdue once its due date has passed (UTC)."""
        start = datetime.combine(self.payment_due_date + timedelta(days=1), time(0), tzinfo=UTC)
        return max(start, self.issued_at)

    @property
    def left_at(self) -> datetime | None:
        ends = [moment for moment in (self.paid_at, self.voided_at) if moment is not None]
        return min(ends) if ends else None

    @property
    def key(self) -> str:
        return group_key(self.customer.external_id, self.currency, self.billing_entity_code)

    def overdue_at(self, moment: datetime) -> bool:
        left = self.left_at
        return self.overdue_from <= moment and (left is None or moment < left)

    def due_at(self, moment: datetime) -> int:
        return self.due_cents - sum(cents for at, cents in self.payments if at <= moment)


@dataclass(frozen=True, slots=True)
class Touch:
    """A payment request the replayed policy would have made."""

    at: datetime
    group_key: str
    external_customer_id: str
    currency: str
    invoice_ids: tuple[str, ...]
    amount_cents: int
    attempt_number: int


@dataclass(slots=True)
class _GroupSim:
    invoices: list[HistoricalInvoice] = field(default_factory=list)
    attempts: int = 0
    last_at: datetime | None = None
    exhausted: bool = False
    last_touch: Touch | None = None
    due_at: datetime | None = None  # the pending `next_eligible_at` in the heap, if any


@dataclass(slots=True)
class Replay:
    touches: list[Touch] = field(default_factory=list)
    held_out_groups: set[str] = field(default_factory=set)
    decisions: int = 0


def _event_times(invoice: HistoricalInvoice) -> list[datetime]:
    times = [invoice.overdue_from, *(at for at, _ in invoice.payments)]
    if invoice.left_at is not None:
        times.append(invoice.left_at)
    return times


def replay(
    policies: PolicySet, invoices: Iterable[HistoricalInvoice], ticks: Sequence[datetime]
) -> Replay:
    """Decide at each of `ticks` (ascending, aware) as a sweep would have; see the module doc."""
    groups: dict[str, _GroupSim] = defaultdict(_GroupSim)
    events: list[tuple[datetime, str]] = []
    for invoice in invoices:
        groups[invoice.key].invoices.append(invoice)
        events.extend((moment, invoice.key) for moment in _event_times(invoice))
    events.sort()
    contacts: dict[str, list[datetime]] = defaultdict(list)
    waiting: list[tuple[datetime, str]] = []
    result = Replay()
    cursor = 0
    for tick in ticks:
        dirty: set[str] = set()
        while cursor < len(events) and events[cursor][0] <= tick:
            dirty.add(events[cursor][1])
            cursor += 1
        while waiting and waiting[0][0] <= tick:
            moment, key = heapq.heappop(waiting)
            if groups[key].due_at == moment:
                dirty.add(key)
        for key in sorted(dirty):
            _decide_group(policies, key, groups[key], tick, contacts, waiting, result)
    return result


def _settled_and_paid(touch: Touch, invoices: Sequence[HistoricalInvoice], at: datetime) -> bool:
    mine = [invoice for invoice in invoices if invoice.lago_id in touch.invoice_ids]
    settled = all(invoice.left_at is not None and invoice.left_at <= at for invoice in mine)
    return settled and any(i.paid_at is not None and i.paid_at <= at for i in mine)


def _decide_group(
    policies: PolicySet,
    key: str,
    sim: _GroupSim,
    tick: datetime,
    contacts: dict[str, list[datetime]],
    waiting: list[tuple[datetime, str]],
    result: Replay,
) -> None:
    if sim.last_touch is not None and _settled_and_paid(sim.last_touch, sim.invoices, tick):
        sim.attempts, sim.last_at, sim.exhausted, sim.last_touch = 0, None, False, None
    open_now = [invoice for invoice in sim.invoices if invoice.overdue_at(tick)]
    sim.due_at = None
    if not open_now:
        return
    first = open_now[0]
    group = Group(
        customer=first.customer,
        currency=first.currency,
        billing_entity_code=first.billing_entity_code,
        invoices=tuple(
            InvoiceFacts(
                lago_id=invoice.lago_id,
                number=invoice.number,
                currency=invoice.currency,
                payment_due_date=invoice.payment_due_date,
                total_due_amount_cents=invoice.due_at(tick),
                total_amount_cents=invoice.due_cents,
            )
            for invoice in open_now
        ),
    )
    customer = first.customer.external_id
    for _ in range(2):  # decide; after a touch, once more to learn the next time
        state = GroupState(
            attempts_used=sim.attempts,
            last_attempt_at=sim.last_at,
            exhaustion_handled=sim.exhausted,
            recent_contacts=tuple(contacts[customer]),
        )
        decision = decide(policies, group, state, tick)
        result.decisions += 1
        if decision.reason is Reason.HOLDOUT:
            result.held_out_groups.add(key)
        if decision.kind is DecisionKind.EXHAUSTED:
            sim.exhausted = True
            return
        if decision.kind is not DecisionKind.ATTEMPT:
            if decision.kind is DecisionKind.WAIT and decision.next_eligible_at is not None:
                sim.due_at = decision.next_eligible_at
                heapq.heappush(waiting, (decision.next_eligible_at, key))
            return
        touch = Touch(
            at=tick,
            group_key=key,
            external_customer_id=customer,
            currency=group.currency,
            invoice_ids=group.invoice_ids,
            amount_cents=group.overdue_amount_cents,
            attempt_number=decision.attempt_number or sim.attempts + 1,
        )
        result.touches.append(touch)
        contacts[customer].append(tick)
        sim.attempts, sim.last_at, sim.last_touch = sim.attempts + 1, tick, touch
