"""`dunning plan --diff CANDIDATE`: what a policy change would change, before it is made.

One overdue listing, one read of the ledger facts, the same clock; every group is decided
under the current file and under the candidate. Nothing is written. A group is *dunned* when
its decision keeps it in dunning (ATTEMPT now, or WAIT for a time, an open request, a hold or
a contact cap); SKIP and EXHAUSTED are not dunned. Each changed group falls in the first of:

- start:     not dunned now, dunned under the candidate;
- stop:      dunned now, not under the candidate;
- policy:    dunned by both, under another policy (a new `version` of the same policy is
             not a change by itself: the header shows both files' versions);
- next_time: dunned by both, with a different next attempt time;
- amount:    dunned by both, asking a different amount.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from config.policies import PolicySet
from worker.lago.filters import InvoiceFilters
from worker.policy.types import Decision, DecisionKind, Group
from worker.services.collect_groups import collect_groups
from worker.services.group_facts import decide_groups
from worker.services.requested_elsewhere import requested_elsewhere
from worker.services.runtime import Runtime

CHANGES = ("start", "stop", "policy", "next_time", "amount")
_DUNNED = (DecisionKind.ATTEMPT, DecisionKind.WAIT)


@dataclass(frozen=True, slots=True)
class Side:
    policy: str | None
    policy_version: str | None
    kind: str
    reason: str
    next_eligible_at: datetime | None
    dunned: bool
    amount_cents: int  # what this side keeps in dunning for the group (0 when not dunned)

    @classmethod
    def of(cls, group: Group, decision: Decision) -> Side:
        dunned = decision.kind in _DUNNED
        return cls(
            policy=decision.policy,
            policy_version=decision.policy_version,
            kind=decision.kind.value,
            reason=decision.reason.value,
            next_eligible_at=decision.next_eligible_at,
            dunned=dunned,
            amount_cents=group.overdue_amount_cents if dunned else 0,
        )


@dataclass(frozen=True, slots=True)
class DiffRow:
    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    change: str
    current: Side
    candidate: Side


def classify(current: Side, candidate: Side) -> str | None:
    """The change from `current` to `candidate` (see the module docstring), or None."""
    if not current.dunned and candidate.dunned:
        return "start"
    if current.dunned and not candidate.dunned:
        return "stop"
    if not current.dunned:
        return None
    if current.policy != candidate.policy:
        return "policy"
    if current.next_eligible_at != candidate.next_eligible_at:
        return "next_time"
    if current.amount_cents != candidate.amount_cents:
        return "amount"
    return None


@dataclass(slots=True)
class PlanDiff:
    current_hash: str
    candidate_hash: str
    now: datetime
    groups: int = 0
    invoices_seen: int = 0
    api_calls: int = 0
    rows: list[DiffRow] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)
    # {change: {currency: cents}}: the amount the changed groups have due.
    amounts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # {currency: cents} kept in dunning, under each file.
    dunned_current: Counter[str] = field(default_factory=Counter)
    dunned_candidate: Counter[str] = field(default_factory=Counter)

    def add(self, group: Group, current: Side, candidate: Side) -> None:
        self.groups += 1
        self.dunned_current[group.currency] += current.amount_cents
        self.dunned_candidate[group.currency] += candidate.amount_cents
        change = classify(current, candidate)
        if change is None:
            return
        self.changes[change] += 1
        self.amounts[change][group.currency] += group.overdue_amount_cents
        self.rows.append(
            DiffRow(
                external_customer_id=group.customer.external_id,
                currency=group.currency,
                billing_entity_code=group.billing_entity_code,
                change=change,
                current=current,
                candidate=candidate,
            )
        )

    def to_json(self) -> dict[str, object]:
        def side(value: Side) -> dict[str, object]:
            return {
                "policy": value.policy,
                "policy_version": value.policy_version,
                "decision": value.kind,
                "reason": value.reason,
                "next_eligible_at": (
                    value.next_eligible_at.isoformat() if value.next_eligible_at else None
                ),
                "dunned": value.dunned,
                "amount_cents": value.amount_cents,
            }

        return {
            "now": self.now.isoformat(),
            "current_policy_file": self.current_hash,
            "candidate_policy_file": self.candidate_hash,
            "groups": self.groups,
            "invoices_seen": self.invoices_seen,
            "api_calls": self.api_calls,
            "changes": {name: self.changes[name] for name in CHANGES},
            "changed_amount_cents": {
                name: dict(sorted(self.amounts[name].items())) for name in CHANGES
            },
            "dunned_amount_cents": {
                "current": dict(sorted(self.dunned_current.items())),
                "candidate": dict(sorted(self.dunned_candidate.items())),
            },
            "rows": [
                {
                    "external_customer_id": row.external_customer_id,
                    "currency": row.currency,
                    "billing_entity_code": row.billing_entity_code,
                    "change": row.change,
                    "current": side(row.current),
                    "candidate": side(row.candidate),
                }
                for row in self.rows
            ],
        }


def plan_diff(
    rt: Runtime, candidate: PolicySet, *, now: datetime | None = None, customer: str | None = None
) -> PlanDiff:
    """Decide every overdue group under the runtime's policies and under `candidate`."""
    now = now or rt.clock()
    calls_before = rt.client.calls_total()
    result = PlanDiff(
        current_hash=rt.policies.version_hash, candidate_hash=candidate.version_hash, now=now
    )
    filters = (
        InvoiceFilters.overdue(external_customer_id=customer)
        if customer
        else InvoiceFilters.overdue()
    )
    elsewhere = requested_elsewhere(rt, customer=customer, now=now)
    with collect_groups(
        rt.client.iter_invoices(filters),
        now=now,
        customer=customer,
        requested_elsewhere=elsewhere.covered,
    ) as collected:
        result.invoices_seen = collected.invoices_seen
        decided = decide_groups(rt.engine, collected.iter_groups(), now, (rt.policies, candidate))
        for group, (current, proposed) in decided:
            result.add(group, Side.of(group, current), Side.of(group, proposed))
    result.api_calls = rt.client.calls_total() - calls_before
    return result
