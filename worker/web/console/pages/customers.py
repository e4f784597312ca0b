"""Customers: search by external id or e-mail; one customer's timeline with its controls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from worker.read.customers import customer_timeline, find_customers
from worker.read.intents import open_rivals
from worker.store.requeue import RETRYABLE_STATUSES


def search(session: Session, *, query: str) -> dict[str, Any]:
    matches = find_customers(session, query) if query else []
    return {"query": query, "matches": matches}


def timeline(session: Session, *, customer: str, now: datetime) -> dict[str, Any]:
    found = customer_timeline(session, customer, now=now)
    rivals = open_rivals(session, (intent.id for intent in found.intents))
    return {"timeline": found, "retryable": RETRYABLE_STATUSES, "open_rivals": rivals}
