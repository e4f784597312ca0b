"""`decide()`: what to do with one group of overdue invoices now. Pure: `now` is passed in.

Checks run in this order; the first that applies gives the decision, so the reason reported is
the most fundamental one (scope first, then amounts, then in-flight work, then timing):

 1. malformed_record        SKIP  an invoice in another currency, a negative or duplicate
                                  invoice, or no invoice with a payment_due_date
 2. no_policy_matched       SKIP  no policy's `match` fits the customer
 3. excluded                SKIP  the first matching policy's `exclude` fits
 4. currency_not_configured SKIP  the policy has no min_overdue_cents for the currency
 5. paused                  SKIP  an operator paused the group
 6. nothing_due             SKIP  no invoices, or nothing left to pay
 7. below_threshold         SKIP  amount still due < min_overdue_cents[currency]
 8. open_intent             WAIT  an unfinished request for the group already exists
 9. max_attempts_reached    EXHAUSTED with the policy's on_exhausted action (SKIP once that
                                  action has been carried out)
10. in_grace_period /       WAIT  until the latest of: the grace end, the attempt gap end and
    too_soon /                    (when a pending request we did not make covers an invoice:
    already_requested             Lago's own campaign, a person in Lago's UI) one attempt gap
                                  after that request; the reason names whichever ends last
11. outside_send_window     WAIT  until the window next opens in the customer's timezone
12. eligible                ATTEMPT with attempt_number = attempts_used + 1

Lago's rules kept: thresholds are `>=` and per currency, a currency without a threshold is never
dunned, attempts are counted per currency, the next attempt needs `now > last + days` (strict).
Improvements: the threshold uses the amount still due (net of partial payments), counters and
the last attempt are per group (not shared across currencies), grace days and send windows,
an exhaustion action that runs once, and an explanation with every decision.

Grace applies to the group's OLDEST invoice (earliest payment_due_date): once the oldest debt is
`grace_days` whole days past its due date (in the customer's timezone), the whole group, newer
invoices included, is asked for in one request. `next_eligible_at` (UTC) is always the earliest
instant at which `decide` could return ATTEMPT if nothing else changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from config.policies import Policy, PolicySet
from worker.policy.matching import select_policy
from worker.policy.types import (
    Decision,
    DecisionKind,
    ExhaustionAction,
    ExhaustionActionKind,
    Group,
    GroupState,
    Reason,
)
from worker.policy.window import next_opening, resolve_timezone

# The gap rule is strict (now > last + days): the first eligible instant is one tick later.
_TICK = timedelta(microseconds=1)


def exhaustion_action(policy: Policy) -> ExhaustionAction:
    """What the service must do once a group under `policy` has used all its attempts."""
    if policy.on_exhausted.action == "webhook":
        return ExhaustionAction(kind=ExhaustionActionKind.WEBHOOK, url=policy.on_exhausted.url)
    return ExhaustionAction(kind=ExhaustionActionKind.STOP)


def _malformed(group: Group) -> str | None:
    """Why the group's data cannot be trusted, or None."""
    seen: set[str] = set()
    for invoice in group.invoices:
        if invoice.currency.upper() != group.currency.upper():
            return f"invoice {invoice.number} is in {invoice.currency}, not {group.currency}"
        if invoice.total_due_amount_cents < 0:
            return f"invoice {invoice.number} has a negative amount due"
        if invoice.lago_id in seen:
            return f"invoice {invoice.lago_id} appears twice"
        seen.add(invoice.lago_id)
    if group.invoices and all(invoice.payment_due_date is None for invoice in group.invoices):
        return "no invoice has a payment_due_date"
    return None


def _grace_end(group: Group, policy: Policy, zone: ZoneInfo) -> datetime:
    """Start of the local day `grace_days` whole days after the oldest due date (UTC)."""
    due_dates = [i.payment_due_date for i in group.invoices if i.payment_due_date is not None]
    oldest = min(due_dates)
    first_day = oldest + timedelta(days=policy.grace_days + 1)
    return datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)


