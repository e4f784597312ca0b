"""The facts a dunning decision is made from, and the decision itself.

These frozen value objects are shared by the sweep (which builds them from Lago data), the
store (which records decisions and keeps the per-group ledger) and the CLI (which explains
them). They carry no behaviour beyond small derived properties and input checks.

A *group* is one customer's overdue invoices in one currency for one billing entity: the unit
Lago accepts in a single payment request, and the unit our attempt counters are kept for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from config.policies import Policy


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What a policy may select on. `timezone` is Lago's `applicable_timezone` (IANA name)."""

    external_id: str
    email: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer_type: str | None = None  # "company" | "individual" | None
    country: str | None = None  # ISO 3166-1 alpha-2
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """One eligible invoice. `total_due_amount_cents` is what is still owed (net of payments).

    `requested_elsewhere_at` is set when a pending payment request we did not make (Lago's own
    dunning campaign, a person in Lago's UI) already covers the invoice: when it was created.
    """

    lago_id: str
    number: str
    currency: str
    payment_due_date: date | None
    total_due_amount_cents: int
    total_amount_cents: int
    requested_elsewhere_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """One customer's overdue invoices in one currency and billing entity.

    Invoices are kept sorted by `lago_id` whatever order they were given in, so equal groups
    compare equal and `invoice_ids` is stable (it is part of the intent dedupe key).
    """

    customer: CustomerFacts
    currency: str
    billing_entity_code: str | None
    invoices: tuple[InvoiceFacts, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.invoices, key=lambda invoice: invoice.lago_id))
        object.__setattr__(self, "invoices", ordered)

    @property
    def overdue_amount_cents(self) -> int:
        """What the customer still owes on these invoices (sum of `total_due_amount_cents`)."""
        return sum(invoice.total_due_amount_cents for invoice in self.invoices)

    @property
    def invoice_ids(self) -> tuple[str, ...]:
        """Lago ids of the invoices, sorted."""
        return tuple(invoice.lago_id for invoice in self.invoices)

    @property
    def requested_elsewhere_at(self) -> datetime | None:
        """When the newest pending request we did not make, covering any invoice, was made."""
        moments = [i.requested_elsewhere_at for i in self.invoices if i.requested_elsewhere_at]
        return max(moments) if moments else None

    @property
    def key(self) -> str:
        """Stable identity of the group: `customer|currency|billing_entity` ('-' if none)."""
        return group_key(self.customer.external_id, self.currency, self.billing_entity_code)


def group_key(external_customer_id: str, currency: str, billing_entity_code: str | None) -> str:
    """The key `Group.key` returns, for callers that have no `Group` at hand (e.g. the store)."""
    return f"{external_customer_id}|{currency}|{billing_entity_code or '-'}"


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the ledger knows about one group (customer, currency, billing entity).

    `attempts_used` counts payment requests actually sent for the group. `last_attempt_at` must
    be timezone-aware. `open_intent` is true while an unfinished intent exists for the group.
    `exhaustion_handled` is true once the policy's `on_exhausted` action has been carried out,
    so the action runs once and later sweeps only report the group as exhausted.

    `hold_until` (with `paused`) is an operator's hold that ends by itself at that instant.
    `recent_contacts` are the instants of the CUSTOMER's recent payment requests, all
    currencies and billing entities (for contact caps). `pinned_policy` is the policy, as it
    was written, under which the group's current dunning cycle started, when that differs
    from today's file: an in-flight group is never asked sooner than it says.
    """

    attempts_used: int = 0
    last_attempt_at: datetime | None = None
    paused: bool = False
    open_intent: bool = False
    exhaustion_handled: bool = False
    hold_until: datetime | None = None
    recent_contacts: tuple[datetime, ...] = ()
    pinned_policy: Policy | None = None
    pinned_version: str | None = None

    def __post_init__(self) -> None:
        if self.attempts_used < 0:
            raise ValueError(f"attempts_used must be >= 0, got {self.attempts_used}")
        for name in ("last_attempt_at", "hold_until"):
            moment = getattr(self, name)
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        if any(moment.utcoffset() is None for moment in self.recent_contacts):
            raise ValueError("recent_contacts must be timezone-aware")


class DecisionKind(StrEnum):
    """What the sweep should do with a group now."""

    ATTEMPT = "attempt"  # create a payment request now
    WAIT = "wait"  # not now; `next_eligible_at` says when to look again (if known)
    SKIP = "skip"  # not dunned under the current facts and policy
    EXHAUSTED = "exhausted"  # attempts are used up: run the policy's on_exhausted action


class Reason(StrEnum):
    """Why a decision was taken; recorded with every decision."""

    ELIGIBLE = "eligible"
    NO_POLICY_MATCHED = "no_policy_matched"
    EXCLUDED = "excluded"
    CURRENCY_NOT_CONFIGURED = "currency_not_configured"
    BELOW_THRESHOLD = "below_threshold"
    NOTHING_DUE = "nothing_due"
    IN_GRACE_PERIOD = "in_grace_period"
    TOO_SOON = "too_soon"
    OUTSIDE_SEND_WINDOW = "outside_send_window"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"
    PAUSED = "paused"
    OPEN_INTENT = "open_intent"
    MALFORMED_RECORD = "malformed_record"
    ALREADY_REQUESTED = "already_requested"
    ON_HOLD_UNTIL = "on_hold_until"
    CONTACT_CAP = "contact_cap"
    HOLDOUT = "holdout"
    # Invoice-level skips (`worker.policy.eligibility`): the listed invoice itself is not
    # provably one we may ask to be paid, whatever the listing's filters promised.
    NO_CUSTOMER = "no_customer"
    OTHER_CUSTOMER = "other_customer"
    NO_CURRENCY = "no_currency"
    NOT_FINALIZED = "not_finalized"
    DISPUTE_LOST = "dispute_lost"
    SELF_BILLED = "self_billed"
    ALREADY_PAID = "already_paid"
    PAYMENT_IN_FLIGHT = "payment_in_flight"
    PAYMENT_STATUS_UNKNOWN = "payment_status_unknown"
    NOT_OVERDUE = "not_overdue"
    AMOUNT_UNKNOWN = "amount_unknown"


class ExhaustionActionKind(StrEnum):
    """What to do once a group's attempts are used up."""

    STOP = "stop"  # record it and stop dunning the group
    WEBHOOK = "webhook"  # also POST a notification to `url`


@dataclass(frozen=True, slots=True)
class ExhaustionAction:
    """The action the service executes for an EXHAUSTED decision."""

    kind: ExhaustionActionKind
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `decide()` for one group.

    `attempt_number` is set for ATTEMPT (attempts_used + 1). `next_eligible_at` (UTC) is the
    earliest instant at which the group could be attempted, when it is known (WAIT, and for
    ATTEMPT it is `now`). `email` is the address to send the request to (None = let Lago use
    the customer's email). `on_exhausted` is set for EXHAUSTED. `detail` is a sentence for
    humans. `policy_version` is the governing policy's `version` label (if it has one) and
    `policy_hash` the hash of the policy file that decided.
    """

    kind: DecisionKind
    reason: Reason
    policy: str | None
    attempt_number: int | None
    next_eligible_at: datetime | None
    email: str | None
    detail: str
    on_exhausted: ExhaustionAction | None = None
    policy_version: str | None = None
    policy_hash: str | None = None
