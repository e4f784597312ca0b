"""Small builders for hand-made sandbox data documents."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

TODAY = datetime.now(UTC).date()


def days_ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def new_id() -> str:
    return str(uuid.uuid4())


def customer(external_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "email": f"{external_id}@billing.example",
        "currency": "USD",
        "billing_entity_code": "acme_us",
        **fields,
    }


def invoice(external_customer_id: str, **fields: Any) -> dict[str, Any]:
    """An overdue, unpaid, payable USD invoice of 100.00 unless fields say otherwise."""
    return {
        "lago_id": new_id(),
        "customer": {"external_id": external_customer_id},
        "currency": "USD",
        "billing_entity_code": "acme_us",
        "total_amount_cents": 10_000,
        "issuing_date": days_ago(40),
        "net_payment_term": 30,
        "status": "finalized",
        "payment_status": "pending",
        **fields,
    }


def document(customers: list[dict[str, Any]], invoices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"customers": customers, "invoices": invoices}


def as_date(value: str) -> date:
    return date.fromisoformat(value)
