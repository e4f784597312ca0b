"""Apply a verified Lago webhook to the ledger, once per `X-Lago-Unique-Key`.

The signature is checked by the web layer before this is called. Here:
1. a replay (the unique key was already processed) does nothing;
2. the facts needed are gathered from the payload, and any other invoice of a dunned group is
   confirmed with `GET /api/v1/invoices/{id}` (no transaction is open during HTTP);
3. one write transaction inserts the `webhook_events` row (UNIQUE key: a concurrent duplicate
   delivery inserts nothing and changes nothing) and applies the changes.

What changes the ledger:
- `invoice.payment_status_updated`, `payment_receipt.created`: settled invoices settle the
  intents that dunned them (outcome, recovered amount, group counter reset when paid) and
  cancel any not-yet-sent intent that includes them, so the next tick does not dun a customer
  who just paid;
- `payment_request.payment_status_updated`: our request's charge succeeded (paid) or failed;
- `payment_request.payment_failure`: the charge failed (outcome failed, check again later);
- `invoice.payment_overdue`: the invoice is unpaid: postpone checks of intents covering it.
Other types are recorded (for dedupe) and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.lago.models import Invoice, PaymentReceipt, PaymentRequest
from worker.logging import get_logger
from worker.services.reconcile_outcomes import (
    Assessment,
    InvoiceLookupError,
    Recorded,
    TrackedIntent,
    assess_outcome,
    fetch_invoices,
    invoice_state,
    next_check_delay,
    publish,
    record_assessment,
    unsettled_intents_of,
)
from worker.services.runtime import Runtime
from worker.store.db import read_session, write_tx
from worker.store.intents import cancel_intent
from worker.store.models import PaymentRequestIntent
from worker.store.outcome_checks import schedule_check
from worker.store.webhook_events import insert_webhook_event, webhook_seen

log = get_logger(__name__)

HANDLED_TYPES = frozenset(
    {
        "invoice.payment_status_updated",
        "invoice.payment_overdue",
        "payment_request.payment_status_updated",
        "payment_request.payment_failure",
        "payment_receipt.created",
    }
)
MAX_UNIQUE_KEY_LENGTH = 255
FAILURE_RECHECK = timedelta(minutes=15)


class WebhookPayloadError(Exception):
    """The (authentic) webhook body is not what Lago sends. `str()` is one line."""


class PaymentRequestFailure(BaseModel):
    """The object of `payment_request.payment_failure` webhooks."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lago_payment_request_id: str
    lago_invoice_ids: list[str] = []
    external_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    result: Literal["processed", "duplicate", "ignored"]
    webhook_type: str
    intents_updated: int = 0
    intents_cancelled: int = 0
    groups_reset: int = 0


Plan = Callable[[Session], tuple[list[Recorded], int]]
"""Applies the changes inside the write transaction; returns (outcomes, intents cancelled)."""


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body, with a string `webhook_type`."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookPayloadError("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("body is not a JSON object")
    webhook_type = payload.get("webhook_type")
    if not isinstance(webhook_type, str) or not webhook_type:
        raise WebhookPayloadError("body lacks a 'webhook_type' string")
    return payload


def apply_webhook(
    rt: Runtime,
    *,
    unique_key: str,
    payload: Mapping[str, Any],
    now: datetime | None = None,
) -> WebhookOutcome:
    """Apply one webhook; raises `WebhookPayloadError` when its object is malformed."""
    if not unique_key or len(unique_key) > MAX_UNIQUE_KEY_LENGTH:
        raise WebhookPayloadError("X-Lago-Unique-Key is missing or too long")
    webhook_type = str(payload.get("webhook_type", ""))
    now = now or rt.clock()
    bound = log.bind(unique_key=unique_key, webhook_type=webhook_type)
    if _already_seen(rt, unique_key):
        bound.info("webhook replay ignored")
        return WebhookOutcome("duplicate", webhook_type)
    plan = _plan(rt, webhook_type, payload, now=now) if webhook_type in HANDLED_TYPES else None
    with write_tx(rt.engine) as session:
        if not insert_webhook_event(
            session, unique_key=unique_key, webhook_type=webhook_type, now=now
        ):
            bound.info("webhook replay ignored")
            return WebhookOutcome("duplicate", webhook_type)
        recorded, cancelled = plan(session) if plan is not None else ([], 0)
    publish(recorded, source="webhook")
    outcome = WebhookOutcome(
        "processed" if plan is not None else "ignored",
        webhook_type,
        intents_updated=len(recorded),
        intents_cancelled=cancelled,
        groups_reset=sum(1 for item in recorded if item.group_reset),
    )
    bound.info(
        "webhook applied",
        result=outcome.result,
        intents_updated=outcome.intents_updated,
        intents_cancelled=outcome.intents_cancelled,
        groups_reset=outcome.groups_reset,
    )
    return outcome


def _already_seen(rt: Runtime, unique_key: str) -> bool:
    with read_session(rt.engine) as session:
        return webhook_seen(session, unique_key)


