"""Deterministic, realistic demo data in the data-document shape (`{"customers", "invoices"}`).

The same spec and `today` always give the same document. The first two customers are fixed
archetypes so even tiny datasets exercise the interesting paths:

- customer 1: every invoice finalized, pending, overdue and ready for payment (one currency);
- customer 2: overdue invoices in two currencies and two billing entities;
- the rest: a random mix of currencies, billing entities, time zones, customer types, unpaid,
  partially paid, fully paid, not yet due, self-billed, draft, voided, payment-in-flight and
  fully credited (overdue with nothing due) invoices.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.model import JsonObject

BILLING_ENTITIES = ("acme_us", "acme_eu", "acme_uk")


@dataclass(frozen=True, slots=True)
class _Region:
    country: str
    currency: str
    billing_entity: str
    timezones: tuple[str, ...]


_REGIONS = (
    _Region("US", "USD", "acme_us", ("America/New_York", "America/Chicago", "America/Los_Angeles")),
    _Region("FR", "EUR", "acme_eu", ("Europe/Paris",)),
    _Region("DE", "EUR", "acme_eu", ("Europe/Berlin",)),
    _Region("ES", "EUR", "acme_eu", ("Europe/Madrid",)),
    _Region("GB", "GBP", "acme_uk", ("Europe/London",)),
    _Region("AU", "AUD", "acme_us", ("Australia/Sydney",)),
    _Region("SG", "SGD", "acme_us", ("Asia/Singapore",)),
    _Region("IN", "INR", "acme_us", ("Asia/Kolkata",)),
    _Region("BR", "USD", "acme_us", ("America/Sao_Paulo",)),
    _Region("JP", "USD", "acme_us", ("Asia/Tokyo",)),
)
_SEGMENTS = ("enterprise", "mid_market", "smb", "startup")
_FIRST_NAMES = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Ritchie", "Liskov")
_COMPANY_WORDS = ("Hooli", "Initech", "Globex", "Umbrella", "Stark", "Wayne", "Acme", "Pied Piper")
_COMPANY_SUFFIXES = ("Inc", "GmbH", "SAS", "Ltd", "LLC", "Pty Ltd")
_INVOICE_TYPES = ("subscription",) * 8 + ("one_off", "add_on", "progressive_billing")


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    """`odd_invoices` adds what a careless Lago lists too: invoices that lost a payment
    dispute and deleted ones (off by default, so tidy datasets stay the same)."""

    customers: int = 50
    invoices_per_customer: int = 4
    seed: int = 42
    odd_invoices: bool = False
    # > 0: months of monthly invoices with payments and payment requests dated in the past,
    # for backtests (`invoices_per_customer` is then unused; see sandbox/history.py).
    history_days: int = 0

    def __post_init__(self) -> None:
        for name in ("customers", "invoices_per_customer", "history_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def generate_document(spec: GeneratorSpec, today: date) -> dict[str, list[JsonObject]]:
    rng = random.Random(spec.seed)
    customers: list[JsonObject] = []
    invoices: list[JsonObject] = []
    for index in range(spec.customers):
        customer, region = _customer(rng, index)
        customers.append(customer)
        second = (
            _second_region(region) if index == 1 or (index > 1 and rng.random() < 0.06) else None
        )
        for position in range(spec.invoices_per_customer):
            use_second = second is not None and position % 2 == 1
            invoices.append(
                _invoice(
                    rng,
                    customer,
                    second if use_second and second else region,
                    position,
                    today,
                    always_overdue=index in (0, 1),
                    odd=spec.odd_invoices,
                )
            )
    document = {"customers": customers, "invoices": invoices}
    if spec.history_days > 0:
        from sandbox.history import add_history

        return add_history(document, history_days=spec.history_days, seed=spec.seed, today=today)
    return document


_PROVIDERS = ("stripe", "adyen", None, "stripe", "gocardless", None)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _second_region(region: _Region) -> _Region:
    if region.currency == "EUR":
        return _REGIONS[0]
    return _REGIONS[1]


def _customer(rng: random.Random, index: int) -> tuple[JsonObject, _Region]:
    region = _REGIONS[0] if index == 0 else rng.choice(_REGIONS)
    timezone = rng.choice(region.timezones) if rng.random() < 0.9 else None
    is_company = rng.random() < 0.7
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    if is_company:
        name = f"{rng.choice(_COMPANY_WORDS)} {index + 1} {rng.choice(_COMPANY_SUFFIXES)}"
        email = f"billing@{name.split(maxsplit=1)[0].lower()}{index + 1}.example"
    else:
        name = f"{first} {last}"
        email = f"{first.lower()}.{last.lower()}{index + 1}@mail.example"
    metadata = [{"key": "segment", "value": rng.choice(_SEGMENTS), "display_in_invoice": False}]
    if rng.random() < 0.1:
        metadata.append({"key": "dunning", "value": "manual_only", "display_in_invoice": False})
    created = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 400_000))
    customer: JsonObject = {
        "lago_id": _uuid(rng),
        "external_id": f"cus_{index + 1:05d}",
        "sequential_id": index + 1,
        "slug": f"ACM-{index + 1:05d}",
        "billing_entity_code": region.billing_entity,
        "name": name,
        "firstname": None if is_company else first,
        "lastname": None if is_company else last,
        "legal_name": name if is_company else None,
        "customer_type": "company" if is_company else "individual",
        "email": email,
        "country": region.country,
        "currency": region.currency,
        "timezone": timezone,
        "applicable_timezone": timezone or "UTC",
        "net_payment_term": rng.choice((0, 15, 30, 30, 45)),
        # Two customers in three pay through a provider (one in six GoCardless, which
        # Lago makes no payment links for); the others pay by transfer.
        "billing_configuration": {
            "invoice_grace_period": 0,
            "payment_provider": _PROVIDERS[index % len(_PROVIDERS)],
            "document_locale": "en",
        },
        "metadata": metadata,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return customer, region


def _invoice(
    rng: random.Random,
    customer: JsonObject,
    region: _Region,
    position: int,
    today: date,
    *,
    always_overdue: bool,
    odd: bool = False,
) -> JsonObject:
    term: int = customer["net_payment_term"]
    if always_overdue:
        issuing = today - timedelta(days=term + 5 + 9 * position)
    else:
        issuing = today - timedelta(days=rng.randint(0, 150))
    due = issuing + timedelta(days=term)
    total = rng.randint(20, 5_000) * 100 + rng.randint(0, 99)
    paid = 0
    offset = 0
    status = "finalized"
    payment_status = "pending"
    self_billed = False
    ready = True
    if not always_overdue:
        roll = rng.random()
        if roll < 0.04:
            status = "draft"
        elif roll < 0.07:
            status = "voided"
        outcome = rng.random()
        if outcome < 0.30:
            payment_status, paid = "succeeded", total
        elif outcome < 0.45:
            payment_status = "failed"
        if payment_status != "succeeded":
            extra = rng.random()
            if extra < 0.10:
                paid = rng.randint(1, total - 1)
            elif extra < 0.13:
                offset = rng.randint(1, total // 2)
            elif extra < 0.15:
                offset = total
            ready = rng.random() >= 0.03
        self_billed = rng.random() < 0.03
    dispute_lost_at: str | None = None
    if odd and not always_overdue:
        roll = rng.random()
        if roll < 0.04 and status == "finalized" and payment_status != "succeeded":
            lost = datetime.combine(due, datetime.min.time(), tzinfo=UTC) + timedelta(days=3)
            dispute_lost_at = lost.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif roll < 0.07:
            status = "deleted"
    overdue = (
        status == "finalized"
        and payment_status != "succeeded"
        and dispute_lost_at is None
        and due < today
    )
    created = datetime.combine(issuing, datetime.min.time(), tzinfo=UTC) + timedelta(
        seconds=rng.randint(0, 86_399)
    )
    sequence = position + 1
    invoice: JsonObject = {
        "lago_id": _uuid(rng),
        "sequential_id": sequence,
        "number": f"{customer['slug']}-{sequence:03d}",
        "customer": {"external_id": customer["external_id"]},
        "billing_entity_code": region.billing_entity,
        "currency": region.currency,
        "invoice_type": "subscription" if always_overdue else rng.choice(_INVOICE_TYPES),
        "status": status,
        "payment_status": payment_status,
        "payment_overdue": overdue,
        "issuing_date": issuing.isoformat(),
        "payment_due_date": due.isoformat(),
        "net_payment_term": term,
        "total_amount_cents": total,
        "total_paid_amount_cents": paid,
        "total_offsetted_credit_note_amount_cents": offset,
        "self_billed": self_billed,
        "payment_dispute_lost_at": dispute_lost_at,
        "ready_for_payment_processing": ready
        and payment_status != "succeeded"
        and status != "voided",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    metadata: list[Any] = []
    if rng.random() < 0.05:
        metadata.append({"key": "purchase_order", "value": f"PO-{rng.randint(1000, 9999)}"})
    if metadata:
        invoice["metadata"] = metadata
    return invoice
