"""`collect_groups`: the overdue listing reduced to one group per customer, currency and
billing entity, with malformed and settled records accounted for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from worker.lago.models import Invoice, MalformedRecord
from worker.policy.types import Group
from worker.services.collect_groups import Malformed, collect_groups


@dataclass(frozen=True)
class Collected:
    """What `collect_groups` found, read out before its spool is closed."""

    groups: list[Group]
    malformed: list[Malformed]
    invoices_seen: int
    nothing_due: int
    overdue_invoice_ids: set[str]


def _collect(
    items: Iterable[Invoice | MalformedRecord], *, customer: str | None = None
) -> Collected:
    with collect_groups(items, customer=customer) as collected:
        return Collected(
            groups=list(collected.groups),
            malformed=list(collected.malformed),
            invoices_seen=collected.invoices_seen,
            nothing_due=collected.nothing_due,
            overdue_invoice_ids=set(collected.overdue_invoice_ids),
        )


def _customer(external_id: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "email": f"ap@{external_id}.example", **fields}


def _invoice(
    lago_id: str,
    customer: dict[str, Any] | None,
    *,
    currency: str = "USD",
    due: int | None = 1000,
    total: int = 1000,
    entity: str | None = "acme_us",
    due_date: str = "2025-01-10",
) -> Invoice:
    raw: dict[str, Any] = {
        "lago_id": lago_id,
        "number": f"N-{lago_id}",
        "status": "finalized",
        "payment_status": "pending",
        "payment_overdue": True,
        "currency": currency,
        "total_amount_cents": total,
        "total_due_amount_cents": due,
        "billing_entity_code": entity,
        "payment_due_date": due_date,
        "customer": customer,
    }
    return Invoice.model_validate(raw)


def test_groups_by_customer_currency_and_billing_entity_in_a_stable_order() -> None:
    alice = _customer("alice")
    bob = _customer("bob")
    items = [
        _invoice("i5", bob, currency="EUR"),
        _invoice("i1", alice),
        _invoice("i2", alice, currency="EUR"),
        _invoice("i3", alice, entity="acme_eu"),
        _invoice("i4", alice),
    ]

    collected = _collect(items)

    keys = [g.key for g in collected.groups]
    assert keys == [
        "alice|EUR|acme_us",
        "alice|USD|acme_eu",
        "alice|USD|acme_us",
        "bob|EUR|acme_us",
    ]
    usd = collected.groups[2]
    assert usd.invoice_ids == ("i1", "i4")
    assert usd.overdue_amount_cents == 2000
    assert usd.invoices[0].payment_due_date == date(2025, 1, 10)
    assert collected.invoices_seen == 5
    assert collected.overdue_invoice_ids == {"i1", "i2", "i3", "i4", "i5"}
    assert collected.malformed == []


def test_customer_facts_come_from_the_embedded_customer() -> None:
    customer = _customer(
        "alice",
        timezone="Europe/Paris",
        applicable_timezone="Europe/Berlin",
        customer_type="company",
        country="DE",
        metadata=[{"key": "tier", "value": "gold"}, {"key": "dunning", "value": None}],
    )

    (group,) = _collect([_invoice("i1", customer), _invoice("i2", customer)]).groups

    facts = group.customer
    assert facts.external_id == "alice"
    assert facts.email == "ap@alice.example"
    assert facts.timezone == "Europe/Berlin"  # applicable_timezone wins
    assert (facts.customer_type, facts.country) == ("company", "DE")
    assert dict(facts.metadata) == {"tier": "gold", "dunning": ""}


def test_timezone_falls_back_to_the_customer_setting_and_empty_email_is_none() -> None:
    customer = _customer("alice", timezone="Asia/Tokyo", email="")

    (group,) = _collect([_invoice("i1", customer)]).groups

    assert group.customer.timezone == "Asia/Tokyo"
    assert group.customer.email is None


def test_malformed_records_and_invoices_without_customer_are_kept_apart() -> None:
    alice = _customer("alice")
    bad = MalformedRecord(
        lago_id="i9", index=3, page=2, error="invoices[3].currency: String should match"
    )
    items: list[Invoice | MalformedRecord] = [
        _invoice("i1", alice),
        bad,
        _invoice("i2", None),
    ]

    collected = _collect(items)

    assert collected.invoices_seen == 3
    assert [g.invoice_ids for g in collected.groups] == [("i1",)]
    assert collected.malformed == [
        Malformed("i9", None, "invoices[3].currency: String should match"),
        Malformed("i2", None, "invoice i2 has no customer object"),
    ]
    assert collected.overdue_invoice_ids == {"i1"}


def test_invoices_with_nothing_due_are_counted_but_not_grouped() -> None:
    alice = _customer("alice")
    bob = _customer("bob")
    items = [
        _invoice("i1", alice, due=0),
        _invoice("i2", alice, due=500),
        _invoice("i3", bob, due=0),
        # An older Lago without total_due_amount_cents: total minus paid.
        _invoice("i4", bob, due=None, total=700),
    ]

    collected = _collect(items)

    assert collected.nothing_due == 2
    assert {g.key: g.overdue_amount_cents for g in collected.groups} == {
        "alice|USD|acme_us": 500,
        "bob|USD|acme_us": 700,
    }
    assert collected.overdue_invoice_ids == {"i2", "i4"}


def test_customer_filter_keeps_only_that_customer() -> None:
    alice = _customer("alice")
    bob = _customer("bob")

    collected = _collect(
        [_invoice("i1", alice), _invoice("i2", bob), _invoice("i3", alice, currency="EUR")],
        customer="alice",
    )

    assert [g.key for g in collected.groups] == ["alice|EUR|acme_us", "alice|USD|acme_us"]
    assert collected.overdue_invoice_ids == {"i1", "i3"}


def test_no_billing_entity_groups_under_none_and_sorts_first() -> None:
    alice = _customer("alice")

    collected = _collect(
        [_invoice("i1", alice, entity="acme_us"), _invoice("i2", alice, entity=None)]
    )

    assert [g.billing_entity_code for g in collected.groups] == [None, "acme_us"]
    assert collected.groups[0].key == "alice|USD|-"


def test_an_empty_listing_gives_no_groups() -> None:
    collected = _collect([])

    assert collected.groups == []
    assert collected.invoices_seen == 0
    assert collected.nothing_due == 0