def _object(payload: Mapping[str, Any], key: str, model: type[Any]) -> Any:
    try:
        return model.model_validate(payload.get(key))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or key
        raise WebhookPayloadError(f"'{key}' object is malformed at {where}") from None


def _plan(rt: Runtime, webhook_type: str, payload: Mapping[str, Any], *, now: datetime) -> Plan:
    if webhook_type == "invoice.payment_status_updated":
        invoice: Invoice = _object(payload, "invoice", Invoice)
        return _plan_invoices_settled(rt, [invoice], _customer_of(invoice), now=now)
    if webhook_type == "invoice.payment_overdue":
        return _plan_overdue(rt, _object(payload, "invoice", Invoice), now=now)
    if webhook_type == "payment_request.payment_status_updated":
        request: PaymentRequest = _object(payload, "payment_request", PaymentRequest)
        return _plan_request_status(rt, request, now=now)
    if webhook_type == "payment_request.payment_failure":
        failure: PaymentRequestFailure = _object(
            payload, "payment_provider_payment_request_payment_error", PaymentRequestFailure
        )
        return _plan_request_failed(rt, failure.lago_payment_request_id, now=now)
    receipt: PaymentReceipt = _object(payload, "payment_receipt", PaymentReceipt)
    return _plan_receipt(rt, receipt, now=now)


def _customer_of(invoice: Invoice) -> str | None:
    return invoice.customer.external_id if invoice.customer is not None else None


# -- invoices paid (or voided, or lost in a dispute) ----------------------------------------


def _plan_invoices_settled(
    rt: Runtime, known: Iterable[Invoice], external_customer_id: str | None, *, now: datetime
) -> Plan:
    """Settle the intents covering these invoices; GET the other invoices of each intent."""
    known_by_id = {invoice.lago_id: invoice for invoice in known}
    moved = {
        lago_id
        for lago_id, invoice in known_by_id.items()
        if invoice_state(invoice) != "open" or (invoice.total_paid_amount_cents or 0) > 0
    }
    settled = {lago_id for lago_id in moved if invoice_state(known_by_id[lago_id]) != "open"}
    with read_session(rt.engine) as session:
        intents = unsettled_intents_of(
            session, external_customer_id=external_customer_id, invoice_ids=known_by_id
        )
    assessments: list[tuple[TrackedIntent, Assessment | None]] = []
    for intent in intents:
        if not moved & set(intent.invoice_ids):
            # Nothing was paid on this intent's invoices: let reconciliation look soon.
            assessments.append((intent, None))
            continue
        try:
            invoices = fetch_invoices(rt, intent.invoice_ids, known=known_by_id)
        except InvoiceLookupError as exc:
            log.warning("cannot confirm invoices for webhook", intent_id=intent.id, error=str(exc))
            assessments.append((intent, None))
            continue
        ordered = [invoices[invoice_id] for invoice_id in intent.invoice_ids]
        assessments.append(
            (
                intent,
                assess_outcome(
                    intent.amount_cents, ordered, request_failed=intent.outcome == "failed"
                ),
            )
        )

    def apply(session: Session) -> tuple[list[Recorded], int]:
        recorded: list[Recorded] = []
        for intent, assessment in assessments:
            if assessment is None:
                schedule_check(session, intent.id, next_check_at=now, checked_at=None)
                continue
            item = record_assessment(
                session, intent.id, assessment, now=now, next_check_at=now + next_check_delay(0)
            )
            if item is not None:
                recorded.append(item)
        cancelled = cancel_pending_covering(
            session, settled, external_customer_id=external_customer_id, now=now
        )
        return recorded, cancelled

    return apply


def cancel_pending_covering(
    session: Session,
    settled_invoice_ids: set[str],
    *,
    external_customer_id: str | None,
    now: datetime,
) -> int:
    """Cancel not-yet-claimed intents that include a settled invoice (never dun a payer).

    Only `pending` intents: a `sending` one is claimed and its POST may be in flight (Lago
    refuses it with 405 invoices_not_overdue anyway). The next sweep re-plans the group with
    whatever is still overdue.
    """
    if not settled_invoice_ids:
        return 0
    statement = select(PaymentRequestIntent).where(PaymentRequestIntent.status == "pending")
    if external_customer_id is not None:
        statement = statement.where(
            PaymentRequestIntent.external_customer_id == external_customer_id
        )
    cancelled = 0
    for row in session.execute(statement).scalars():
        if settled_invoice_ids & set(row.invoice_ids) and cancel_intent(
            session,
            intent_id=row.id,
            now=now,
            reason="an invoice of the group was paid or settled before sending",
        ):
            cancelled += 1
    return cancelled


# -- payment requests -----------------------------------------------------------------------


def _intent_for_request(rt: Runtime, lago_payment_request_id: str) -> TrackedIntent | None:
    with read_session(rt.engine) as session:
        row = session.execute(
            select(PaymentRequestIntent).where(
                PaymentRequestIntent.lago_payment_request_id == lago_payment_request_id
            )
        ).scalar_one_or_none()
        return TrackedIntent.from_row(row) if row is not None else None


