"""What a sweep reports: its counts (`SweepSummary`), the plan rows `dunning plan` shows, and
the progress a terminal is told."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from worker.policy.types import Decision, DecisionKind, Group, Reason
from worker.services.channels.base import PAYMENT_REQUEST, RETRY_AND_EMAIL
from worker.services.collect_groups import SkippedInvoices


class SweepProgress(Protocol):
    """What a terminal progress display gets told; the CLI implements it with rich."""

    def listed(self, invoices_seen: int) -> None: ...

    def sending(self, done: int, total: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One group's decision, as `dunning plan` shows it."""

    external_customer_id: str
    currency: str
    billing_entity_code: str | None
    amount_cents: int | None  # None: skipped invoices whose amount due is unknown
    invoice_count: int
    policy: str | None
    kind: str
    reason: str
    next_eligible_at: datetime | None
    detail: str


@dataclass(slots=True)
class SweepSummary:
    trigger: str
    dry_run: bool
    run_id: int | None = None
    slot: str | None = None
    slot_taken: bool = True
    invoices_seen: int = 0
    groups: int = 0
    malformed: int = 0
    #: Every invoice seen, by what became of it (eligible, a skip reason, malformed_record).
    invoices: Counter[str] = field(default_factory=Counter)
    #: Pending payment requests we did not make (they make groups wait: already_requested).
    requested_elsewhere: int = 0
    #: Decision rows recording skipped invoices (one per customer, currency, entity, reason).
    skip_summaries: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    intent_ids: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Sent intents by channel (payment_request, retry_and_email).
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    refused_codes: Counter[str] = field(default_factory=Counter)
    exhaustion_actions: int = 0
    api_calls: int = 0
    duration_s: float = 0.0
    blocked: str | None = None
    plan: list[PlanRow] = field(default_factory=list)
    #: False when the intents were handed to the send workers: this process sent nothing, so
    #: it cannot say how many payment requests were created (the workers' logs and the ledger do).
    sent_here: bool = True

    @property
    def requests_created(self) -> int:
        return self.outcomes["sent"]

    @property
    def skipped(self) -> int:
        return sum(count for reason, count in self.decisions.items() if reason != "eligible")

    @property
    def invoices_skipped(self) -> int:
        return self.invoices_seen - self.invoices[Reason.ELIGIBLE.value]

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "slot": self.slot,
            "slot_taken": self.slot_taken,
            "invoices_seen": self.invoices_seen,
            "groups": self.groups,
            "malformed": self.malformed,
            "invoices_by_reason": dict(sorted(self.invoices.items())),
            "invoices_skipped": self.invoices_skipped,
            "requested_elsewhere": self.requested_elsewhere,
            "intents_created": len(self.intent_ids),
            "sends": "this_process" if self.sent_here else "handed_to_workers",
            "payment_requests_created": (
                self.sent_by_channel[PAYMENT_REQUEST] if self.sent_here else None
            ),
            "emails_sent": self.sent_by_channel[RETRY_AND_EMAIL] if self.sent_here else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "refused_by_code": dict(sorted(self.refused_codes.items())),
            "decisions_by_reason": dict(sorted(self.decisions.items())),
            "skipped": self.skipped,
            "exhaustion_actions": self.exhaustion_actions,
            "api_calls": self.api_calls,
            "duration_s": round(self.duration_s, 3),
            "blocked": self.blocked,
        }


def plan_row(group: Group, decision: Decision) -> PlanRow:
    return PlanRow(
        external_customer_id=group.customer.external_id,
        currency=group.currency,
        billing_entity_code=group.billing_entity_code,
        amount_cents=group.overdue_amount_cents,
        invoice_count=len(group.invoices),
        policy=decision.policy,
        kind=decision.kind.value,
        reason=decision.reason.value,
        next_eligible_at=decision.next_eligible_at,
        detail=decision.detail,
    )


def skip_plan_row(skip: SkippedInvoices) -> PlanRow:
    return PlanRow(
        external_customer_id=skip.external_customer_id,
        currency=skip.currency,
        billing_entity_code=skip.billing_entity_code,
        amount_cents=skip.amount_cents,
        invoice_count=skip.invoice_count,
        policy=None,
        kind=DecisionKind.SKIP.value,
        reason=skip.reason.value,
        next_eligible_at=None,
        detail=skip_detail(skip),
    )


def skip_detail(skip: SkippedInvoices) -> str:
    return f"{skip.invoice_count} invoice(s) not dunned: {skip.detail}"
