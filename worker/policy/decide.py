"""`decide()`: what to do with one group of overdue invoices now. Pure: `now` is passed in.

Checks run in this order; the first that applies gives the decision, so the reason reported is
the most fundamental one (scope first, then amounts, then in-flight work, then timing):

 1. malformed_record        SKIP  an invoice in another currency, a negative or duplicate
                                  invoice, or no invoice with a payment_due_date
 2. no_policy_matched       SKIP  no policy's `match` fits the customer
 3. excluded                SKIP  the first matching policy's `exclude` fits
 4. currency_not_configured SKIP  the policy has no min_overdue_cents for the currency
 5. paused / on_hold_until  SKIP  an operator paused the customer (no end date), or
                            WAIT  put them on hold until a date (resumes by itself then)
 6. nothing_due             SKIP  no invoices, or nothing left to pay
 7. below_threshold         SKIP  amount still due < min_overdue_cents[currency]
 8. open_intent             WAIT  an unfinished request for the group already exists
 9. max_attempts_reached    EXHAUSTED with the policy's on_exhausted action (SKIP once that
                                  action has been carried out)
10. in_grace_period /       WAIT  until the next attempt's schedule allows it (grace end, the
    too_soon /                    gap after the last attempt, or the next step's day) and, when
    already_requested             a pending request we did not make covers an invoice (Lago's
                                  own campaign, a person in Lago's UI), one attempt gap after
                                  that request; the reason names whichever ends last
11. outside_send_window     WAIT  until the window (the step's, else the policy's) next opens
                                  in the customer's timezone, holidays skipped if asked
12. holdout                 SKIP  the customer is in the policy's holdout share (only groups
                                  not yet in a dunning cycle)
13. contact_cap             WAIT  the customer had the cap's number of requests in its rolling
                                  window, all currencies and entities; until one frees up
14. eligible                ATTEMPT with attempt_number = attempts_used + 1

Lago's rules kept: thresholds are `>=` and per currency, a currency without a threshold is never
dunned, attempts are counted per currency, the next attempt needs `now > last + days` (strict).
Improvements: the threshold uses the amount still due (net of partial payments), counters and
the last attempt are per group (not shared across currencies), grace days, step schedules,
send windows with holiday calendars, contact caps, holds, holdouts, an exhaustion action that
runs once, and an explanation with every decision.

Grace applies to the group's OLDEST invoice (earliest payment_due_date): once the oldest debt is
`grace_days` whole days past its due date (in the customer's timezone), the whole group, newer
invoices included, is asked for in one request. `next_eligible_at` (UTC) is always the earliest
instant at which `decide` could return ATTEMPT if nothing else changed.

Policy edits and in-flight groups: scope, thresholds, holds and attempt limits always come from
the current file, so an edit can stop or shorten dunning at once. A group already in a cycle
(`attempts_used > 0`) whose cycle began under another version of its policy
(`state.pinned_policy`) gets its next attempt at the LATER of what either version allows: an
edit never asks an in-flight group sooner than the version it started under would have.
An open intent is sent as it was decided (it carries the version that decided it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from config.policies import EmailFromMetadata, EmailTarget, Policy, PolicySet, is_email
from worker.policy.caps import cap_frees_at
from worker.policy.holdout import is_held_out
from worker.policy.matching import select_policy
from worker.policy.schedule import TICK, NextAttempt, next_attempt
from worker.policy.types import (
    CustomerFacts,
    Decision,
    DecisionKind,
    ExhaustionAction,
    ExhaustionActionKind,
    Group,
    GroupState,
    Reason,
)
from worker.policy.window import holiday_country, next_opening, resolve_timezone


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


def resolve_email(
    target: EmailTarget | None, policy: Policy, customer: CustomerFacts
) -> tuple[str | None, str]:
    """The address to ask, and a note when a metadata contact could not be used."""
    if isinstance(target, EmailFromMetadata):
        found = customer.metadata.get(target.metadata_key, "").strip()
        if is_email(found):
            return found, ""
        fallback = policy.email if isinstance(policy.email, str) else None
        note = f" (no address in metadata.{target.metadata_key}, using the default email)"
        return fallback or customer.email, note
    return target or customer.email, ""


class _Decider:
    """Builds decisions for one (policy, group) so each rule stays a few readable lines."""

    def __init__(self, policies: PolicySet, policy: Policy | None, group: Group) -> None:
        self.policies = policies
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
        email: str | None = None,
    ) -> Decision:
        return Decision(
            kind=kind,
            reason=reason,
            policy=self.policy.name if self.policy else None,
            attempt_number=attempt_number,
            next_eligible_at=next_eligible_at,
            email=email,
            detail=detail,
            on_exhausted=on_exhausted,
            policy_version=self.policy.version if self.policy else None,
            policy_hash=self.policies.version_hash,
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
        return _Decider(policies, None, group).make(
            DecisionKind.SKIP, Reason.MALFORMED_RECORD, f"Not dunned: {problem}."
        )

    selection = select_policy(policies, customer, currency, group.billing_entity_code)
    policy = selection.policy
    out = _Decider(policies, policy, group)
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
        if state.hold_until is None:
            return out.make(DecisionKind.SKIP, Reason.PAUSED, "Dunning is paused for this group.")
        if state.hold_until > now:
            return out.make(
                DecisionKind.WAIT,
                Reason.ON_HOLD_UNTIL,
                f"On hold until {_iso(state.hold_until)}; dunning resumes by itself then.",
                next_eligible_at=state.hold_until.astimezone(UTC),
            )

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
    try:
        return _timing(out, policies, policy, group, state, now)
    except OverflowError:
        return out.make(
            DecisionKind.SKIP, Reason.MALFORMED_RECORD, "Not dunned: a date is out of range."
        )


def _next(policy: Policy, group: Group, state: GroupState, zone: ZoneInfo) -> NextAttempt | None:
    due_dates = [i.payment_due_date for i in group.invoices if i.payment_due_date is not None]
    return next_attempt(
        policy,
        oldest_due=min(due_dates),
        attempts_used=state.attempts_used,
        last_attempt_at=state.last_attempt_at,
        currency=group.currency.upper(),
        zone=zone,
    )


def _timing(
    out: _Decider,
    policies: PolicySet,
    policy: Policy,
    group: Group,
    state: GroupState,
    now: datetime,
) -> Decision:
    """The schedule (grace, gap or step), send window, holdout and contact cap, in order."""
    customer = group.customer
    fallback = policy.send_window.fallback_timezone if policy.send_window else "UTC"
    zone, fell_back = resolve_timezone(customer.timezone, fallback)
    tz_note = f" (customer timezone unknown, using {zone.key})" if fell_back else ""
    planned = _next(policy, group, state, zone)
    assert planned is not None  # attempts_used < limit was checked by the caller
    earliest, reason, why = planned.earliest, planned.reason, planned.why
    pinned = state.pinned_policy
    if state.attempts_used > 0 and pinned is not None and pinned != policy:
        before = _next(pinned, group, state, zone)
        if before is not None and before.earliest > earliest:
            version = state.pinned_version or "an earlier version"
            earliest, reason = before.earliest, Reason.TOO_SOON
            why = (
                f"{before.why}, under the policy this cycle started with ({version}); "
                "an edit never asks sooner"
            )
    asked = group.requested_elsewhere_at
    if asked is not None:
        elsewhere_end = asked.astimezone(UTC) + timedelta(days=policy.days_between_attempts) + TICK
        if elsewhere_end >= earliest:
            earliest, reason = elsewhere_end, Reason.ALREADY_REQUESTED
            why = (
                f"A pending payment request we did not make (asked {_iso(asked)}) already "
                "covers these invoices"
            )
    earliest = max(earliest, now)
    window = planned.window
    country = customer.country
    calendar_note = ""
    if window is not None and window.skip_holidays:
        used = holiday_country(window, country)
        calendar_note = (
            f" (holidays of {used} skipped)" if used else " (no holiday calendar for customer)"
        )
    opening = next_opening(window, earliest, zone, country) if window else earliest
    step = f" (day {policy.steps[planned.number - 1].after_days})" if policy.steps else ""

    if earliest > now:
        detail = f"{why}; next possible {_iso(opening)}{tz_note}."
        return out.make(DecisionKind.WAIT, reason, detail, next_eligible_at=opening)
    if opening > now:
        return out.make(
            DecisionKind.WAIT,
            Reason.OUTSIDE_SEND_WINDOW,
            f"Outside the send window; it opens {_iso(opening)}{calendar_note}{tz_note}.",
            next_eligible_at=opening,
        )
    if state.attempts_used == 0 and is_held_out(
        policies.holdout_salt, policy.holdout_percent, customer.external_id
    ):
        return out.make(
            DecisionKind.SKIP,
            Reason.HOLDOUT,
            f"Customer {customer.external_id} is in the {policy.holdout_percent:g}% holdout of "
            f"policy {policy.name}: not dunned, kept to measure what dunning recovers.",
        )
    cap = policy.contact_cap
    frees = cap_frees_at(cap, state.recent_contacts, now) if cap is not None else None
    if cap is not None and frees is not None:
        when = next_opening(window, frees, zone, country) if window else frees
        return out.make(
            DecisionKind.WAIT,
            Reason.CONTACT_CAP,
            f"Customer {customer.external_id} already had {cap.describe()} payment requests "
            f"(all currencies); next possible {_iso(when)}.",
            next_eligible_at=when,
        )
    email, email_note = resolve_email(planned.email, policy, customer)
    limit = policy.max_attempts_for(group.currency.upper())
    return out.make(
        DecisionKind.ATTEMPT,
        Reason.ELIGIBLE,
        f"Attempt {planned.number} of {limit}{step} under policy {policy.name}"
        f"{email_note}{tz_note}.",
        attempt_number=planned.number,
        next_eligible_at=now,
        email=email,
    )
