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
   concurrency (from several processes with `DUNNING_SEND_PROCESSES`: `send_helpers`). A
   405 `invoices_not_overdue` refreshes only that customer and retries once with the
   invoices still eligible. In Celery mode the task fans the intent ids out instead.
7. Run the exhaustion actions, reconcile outcomes, and finish the run with its counts.
A dry run does steps 2-4 only and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from worker import metrics
from worker.lago.errors import FeatureUnavailableError, LagoError
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice, MalformedRecord
from worker.lago.notify import post_notification
from worker.logging import get_logger
from worker.policy.types import Decision, ExhaustionActionKind, Group, Reason
from worker.services.collect_groups import CollectedGroups, collect_groups
from worker.services.group_facts import decide_groups, remember_policies
from worker.services.overdue_snapshot import record_overdue_snapshot
from worker.services.reconcile_holdouts import reconcile_holdouts
from worker.services.requested_elsewhere import requested_elsewhere
from worker.services.run_heartbeat import Heartbeat, abandon_dead_runs
from worker.services.runtime import Runtime
from worker.services.send_due_intents import send_due_intents
from worker.services.send_helpers import helpers_wanted, send_helpers
from worker.services.sweep_summary import (
    PlanRow,
    SweepProgress,
    SweepSummary,
    plan_row,
    skip_plan_row,
)
from worker.services.write_decisions import write_decisions
from worker.store import runs
from worker.store.db import write_tx

__all__ = ["PlanRow", "SweepProgress", "SweepSummary", "run_sweep"]

log = get_logger(__name__)


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

    # The helpers are forked first, before the heartbeat or any other thread of the sweep.
    wanted = helpers_wanted(rt) if send_inline and not dry_run and not customer else 0
    with send_helpers(rt, wanted) as helpers, Heartbeat(rt.engine, summary.run_id, rt.clock):
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
                        summary.plan.append(plan_row(group, decision))
                    summary.plan.extend(skip_plan_row(skip) for skip in collected.iter_skips())
                    summary.api_calls = rt.client.calls_total() - calls_before
                    summary.duration_s = tick() - started
                    return summary
                metrics.record_invoices_judged(collected.invoices_by_reason)
                exhausted = write_decisions(rt, summary, decided, collected, now)
                summary.exhaustion_actions = _run_exhaustion_actions(rt, exhausted, now)
                if send_inline:
                    send_due_intents(rt, summary, progress, elsewhere.covered, helpers)
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
                helper_calls=helpers.api_calls if helpers else 0,
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
                    helper_calls=helpers.api_calls if helpers else 0,
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
            helper_calls=helpers.api_calls if helpers else 0,
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
    helper_calls: int = 0,
) -> None:
    summary.api_calls = rt.client.calls_total() - calls_before + helper_calls
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]