class _Decider:
    """Builds decisions for one (policy, group) so each rule stays a few readable lines."""

    def __init__(self, policy: Policy | None, group: Group) -> None:
        self.policy = policy
        self.group = group

    def make(
        self,
        kind: DecisionKind,
        reason: Reason,
        detail: str,
        *,
        attempt_number: int | None = None,
        next_eligible_at: datetime | None = None,
        on_exhausted: ExhaustionAction | None = None,
    ) -> Decision:
        email = None
        if kind is DecisionKind.ATTEMPT:
            email = (self.policy.email if self.policy else None) or self.group.customer.email
        return Decision(
            kind=kind,
            reason=reason,
            policy=self.policy.name if self.policy else None,
            attempt_number=attempt_number,
            next_eligible_at=next_eligible_at,
            email=email,
            detail=detail,
            on_exhausted=on_exhausted,
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def decide(policies: PolicySet, group: Group, state: GroupState, now: datetime) -> Decision:
    """Decide what to do with `group` at `now` (timezone-aware). See the module docstring."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    customer = group.customer
    currency = group.currency.upper()

    problem = _malformed(group)
    if problem is not None:
        return _Decider(None, group).make(
            DecisionKind.SKIP, Reason.MALFORMED_RECORD, f"Not dunned: {problem}."
        )

    selection = select_policy(policies, customer, currency, group.billing_entity_code)
    policy = selection.policy
    out = _Decider(policy, group)
    if policy is None:
        return out.make(
            DecisionKind.SKIP,
            Reason.NO_POLICY_MATCHED,
            f"No policy matches customer {customer.external_id} in {currency}.",
        )
    if selection.excluded:
        return out.make(
            DecisionKind.SKIP,
            Reason.EXCLUDED,
            f"Policy {policy.name} excludes customer {customer.external_id}.",
        )
    threshold = policy.threshold_for(currency)
    if threshold is None:
        return out.make(
            DecisionKind.SKIP,
            Reason.CURRENCY_NOT_CONFIGURED,
            f"Policy {policy.name} sets no minimum for {currency}, so {currency} is not dunned.",
        )
    if state.paused:
        return out.make(DecisionKind.SKIP, Reason.PAUSED, "Dunning is paused for this group.")

    owed = group.overdue_amount_cents
    if owed <= 0:
        return out.make(DecisionKind.SKIP, Reason.NOTHING_DUE, "Nothing is left to pay.")
    if owed < threshold:
        return out.make(
            DecisionKind.SKIP,
            Reason.BELOW_THRESHOLD,
            f"{owed} {currency} cents due is below the {threshold} minimum.",
        )
    if state.open_intent:
        return out.make(
            DecisionKind.WAIT,
            Reason.OPEN_INTENT,
            "A payment request for this group is already in progress.",
        )

    limit = policy.max_attempts_for(currency)
    if state.attempts_used >= limit:
        if state.exhaustion_handled:
            return out.make(
                DecisionKind.SKIP,
                Reason.MAX_ATTEMPTS_REACHED,
                f"All {limit} attempts were used; the exhaustion action already ran.",
            )
        action = exhaustion_action(policy)
        return out.make(
            DecisionKind.EXHAUSTED,
            Reason.MAX_ATTEMPTS_REACHED,
            f"All {limit} attempts were used; on_exhausted: {policy.on_exhausted.describe()}.",
            on_exhausted=action,
        )
    return _timing(out, policy, group, state, now)


def _timing(
    out: _Decider, policy: Policy, group: Group, state: GroupState, now: datetime
) -> Decision:
    """Grace period, gap between attempts and send window, in that order."""
    fallback = policy.send_window.fallback_timezone if policy.send_window else "UTC"
    zone, fell_back = resolve_timezone(group.customer.timezone, fallback)
    tz_note = f" (customer timezone unknown, using {zone.key})" if fell_back else ""
    try:
        grace_end = _grace_end(group, policy, zone)
        gap_end = (
            state.last_attempt_at.astimezone(UTC)
            + timedelta(days=policy.days_between_attempts)
            + _TICK
            if state.last_attempt_at is not None
            else grace_end
        )
        asked_elsewhere = group.requested_elsewhere_at
        elsewhere_end = (
            asked_elsewhere.astimezone(UTC) + timedelta(days=policy.days_between_attempts) + _TICK
            if asked_elsewhere is not None
            else None
        )
        earliest = max(grace_end, gap_end, elsewhere_end or grace_end, now)
        opening = (
            next_opening(policy.send_window, earliest, zone) if policy.send_window else earliest
        )
    except OverflowError:
        return out.make(
            DecisionKind.SKIP, Reason.MALFORMED_RECORD, "Not dunned: a date is out of range."
        )

    if earliest > now:
        if elsewhere_end is not None and elsewhere_end >= max(gap_end, grace_end):
            assert asked_elsewhere is not None
            reason = Reason.ALREADY_REQUESTED
            detail = (
                f"A pending payment request we did not make (asked {_iso(asked_elsewhere)}) "
                f"already covers these invoices; next possible {_iso(opening)}{tz_note}."
            )
        elif gap_end > grace_end:
            reason = Reason.TOO_SOON
            detail = (
                f"Last attempt was less than {policy.days_between_attempts} day(s) ago; "
                f"next possible {_iso(opening)}{tz_note}."
            )
        else:
            reason = Reason.IN_GRACE_PERIOD
            detail = (
                f"In the {policy.grace_days}-day grace period after the oldest due date; "
                f"next possible {_iso(opening)}{tz_note}."
            )
        return out.make(DecisionKind.WAIT, reason, detail, next_eligible_at=opening)
    if opening > now:
        return out.make(
            DecisionKind.WAIT,
            Reason.OUTSIDE_SEND_WINDOW,
            f"Outside the send window; it opens {_iso(opening)}{tz_note}.",
            next_eligible_at=opening,
        )
    attempt = state.attempts_used + 1
    limit = policy.max_attempts_for(group.currency.upper())
    return out.make(
        DecisionKind.ATTEMPT,
        Reason.ELIGIBLE,
        f"Attempt {attempt} of {limit} under policy {policy.name}{tz_note}.",
        attempt_number=attempt,
        next_eligible_at=now,
    )
