"""One sweep: list overdue invoices, group them, decide per policy, write intents, send them.

Steps (each database write is one short transaction; no transaction spans an HTTP call):
1. Start the run (a beat tick claims its slot first: a double-fired tick does nothing).
2. List the pending payment requests we did not make, once (`requested_elsewhere`): groups
   they cover wait with reason `already_requested`.
3. Stream the overdue listing once (design §2), judge every invoice from its own fields and
   reduce the eligible ones to groups (`collect_groups`).
4. Read every group's ledger state in bulk and `decide()` each group (pure, `now` given).
5. In one transaction: an intent per ATTEMPT (duplicates are no-ops), exhaustion marks, and
   every decision with its reason (skips included: groups, skipped invoices, malformed
   records).
6. Send (inline mode): the new intents and any older intents due again, with bounded
   concurrency. A 405 `invoices_not_overdue` refreshes only that customer and retries once
   with the invoices still eligible. In Celery mode the task fans the intent ids out instead.
7. Run the exhaustion actions, reconcile outcomes, and finish the run with its counts.
A dry run does steps 2-4 only and writes nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Protocol

from worker import metrics
from worker.lago.errors import FeatureUnavailableError, LagoError
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice, MalformedRecord
from worker.lago.notify import post_notification
from worker.logging import get_logger
from worker.policy.types import (
    Decision,
    DecisionKind,
    ExhaustionActionKind,
    Group,
    Reason,
)
from worker.services.channels import PAYMENT_REQUEST, RETRY_AND_EMAIL, channels_for
from worker.services.collect_groups import (
    CollectedGroups,
    Malformed,
    SkippedInvoices,
    collect_groups,
)
from worker.services.group_facts import decide_groups, remember_policies
from worker.services.invoice_facts import judge
from worker.services.overdue_snapshot import record_overdue_snapshot
from worker.services.reconcile_holdouts import new_holdout, reconcile_holdouts
from worker.services.requested_elsewhere import RequestedElsewhere, requested_elsewhere
from worker.services.run_heartbeat import Heartbeat, abandon_dead_runs
from worker.services.runtime import Runtime
from worker.services.send_payment_request import (
    SendOutcome,
    send_payment_request,
    send_payment_requests,
)
from worker.store import decisions as decision_store
from worker.store import group_states, holdouts, intents, runs
from worker.store.db import read_session, write_tx
from worker.store.decisions import DecisionRecord

log = get_logger(__name__)

NOT_OVERDUE = "invoices_not_overdue"
#: Clock skew allowed between Lago's timestamps (whole seconds) and ours.
_SKEW = timedelta(minutes=5)
_DECIDE_BATCH = 1000
UNKNOWN = "-"


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


def worker_identity() -> str:
    """A lease owner name unique to one send: host and process (so an operator can tell who
    holds a claim) plus a random suffix (so two threads never share a lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def run_sweep(
    rt: Runtime,
    *,
    trigger: str,
    now: datetime | None = None,
    dry_run: bool = False,
    customer: str | None = None,
    slot: str | None = None,
    send_inline: bool = True,
    progress: SweepProgress | None = None,
    perf_clock: Callable[[], float] | None = None,
) -> SweepSummary:
    """Run one sweep. `now` fixes the decision time (defaults to the runtime clock)."""
    import time

    tick = perf_clock or time.perf_counter
    started = tick()
    now = now or rt.clock()
    calls_before = rt.client.calls_total()
    summary = SweepSummary(trigger=trigger, dry_run=dry_run, slot=slot, sent_here=send_inline)

    if not dry_run:
        run_id = _start_run(rt, trigger=trigger, slot=slot, now=rt.clock())
        if run_id is None:
            summary.slot_taken = False
            log.info("sweep.slot_already_taken", slot=slot)
            return summary
        summary.run_id = run_id
        remember_policies(rt.engine, rt.policies, rt.clock())
    bound = log.bind(run_id=summary.run_id, trigger=trigger)
    bound.info("sweep.started", customer=customer, dry_run=dry_run)

    with Heartbeat(rt.engine, summary.run_id, rt.clock):
        try:
            elsewhere = requested_elsewhere(rt, customer=customer, now=now)
            summary.requested_elsewhere = elsewhere.requests
            with collect_groups(
                _listing(rt, customer=customer, progress=progress),
                now=now,
                customer=customer,
                requested_elsewhere=elsewhere.covered,
            ) as collected:
                summary.invoices_seen = collected.invoices_seen
                summary.invoices.update(collected.invoices_by_reason)
                summary.groups = collected.group_count
                summary.malformed = len(collected.malformed)
                if collected.malformed:
                    summary.decisions[Reason.MALFORMED_RECORD.value] += len(collected.malformed)
                decided = _decide_in_batches(rt, collected.iter_groups(), now)
                if dry_run:
                    for group, decision in decided:
                        summary.decisions[decision.reason.value] += 1
                        summary.plan.append(_plan_row(group, decision))
                    summary.plan.extend(_skip_plan_row(skip) for skip in collected.iter_skips())
                    summary.api_calls = rt.client.calls_total() - calls_before
                    summary.duration_s = tick() - started
                    return summary
                metrics.record_invoices_judged(collected.invoices_by_reason)
                exhausted = _write_decisions(rt, summary, decided, collected, now)
                summary.exhaustion_actions = _run_exhaustion_actions(rt, exhausted, now)
                if send_inline:
                    _send_all(rt, summary, progress, elsewhere.covered)
                _reconcile(rt, collected)
                record_overdue_snapshot(
                    rt, collected, run_id=summary.run_id, now=now, customer=customer
                )
        except FeatureUnavailableError as exc:
            summary.blocked = str(exc)
            _finish(
                rt,
                summary,
                status="blocked",
                error=exc.message,
                started=started,
                tick=tick,
                calls_before=calls_before,
            )
            raise
        except Exception as exc:
            if summary.run_id is not None:
                _finish(
                    rt,
                    summary,
                    status="failed",
                    error=_one_line(exc),
                    started=started,
                    tick=tick,
                    calls_before=calls_before,
                )
            raise
        _finish(
            rt,
            summary,
            status="succeeded",
            error=None,
            started=started,
            tick=tick,
            calls_before=calls_before,
        )
        bound.info("sweep.finished", **summary.as_dict())
    return summary


# ---------------------------------------------------------------------------------------------
# Steps


def _start_run(rt: Runtime, *, trigger: str, slot: str | None, now: datetime) -> int | None:
    with write_tx(rt.engine) as session:
        abandon_dead_runs(session, now=now)
        if slot is not None:
            return runs.claim_tick_slot(
                session,
                slot=slot,
                trigger=trigger,
                now=now,
                policy_version=rt.policies.version_hash,
            )
        return runs.start_run(
            session, trigger=trigger, now=now, policy_version=rt.policies.version_hash
        )


def _listing(
    rt: Runtime, *, customer: str | None, progress: SweepProgress | None
) -> Iterator[Invoice | MalformedRecord]:
    filters = (
        InvoiceFilters.overdue(external_customer_id=customer)
        if customer
        else (InvoiceFilters.overdue())
    )
    for seen, item in enumerate(rt.client.iter_invoices(filters), start=1):
        if progress is not None and seen % 100 == 0:
            progress.listed(seen)
        yield item


def _decide_in_batches(
    rt: Runtime, groups: Iterator[Group], now: datetime
) -> Iterator[tuple[Group, Decision]]:
    """Decide group by group, reading the ledger facts of a batch of groups at a time."""
    for group, (decision,) in decide_groups(rt.engine, groups, now, (rt.policies,)):
        yield group, decision


def _write_decisions(
    rt: Runtime,
    summary: SweepSummary,
    decided: Iterable[tuple[Group, Decision]],
    collected: CollectedGroups,
    now: datetime,
) -> list[tuple[Group, Decision]]:
    """Intents, exhaustion marks and the decision log, in one transaction (all or nothing).

    Written `_DECIDE_BATCH` decisions at a time with multi-row statements. Returns the groups
    whose exhaustion action this sweep owns (marked by this sweep)."""
    assert summary.run_id is not None
    exhausted: list[tuple[Group, Decision]] = []
    # Decisions are taken at `now` (which `--now` may move); the ledger's own timestamps use
    # the real clock so intents become due for sending when the sweep sends them.
    written_at = rt.clock()
    with write_tx(rt.engine) as session:
        decided = iter(decided)
        while batch := list(islice(decided, _DECIDE_BATCH)):
            new = {
                index: _new_intent(group, decision, _channel_of(rt, decision))
                for index, (group, decision) in enumerate(batch)
                if decision.kind is DecisionKind.ATTEMPT
            }
            inserted = intents.add_intents(
                session, run_id=summary.run_id, intents=list(new.values()), now=written_at
            )
            held = [entry for g, d in batch if (entry := new_holdout(g, d)) is not None]
            holdouts.enter_holdouts(session, entries=held, now=written_at)
            records: list[DecisionRecord] = []
            for index, (group, decision) in enumerate(batch):
                intent_id: int | None = None
                explained = decision
                if index in new:
                    intent_id = inserted.get(new[index].dedupe_key)
                    if intent_id is not None:
                        summary.intent_ids.append(intent_id)
                    else:
                        # Same invoices, same attempt: an earlier intent (e.g. blocked or
                        # refused, see `dunning status`) stands for it; `dunning retry` re-sends.
                        explained = replace(
                            decision,
                            detail=f"{decision.detail} (an intent for these invoices and this "
                            "attempt already exists: see `dunning status`)",
                        )
                elif decision.kind is DecisionKind.EXHAUSTED and group_states.mark_exhausted(
                    session,
                    external_customer_id=group.customer.external_id,
                    currency=group.currency,
                    billing_entity_code=group.billing_entity_code,
                    now=now,
                ):
                    exhausted.append((group, decision))
                summary.decisions[decision.reason.value] += 1
                records.append(_record(group, explained, now, intent_id))
            decision_store.record_decisions(session, run_id=summary.run_id, decisions=records)
        skips = iter(collected.iter_skips())
        while skip_batch := list(islice(skips, _DECIDE_BATCH)):
            summary.skip_summaries += len(skip_batch)
            decision_store.record_decisions(
                session,
                run_id=summary.run_id,
                decisions=[_skip_record(skip, now) for skip in skip_batch],
            )
        decision_store.record_decisions(
            session,
            run_id=summary.run_id,
            decisions=[_malformed_record(item, now) for item in collected.malformed],
        )
    return exhausted


def _channel_of(rt: Runtime, decision: Decision) -> str:
    """The channel the decision's policy asks on (the default for a policy no longer there)."""
    policy = rt.policies.by_name(decision.policy) if decision.policy else None
    return policy.channel if policy is not None else PAYMENT_REQUEST


def _new_intent(group: Group, decision: Decision, channel: str) -> intents.NewIntent:
    assert decision.attempt_number is not None
    return intents.NewIntent(
        external_customer_id=group.customer.external_id,
        currency=group.currency,
        billing_entity_code=group.billing_entity_code,
        invoice_ids=group.invoice_ids,
        amount_cents=group.overdue_amount_cents,
        email=decision.email,
        policy=decision.policy,
        attempt_number=decision.attempt_number,
        policy_version=decision.policy_version,
        policy_hash=decision.policy_hash,
        channel=channel,
    )


def _run_exhaustion_actions(
    rt: Runtime, exhausted: list[tuple[Group, Decision]], now: datetime
) -> int:
    """Carry out `on_exhausted` once per group (already marked in the ledger: at most once)."""
    done = 0
    for group, decision in exhausted:
        action = decision.on_exhausted
        if action is None or action.kind is ExhaustionActionKind.STOP or action.url is None:
            continue
        payload = {
            "event": "dunning.exhausted",
            "external_customer_id": group.customer.external_id,
            "currency": group.currency,
            "billing_entity_code": group.billing_entity_code,
            "overdue_amount_cents": group.overdue_amount_cents,
            "lago_invoice_ids": list(group.invoice_ids),
            "policy": decision.policy,
            "at": now.isoformat(),
        }
        try:
            post_notification(action.url, payload, timeout_s=rt.settings.lago_timeout_s)
            done += 1
        except LagoError as exc:
            log.warning(
                "sweep.exhaustion_webhook_failed",
                customer=group.customer.external_id,
                currency=group.currency,
                error=str(exc),
            )
    return done


def _send_all(
    rt: Runtime,
    summary: SweepSummary,
    progress: SweepProgress | None,
    elsewhere: RequestedElsewhere,
) -> None:
    """Send the new intents and any older ones due again, with bounded concurrency. An older
    intent whose invoices a pending request we did not make covers, made after the intent
    (Lago's campaign asked while it waited), is withdrawn instead: never a second request."""
    with read_session(rt.engine) as session:
        due = intents.due_intent_ids(session, now=rt.clock(), limit=10_000)
    new = set(summary.intent_ids)
    older = _withdraw_asked_elsewhere(rt, summary, [i for i in due if i not in new], elsewhere)
    todo = list(dict.fromkeys([*summary.intent_ids, *older]))
    if not todo:
        return
    for done, outcome in enumerate(_send_concurrently(rt, todo), start=1):
        if progress is not None:
            progress.sending(done, len(todo))
        _count(summary, outcome)
        if outcome.status == "refused" and outcome.error_code == NOT_OVERDUE:
            retried = _retry_with_still_overdue(rt, summary, outcome)
            if retried is not None:
                _count(summary, retried)


def _withdraw_asked_elsewhere(
    rt: Runtime, summary: SweepSummary, intent_ids: list[int], elsewhere: RequestedElsewhere
) -> list[int]:
    """Cancel the intents a pending request we did not make covers, made since the intent
    (within a clock-skew margin: Lago stamps whole seconds); return the others."""
    if not intent_ids or not (elsewhere.invoices or elsewhere.customers):
        return intent_ids
    keep: list[int] = []
    now = rt.clock()
    with write_tx(rt.engine) as session:
        for intent_id in intent_ids:
            intent = intents.get_intent(session, intent_id)
            if intent is None:
                continue
            asked = [
                moment
                for lago_id in intent.invoice_ids
                if (moment := elsewhere.requested_at(lago_id, intent.external_customer_id))
            ]
            if asked and max(asked) > intent.created_at - _SKEW:
                reason = (
                    "already_requested: a pending payment request we did not make (made "
                    f"{max(asked).isoformat()}) covers these invoices"
                )
                if intents.cancel_intent(session, intent_id=intent_id, now=now, reason=reason):
                    summary.outcomes["cancelled"] += 1
                    continue
            keep.append(intent_id)
    return keep


def _send_one(rt: Runtime, intent_id: int) -> SendOutcome:
    return send_payment_request(
        engine=rt.engine,
        client=rt.client,
        intent_id=intent_id,
        owner=worker_identity(),
        now=rt.clock,
        settle_seconds=rt.settings.settle_seconds,
        lease_seconds=rt.settings.lease_seconds,
        max_ambiguous_tries=rt.settings.max_ambiguous_tries,
        channels=channels_for(rt),
    )


def _send_concurrently(rt: Runtime, intent_ids: list[int]) -> Iterator[SendOutcome]:
    """Claim, POST and record in batches (one claim and one record transaction per batch)."""
    return send_payment_requests(
        engine=rt.engine,
        client=rt.client,
        intent_ids=intent_ids,
        owner=worker_identity(),
        now=rt.clock,
        settle_seconds=rt.settings.settle_seconds,
        lease_seconds=rt.settings.lease_seconds,
        max_ambiguous_tries=rt.settings.max_ambiguous_tries,
        concurrency=rt.settings.http_concurrency,
        channels=channels_for(rt),
    )


def _retry_with_still_overdue(
    rt: Runtime, summary: SweepSummary, refused: SendOutcome
) -> SendOutcome | None:
    """Lago said some invoices are no longer overdue: refresh this customer only and try once
    more with the invoices of the intent that are still overdue."""
    with read_session(rt.engine) as session:
        intent = intents.get_intent(session, refused.intent_id)
    if intent is None:
        return None
    customer = intent.external_customer_id
    filters = InvoiceFilters.overdue(external_customer_id=customer)
    now = rt.clock()
    still: dict[str, int] = {}
    for item in rt.client.iter_invoices(filters):
        if not isinstance(item, Invoice):
            continue
        verdict = judge(item, now, only_customer=customer)
        if verdict.eligible and verdict.due_cents is not None:
            still[item.lago_id] = verdict.due_cents
    remaining = sorted(set(intent.invoice_ids) & still.keys())
    if not remaining or len(remaining) == len(intent.invoice_ids):
        return None
    with write_tx(rt.engine) as session:
        retry_id = intents.add_intent(
            session,
            run_id=summary.run_id,
            external_customer_id=intent.external_customer_id,
            currency=intent.currency,
            billing_entity_code=intent.billing_entity_code,
            invoice_ids=remaining,
            # What is asked now: the remaining invoices' current amounts, not the old total.
            amount_cents=sum(still[lago_id] for lago_id in remaining),
            email=intent.email,
            policy=intent.policy,
            attempt_number=intent.attempt_number,
            now=now,
            policy_version=intent.policy_version,
            policy_hash=intent.policy_hash,
            channel=intent.channel,
        )
    if retry_id is None:
        return None
    summary.intent_ids.append(retry_id)
    return _send_one(rt, retry_id)


def _reconcile(rt: Runtime, collected: CollectedGroups) -> None:
    from worker.services.reconcile_outcomes import reconcile_outcomes

    reconcile_outcomes(rt, now=rt.clock(), still_overdue=collected.overdue_invoice_ids)
    reconcile_holdouts(rt, now=rt.clock(), still_overdue=collected.overdue_invoice_ids)


def _finish(
    rt: Runtime,
    summary: SweepSummary,
    *,
    status: str,
    error: str | None,
    started: float,
    tick: Callable[[], float],
    calls_before: int,
) -> None:
    summary.api_calls = rt.client.calls_total() - calls_before
    summary.duration_s = tick() - started
    metrics.record_sweep(status, summary.duration_s)
    metrics.record_decisions(summary.decisions)
    if summary.run_id is None:
        return
    counts = runs.RunCounts(
        invoices_seen=summary.invoices_seen,
        groups=summary.groups,
        intents_created=len(summary.intent_ids),
        requests_sent=summary.requests_created,
        skipped=summary.skipped,
        malformed=summary.malformed,
        api_calls=summary.api_calls,
    )
    with write_tx(rt.engine) as session:
        runs.finish_run(
            session,
            run_id=summary.run_id,
            now=rt.clock(),
            status=status,
            counts=counts,
            error=error,
        )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _count(summary: SweepSummary, outcome: SendOutcome) -> None:
    summary.outcomes[outcome.status] += 1
    if outcome.status == "sent":
        summary.sent_by_channel[outcome.channel or PAYMENT_REQUEST] += 1
    if outcome.status == "refused" and outcome.error_code:
        summary.refused_codes[outcome.error_code] += 1
    if outcome.status == "blocked":
        raise FeatureUnavailableError(
            outcome.detail or "this Lago instance lacks the premium licence",
            endpoint="POST /api/v1/payment_requests",
            status=403,
            code="feature_unavailable",
        )


def _record(
    group: Group, decision: Decision, now: datetime, intent_id: int | None
) -> DecisionRecord:
    return DecisionRecord(
        external_customer_id=group.customer.external_id,
        currency=group.currency,
        billing_entity_code=group.billing_entity_code,
        policy=decision.policy,
        kind=decision.kind.value,
        reason=decision.reason.value,
        detail=decision.detail,
        amount_cents=group.overdue_amount_cents,
        invoice_count=len(group.invoices),
        next_eligible_at=decision.next_eligible_at,
        decided_at=now,
        intent_id=intent_id,
        policy_version=decision.policy_version,
        policy_hash=decision.policy_hash,
    )


def _skip_record(skip: SkippedInvoices, now: datetime) -> DecisionRecord:
    return DecisionRecord(
        external_customer_id=skip.external_customer_id,
        currency=skip.currency,
        billing_entity_code=skip.billing_entity_code,
        policy=None,
        kind=DecisionKind.SKIP.value,
        reason=skip.reason.value,
        detail=_skip_detail(skip),
        amount_cents=skip.amount_cents,
        invoice_count=skip.invoice_count,
        next_eligible_at=None,
        decided_at=now,
    )


def _skip_detail(skip: SkippedInvoices) -> str:
    return f"{skip.invoice_count} invoice(s) not dunned: {skip.detail}"


def _skip_plan_row(skip: SkippedInvoices) -> PlanRow:
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
        detail=_skip_detail(skip),
    )


def _malformed_record(item: Malformed, now: datetime) -> DecisionRecord:
    return DecisionRecord(
        external_customer_id=(item.external_customer_id or UNKNOWN)[:255],
        currency="---",
        billing_entity_code=None,
        policy=None,
        kind=DecisionKind.SKIP.value,
        reason=Reason.MALFORMED_RECORD.value,
        detail=f"invoice {item.lago_id or '(no id)'}: {item.error}",
        amount_cents=None,
        invoice_count=0,
        next_eligible_at=None,
        decided_at=now,
    )


def _plan_row(group: Group, decision: Decision) -> PlanRow:
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]
