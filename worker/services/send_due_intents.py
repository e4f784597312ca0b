"""Step 6 of a sweep (inline mode): send the new intents and the older ones due again.

Sent with bounded concurrency through the pipeline of `send_payment_request`. An older intent
that a pending payment request we did not make covers (made since the intent) is withdrawn
instead. A 405 `invoices_not_overdue` refreshes only that customer and retries once with the
invoices still eligible.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Generator
from contextlib import closing
from datetime import timedelta
from typing import TYPE_CHECKING

from worker.lago.errors import FeatureUnavailableError
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice
from worker.services.channels import PAYMENT_REQUEST, channels_for
from worker.services.invoice_facts import judge
from worker.services.requested_elsewhere import RequestedElsewhere
from worker.services.runtime import Runtime
from worker.services.send_payment_request import (
    SendOutcome,
    send_payment_request,
    send_payment_requests,
)
from worker.services.sweep_summary import SweepProgress, SweepSummary
from worker.store import intents
from worker.store.db import read_session, write_tx

if TYPE_CHECKING:
    from worker.services.send_helpers import SendHelpers

NOT_OVERDUE = "invoices_not_overdue"
#: Clock skew allowed between Lago's timestamps (whole seconds) and ours.
_SKEW = timedelta(minutes=5)


def worker_identity() -> str:
    """A lease owner name unique to one send: host and process (so an operator can tell who
    holds a claim) plus a random suffix (so two threads never share a lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def send_due_intents(
    rt: Runtime,
    summary: SweepSummary,
    progress: SweepProgress | None,
    elsewhere: RequestedElsewhere,
    helpers: SendHelpers | None = None,
) -> None:
    """Send the new intents and any older ones due again, with bounded concurrency (shared
    with `helpers`, processes forked to send too, when given). An older intent whose invoices
    a pending request we did not make covers, made after the intent (Lago's campaign asked
    while it waited), is withdrawn instead: never a second request."""
    with read_session(rt.engine) as session:
        due = intents.due_intent_ids(session, now=rt.clock(), limit=10_000)
    # The set is of the due ids (at most 10,000), not of the new ones (one per group asked:
    # 187,000 of them in a 1,000,000-invoice sweep).
    new_due = set(due).intersection(summary.intent_ids)
    older = _withdraw_asked_elsewhere(rt, summary, [i for i in due if i not in new_due], elsewhere)
    todo = [*summary.intent_ids, *older]  # each id once: new ids are fresh, older ones not new
    if not todo:
        return
    outcomes = helpers.send(rt, todo) if helpers else send_concurrently(rt, todo)
    # Closed at once when counting stops the run (blocked): what is in flight is recorded.
    with closing(outcomes):
        for done, outcome in enumerate(outcomes, start=1):
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


def send_concurrently(
    rt: Runtime, intent_ids: list[int], stop: threading.Event | None = None
) -> Generator[SendOutcome, None, None]:
    """Claim, POST and record through the pipeline of `send_payment_requests` (which winds
    down once `stop` is set)."""
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
        stop=stop,
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
