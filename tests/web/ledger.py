"""Test helpers: a Runtime on a migrated database and the sandbox, and sent intents in it.

`sent_intent` does what a sweep + send would: it creates a REAL payment request in the
sandbox, then records the intent as sent and counts the attempt for the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from config import load_settings
from tests.fixtures.sandbox import SandboxHandle
from worker.services.runtime import Runtime, open_runtime
from worker.store.db import read_session, write_tx
from worker.store.group_states import record_attempt
from worker.store.intents import add_intent, claim_intents, record_sent
from worker.store.models import GroupStateRow, PaymentRequestIntent

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_runtime(db_url: str, sandbox: SandboxHandle, tmp_path: Path, **settings: Any) -> Runtime:
    """`settings` (field names) override the test defaults below."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "lago_api_key": sandbox.api_key,
        "rate_limit_rps": 0,
        "lago_max_retries": 0,
        "lago_timeout_s": 5,
    }
    return open_runtime(load_settings(**{**values, **settings}), lago_url=sandbox.url)


def overdue_invoices(sandbox: SandboxHandle, customer: str, currency: str) -> list[dict[str, Any]]:
    return [
        invoice
        for invoice in sandbox.invoices()
        if invoice["customer"]["external_id"] == customer
        and invoice["currency"] == currency
        and invoice["payment_overdue"]
    ]


def sent_intent(
    rt: Runtime,
    customer: str,
    invoices: Sequence[dict[str, Any]],
    *,
    at: datetime = T0,
    attempt: int = 1,
    policy: str | None = "default",
    create_in_lago: bool = True,
) -> int:
    """Record an intent as sent (with a real payment request unless told otherwise)."""
    ids = [invoice["lago_id"] for invoice in invoices]
    currency = invoices[0]["currency"]
    entity = invoices[0]["billing_entity_code"]
    amount = sum(int(invoice["total_due_amount_cents"]) for invoice in invoices)
    if create_in_lago:
        request = rt.client.create_payment_request(customer, ids)
        lago_id, lago_invoice_ids = request.lago_id, sorted(request.invoice_ids)
    else:
        lago_id, lago_invoice_ids = f"pr-{customer}-{attempt}-{at.timestamp()}", sorted(ids)
    with write_tx(rt.engine) as session:
        intent_id = add_intent(
            session,
            run_id=None,
            external_customer_id=customer,
            currency=currency,
            billing_entity_code=entity,
            invoice_ids=ids,
            amount_cents=amount,
            email=None,
            policy=policy,
            attempt_number=attempt,
            now=at,
        )
    assert intent_id is not None
    claimed = claim_intents(
        rt.engine, owner="test", now=at, lease_seconds=60, limit=1, intent_ids=[intent_id]
    )
    assert [c.id for c in claimed] == [intent_id]
    with write_tx(rt.engine) as session:
        assert record_sent(
            session,
            intent_id=intent_id,
            owner="test",
            now=at,
            lago_payment_request_id=lago_id,
            lago_invoice_ids=lago_invoice_ids,
        )
        record_attempt(
            session,
            external_customer_id=customer,
            currency=currency,
            billing_entity_code=entity,
            invoice_ids=ids,
            now=at,
        )
    return intent_id


def intent_row(rt: Runtime, intent_id: int) -> PaymentRequestIntent:
    with read_session(rt.engine) as session:
        row = session.get(PaymentRequestIntent, intent_id)
        assert row is not None
        return row


def group_row(rt: Runtime, customer: str, currency: str) -> GroupStateRow:
    with read_session(rt.engine) as session:
        return session.execute(
            select(GroupStateRow).where(
                GroupStateRow.external_customer_id == customer, GroupStateRow.currency == currency
            )
        ).scalar_one()


def later(minutes: int = 0, hours: int = 0, days: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)
