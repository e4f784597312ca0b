"""The exactly-once audit after a chaos run: compare what Lago (the sandbox) holds with what the
policy says to dun and what the ledger recorded.

Inputs are plain data so the audit can be tested on hand-made cases:
- the sandbox's invoices (`GET /_sandbox/invoices`, or as a careless Lago shows them:
  `?view=careless`), from which the groups to dun are derived independently of the worker's
  own listing code;
- every payment request the sandbox ever created (`GET /_sandbox/payment_requests`);
- the ledger's intents.

With the bench policy (one attempt, zero thresholds, every generated currency) the policy says
to dun every group of overdue, unpaid, not self-billed invoices with something still due, once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

GroupKey = tuple[str, str, str | None]  # (external customer id, currency, billing entity code)

OVERDUE_PAYMENT_STATUSES = frozenset({"pending", "failed"})
DONE_WITH_REQUEST = frozenset({"sent", "adopted"})
#: Terminal without a request: acceptable only with a recorded reason.
DONE_WITHOUT_REQUEST = frozenset({"refused", "blocked", "cancelled", "needs_review"})
OPEN = frozenset({"pending", "sending"})
#: Lago answered "not yet" (e.g. a payment is being processed): the intent waits, with a reason,
#: for a later try by design. Reasoned, not open.
DEFERRING_CODES = frozenset({"invoices_not_ready_for_payment_processing"})


@dataclass(frozen=True, slots=True)
class IntentRow:
    id: int
    group: GroupKey
    attempt_number: int
    status: str
    lago_payment_request_id: str | None
    last_error_code: str | None
    last_error: str | None

    @property
    def deferred(self) -> bool:
        return self.status == "pending" and self.last_error_code in DEFERRING_CODES

    @property
    def unsettled(self) -> bool:
        """Still in flight (not terminal, and not waiting on Lago for a recorded reason)."""
        return self.status in OPEN and not self.deferred


@dataclass(slots=True)
class Audit:
    groups: int = 0
    intents: int = 0
    requests: int = 0  # payment requests our worker created (origin api)
    adoptions: int = 0
    duplicates: int = 0
    lost: int = 0
    open_intents: int = 0
    deferred: int = 0  # waiting, with Lago's reason, for a later try (by design)
    unexplained: int = 0  # terminal without a request and without a reason
    orphans: int = 0  # requests of ours that no intent records
    unexpected: int = 0  # requests for groups the policy does not dun
    #: Requests of ours naming an invoice that was not dunnable when asked (only a careless
    #: Lago lets such a request through): must be 0.
    ineligible: int = 0
    garbled: int = 0  # answers Lago garbled (careless): each must end reasoned, never "sent"
    garbled_believed: int = 0  # ... of which the ledger took as sent or adopted: must be 0
    by_status: Counter[str] = field(default_factory=Counter)
    refused_codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.lost == 0
            and self.open_intents == 0
            and self.unexplained == 0
            and self.ineligible == 0
            and self.garbled_believed == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "intents": self.intents,
            "requests": self.requests,
            "adoptions": self.adoptions,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "open_intents": self.open_intents,
            "deferred": self.deferred,
            "unexplained": self.unexplained,
            "orphans": self.orphans,
            "unexpected": self.unexpected,
            "ineligible": self.ineligible,
            "garbled": self.garbled,
            "garbled_believed": self.garbled_believed,
            "by_status": dict(sorted(self.by_status.items())),
            "refused_codes": dict(sorted(self.refused_codes.items())),
            "ok": self.ok,
            "problems": self.problems[:20],
        }


def _due(invoice: Mapping[str, Any]) -> int | None:
    """The amount due as shown, or derived like Lago does; None when it cannot be known."""
    if invoice.get("total_due_amount_cents") is not None:
        return int(invoice["total_due_amount_cents"])
    names = (
        "total_amount_cents",
        "total_paid_amount_cents",
        "total_offsetted_credit_note_amount_cents",
    )
    if any(invoice.get(name) is None for name in names):
        return None
    total, paid, credited = (int(invoice[name]) for name in names)
    return total - paid - credited


def _overdue(invoice: Mapping[str, Any], today: date) -> bool:
    flag = invoice.get("payment_overdue")
    if flag is not None:
        return flag is True
    due_date = invoice.get("payment_due_date")
    return bool(due_date) and date.fromisoformat(str(due_date)) < today


def groups_to_dun(
    invoices: Iterable[Mapping[str, Any]], *, today: date | None = None
) -> dict[GroupKey, set[str]]:
    """Groups (and their invoice ids) the bench policy asks for, from the raw invoices as
    shown (a careless view may leave out fields: amounts are derived as Lago derives them and
    a missing overdue flag falls back to the due date; what cannot be known is not dunned)."""
    day = today or datetime.now(UTC).date()
    groups: dict[GroupKey, set[str]] = defaultdict(set)
    for invoice in invoices:
        due = _due(invoice)
        if (
            invoice.get("status") == "finalized"
            and not invoice.get("voided_at")
            and not invoice.get("payment_dispute_lost_at")
            and _overdue(invoice, day)
            and invoice.get("payment_status") in OVERDUE_PAYMENT_STATUSES
            and invoice.get("self_billed") is not True
            and due is not None
            and due > 0
        ):
            customer = invoice["customer"]["external_id"]
            key = (customer, invoice["currency"], invoice.get("billing_entity_code"))
            groups[key].add(invoice["lago_id"])
    return dict(groups)


def request_group(request: Mapping[str, Any]) -> GroupKey:
    invoices = request.get("invoices") or []
    entity = invoices[0].get("billing_entity_code") if invoices else None
    return (request["external_customer_id"], request["amount_currency"], entity)


def audit(
    *,
    invoices: Iterable[Mapping[str, Any]],
    payment_requests: Iterable[Mapping[str, Any]],
    intents: Iterable[IntentRow],
    max_attempts: int = 1,
) -> Audit:
    expected = groups_to_dun(invoices)
    ours = [r for r in payment_requests if r.get("origin") == "api"]
    rows = list(intents)
    result = Audit(groups=len(expected), intents=len(rows), requests=len(ours))
    for request in ours:
        if request.get("ineligible_invoice_ids"):
            result.ineligible += 1
            result.problems.append(
                f"payment request {request['lago_id']} names invoices that were not dunnable: "
                f"{request['ineligible_invoice_ids'][:3]}"
            )

    requests_by_group: dict[GroupKey, list[Mapping[str, Any]]] = defaultdict(list)
    for request in ours:
        requests_by_group[request_group(request)].append(request)
    intents_by_group: dict[GroupKey, list[IntentRow]] = defaultdict(list)
    for row in rows:
        intents_by_group[row.group].append(row)
        result.by_status[row.status] += 1
        if row.status == "adopted":
            result.adoptions += 1
        if row.status == "refused" and row.last_error_code:
            result.refused_codes[row.last_error_code] += 1
        if row.deferred:
            result.deferred += 1
        elif row.status in OPEN:
            result.open_intents += 1
            result.problems.append(f"intent {row.id} still {row.status}")
        elif row.status in DONE_WITHOUT_REQUEST and not (row.last_error_code or row.last_error):
            result.unexplained += 1
            result.problems.append(f"intent {row.id} is {row.status} without a reason")

    # Duplicates: more requests for a group than attempts allowed, or one invoice in two
    # requests of ours that are both still open.
    for group, requests in requests_by_group.items():
        if len(requests) > max_attempts:
            result.duplicates += len(requests) - max_attempts
            result.problems.append(f"group {group}: {len(requests)} payment requests")
        if group not in expected:
            result.unexpected += len(requests)
            result.problems.append(f"group {group}: asked but the policy does not dun it")
    open_by_invoice: Counter[str] = Counter(
        invoice_id
        for request in ours
        if request.get("payment_status") == "pending"
        for invoice_id in request.get("lago_invoice_ids", [])
    )
    doubled = [invoice_id for invoice_id, count in open_by_invoice.items() if count > 1]
    if doubled and not result.duplicates:
        result.duplicates += len(doubled)
    for invoice_id in doubled[:5]:
        result.problems.append(f"invoice {invoice_id} is in two open requests")

    # Lost: a group to dun with neither a request nor a reasoned outcome in the ledger.
    for group in expected:
        if requests_by_group.get(group):
            continue
        reasoned = [
            row
            for row in intents_by_group.get(group, [])
            if row.deferred
            or (row.status in DONE_WITHOUT_REQUEST and (row.last_error_code or row.last_error))
        ]
        if not reasoned:
            result.lost += 1
            result.problems.append(f"group {group}: no payment request and no reasoned outcome")

    believed = {
        row.lago_payment_request_id
        for row in rows
        if row.status in DONE_WITH_REQUEST and row.lago_payment_request_id
    }
    for request in ours:
        if request.get("delivery") == "garbled":
            result.garbled += 1
            if request["lago_id"] in believed:
                result.garbled_believed += 1
                result.problems.append(f"garbled answer {request['lago_id']} taken as ours")
    recorded = {row.lago_payment_request_id for row in rows if row.lago_payment_request_id}
    for request in ours:
        if request["lago_id"] not in recorded:
            result.orphans += 1
    for row in rows:
        if row.status in DONE_WITH_REQUEST and row.lago_payment_request_id is None:
            result.lost += 1
            result.problems.append(f"intent {row.id} is {row.status} without a Lago id")
    return result
