"""A realistic billing history for backtests: months of invoices per customer, each paid (or
not) some days after its due date with a payment dated then, and past payment requests.

Each customer gets a monthly invoice from `today - history_days` on, and a payer profile that
sets how late they pay: prompt (around the due date), late (days to weeks), slow (weeks to
months) or bad (rarely pays). Some invoices are partially paid first, a few are voided. About
half of the invoices that ran more than a week late got a payment request a few days after
they became overdue (as Lago's own dunning would have sent). Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

from sandbox.model import JsonObject

_PROFILES = (("prompt", 0.40), ("late", 0.35), ("slow", 0.15), ("bad", 0.10))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(day: date, rng: random.Random, start_hour: int = 8, end_hour: int = 18) -> str:
    moment = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
        seconds=rng.randint(start_hour * 3600, end_hour * 3600 - 1)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _profile(rng: random.Random) -> str:
    roll, total = rng.random(), 0.0
    for name, share in _PROFILES:
        total += share
        if roll < total:
            return name
    return _PROFILES[-1][0]


def _days_late(rng: random.Random, profile: str) -> int | None:
    """Days after the due date the invoice gets paid (negative = early); None = never."""
    if profile == "prompt":
        return rng.randint(-10, 2)
    if profile == "late":
        return rng.randint(3, 28)
    if profile == "slow":
        return rng.randint(20, 80)
    return rng.randint(45, 120) if rng.random() < 0.3 else None


def add_history(
    document: dict[str, list[JsonObject]], *, history_days: int, seed: int, today: date
) -> dict[str, list[JsonObject]]:
    """Replace the document's invoices with `history_days` of monthly invoices per customer,
    adding the payments and payment requests that history holds."""
    rng = random.Random(seed * 7919 + history_days)
    invoices: list[JsonObject] = []
    payments: list[JsonObject] = []
    requests: list[JsonObject] = []
    start = today - timedelta(days=history_days)
    for customer in document["customers"]:
        profile = _profile(rng)
        term: int = customer["net_payment_term"] or 15
        issuing = start + timedelta(days=rng.randint(0, 29))
        sequence = 0
        while issuing < today:
            sequence += 1
            invoice, paid, asked = _invoice(rng, customer, issuing, term, sequence, profile, today)
            invoices.append(invoice)
            payments.extend(paid)
            requests.extend(asked)
            issuing += timedelta(days=30)
    return {
        "customers": document["customers"],
        "invoices": invoices,
        "payments": payments,
        "payment_requests": requests,
    }


def _invoice(
    rng: random.Random,
    customer: JsonObject,
    issuing: date,
    term: int,
    sequence: int,
    profile: str,
    today: date,
) -> tuple[JsonObject, list[JsonObject], list[JsonObject]]:
    due = issuing + timedelta(days=term)
    total = rng.randint(20, 3_000) * 100
    lago_id = _uuid(rng)
    late = _days_late(rng, profile)
    paid_on = due + timedelta(days=late) if late is not None else None
    if paid_on is not None and paid_on <= issuing:
        paid_on = issuing + timedelta(days=1)
    payments: list[JsonObject] = []
    paid_cents = 0
    if paid_on is not None and paid_on < today:
        if late is not None and late > 10 and rng.random() < 0.15:
            first = rng.randint(total // 5, total // 2)
            partial_on = due + timedelta(days=max(1, late // 2))
            payments.append(_payment(rng, lago_id, first, partial_on))
            paid_cents = first
        payments.append(_payment(rng, lago_id, total - paid_cents, paid_on))
        paid_cents = total
    voided = paid_cents == 0 and rng.random() < 0.03 and due + timedelta(days=20) < today
    status = "voided" if voided else "finalized"
    settled = paid_cents >= total
    invoice: JsonObject = {
        "lago_id": lago_id,
        "sequential_id": sequence,
        "number": f"{customer['slug']}-{sequence:03d}",
        "customer": {"external_id": customer["external_id"]},
        "billing_entity_code": customer["billing_entity_code"],
        "currency": customer["currency"],
        "invoice_type": "subscription",
        "status": status,
        "payment_status": "succeeded" if settled else "pending",
        "payment_overdue": status == "finalized" and not settled and due < today,
        "issuing_date": issuing.isoformat(),
        "payment_due_date": due.isoformat(),
        "net_payment_term": term,
        "total_amount_cents": total,
        "total_paid_amount_cents": paid_cents if settled else 0,
        "ready_for_payment_processing": not settled and not voided,
        "created_at": _stamp(issuing, rng, 0, 6),
    }
    if voided:
        invoice["voided_at"] = _stamp(due + timedelta(days=20), rng)
    if not settled and payments:
        # A partial payment of an invoice still open today.
        invoice["total_paid_amount_cents"] = sum(p["amount_cents"] for p in payments)
    asked: list[JsonObject] = []
    ran_late = paid_on is None or (paid_on - due).days > 7
    asked_on = due + timedelta(days=rng.randint(4, 9))
    if ran_late and rng.random() < 0.5 and asked_on < min(paid_on or today, today):
        asked.append(
            {
                "external_customer_id": customer["external_id"],
                "lago_invoice_ids": [lago_id],
                "created_at": _stamp(asked_on, rng, 9, 17),
                "email": customer["email"],
            }
        )
    return invoice, payments, asked


def _payment(rng: random.Random, invoice_id: str, cents: int, day: date) -> JsonObject:
    return {
        "lago_id": _uuid(rng),
        "invoice_id": invoice_id,
        "amount_cents": cents,
        "created_at": _stamp(day, rng),
        "reference": "history",
    }


__all__ = ["add_history"]