def _plan_request_status(rt: Runtime, request: PaymentRequest, *, now: datetime) -> Plan:
    intent = _intent_for_request(rt, request.lago_id)
    if intent is None or request.payment_status not in ("succeeded", "failed"):
        return _nothing  # pending, or a status we do not know: nothing is proven
    invoices = {invoice.lago_id: invoice for invoice in request.invoices}
    if request.payment_status == "succeeded":
        asked = intent.amount_cents if request.amount_cents is None else request.amount_cents
        assessment = assess_outcome(asked, [], request_status="succeeded")
    elif set(intent.invoice_ids) <= set(invoices):
        ordered = [invoices[invoice_id] for invoice_id in intent.invoice_ids]
        assessment = assess_outcome(intent.amount_cents, ordered, request_status="failed")
    else:
        assessment = Assessment("failed", 0, False)
    settled = {lago_id for lago_id, invoice in invoices.items() if invoice_state(invoice) != "open"}
    if request.payment_status == "succeeded":
        settled |= set(invoices)

    def apply(session: Session) -> tuple[list[Recorded], int]:
        item = record_assessment(
            session,
            intent.id,
            assessment,
            now=now,
            checked=False,
            next_check_at=now + FAILURE_RECHECK,
        )
        cancelled = cancel_pending_covering(
            session, settled, external_customer_id=intent.external_customer_id, now=now
        )
        return ([item] if item is not None else []), cancelled

    return apply


def _plan_request_failed(rt: Runtime, lago_payment_request_id: str, *, now: datetime) -> Plan:
    intent = _intent_for_request(rt, lago_payment_request_id)
    if intent is None:
        return _nothing
    # A failed charge after a partial payment keeps the partial payment as the outcome.
    outcome: Literal["failed", "partially_paid"] = (
        "partially_paid" if intent.outcome == "partially_paid" else "failed"
    )

    def apply(session: Session) -> tuple[list[Recorded], int]:
        item = record_assessment(
            session,
            intent.id,
            Assessment(outcome, 0, False),
            now=now,
            checked=False,
            next_check_at=now + FAILURE_RECHECK,
        )
        return ([item] if item is not None else []), 0

    return apply


# -- receipts and overdue notices -----------------------------------------------------------


def _plan_receipt(rt: Runtime, receipt: PaymentReceipt, *, now: datetime) -> Plan:
    payment = receipt.payment
    if payment.payable_type == "PaymentRequest" and payment.lago_payable_id:
        intent = _intent_for_request(rt, payment.lago_payable_id)
        if intent is not None:
            return _plan_request_status(
                rt,
                PaymentRequest(
                    lago_id=payment.lago_payable_id,
                    amount_cents=payment.amount_cents,
                    amount_currency=payment.amount_currency,
                    payment_status="succeeded",
                    created_at=payment.created_at,
                ),
                now=now,
            )
    if not payment.invoice_ids:
        return _nothing
    # A receipt says money arrived, not whether the invoices are settled: confirm each.
    try:
        confirmed = fetch_invoices(rt, payment.invoice_ids)
    except InvoiceLookupError as exc:
        log.warning("cannot confirm receipt invoices", error=str(exc))
        confirmed = {}
    if not confirmed:
        return _plan_check_soon(rt, payment.invoice_ids, payment.external_customer_id, now=now)
    return _plan_invoices_settled(rt, confirmed.values(), payment.external_customer_id, now=now)


def _plan_check_soon(
    rt: Runtime, invoice_ids: Iterable[str], external_customer_id: str | None, *, now: datetime
) -> Plan:
    with read_session(rt.engine) as session:
        intents = unsettled_intents_of(
            session, external_customer_id=external_customer_id, invoice_ids=invoice_ids
        )

    def apply(session: Session) -> tuple[list[Recorded], int]:
        for intent in intents:
            schedule_check(session, intent.id, next_check_at=now, checked_at=None)
        return [], 0

    return apply


def _plan_overdue(rt: Runtime, invoice: Invoice, *, now: datetime) -> Plan:
    """Lago says the invoice is overdue and unpaid: no need to GET it for a while."""
    if invoice_state(invoice) != "open" or (invoice.total_paid_amount_cents or 0) > 0:
        return _plan_invoices_settled(rt, [invoice], _customer_of(invoice), now=now)
    with read_session(rt.engine) as session:
        intents = unsettled_intents_of(
            session, external_customer_id=_customer_of(invoice), invoice_ids=[invoice.lago_id]
        )

    def apply(session: Session) -> tuple[list[Recorded], int]:
        for intent in intents:
            if len(intent.invoice_ids) == 1:
                schedule_check(
                    session, intent.id, next_check_at=now + next_check_delay(1), checked_at=None
                )
        return [], 0

    return apply


def _nothing(session: Session) -> tuple[list[Recorded], int]:
    return [], 0
