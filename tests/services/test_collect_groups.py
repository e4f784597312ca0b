"""`collect_groups`: the listing judged invoice by invoice and reduced to one group per
customer, currency and billing entity, with every invoice seen accounted for by reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from worker.lago.models import Invoice, MalformedRecord
from worker.policy.types import Group
from worker.services.collect_groups import Malformed, SkippedInvoices, collect_groups
from worker.services.requested_elsewhere import RequestedElsewhere

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Collected:
    """What `collect_groups` found, read out before its spool is closed."""

    groups: list[Group]
    malformed: list[Malformed]
    skips: list[SkippedInvoices]
    invoices_seen: int
    by_reason: Counter[str]
    overdue_invoice_ids: set[str]


def _collect(
    items: Iterable[Invoice | MalformedRecord],
    *,
    customer: str | None = None,
    elsewhere: RequestedElsewhere | None = None,
) -> Collected:
    with collect_groups(
        items, now=NOW, customer=customer, requested_elsewhere=elsewhere
    ) as collected:
        result = Collected(
            groups=list(collected.groups),
            malformed=list(collected.malformed),
            skips=list(collected.skips),
            invoices_seen=collected.invoices_seen,
            by_reason=Counter(collected.invoices_by_reason),
            overdue_invoice_ids=set(collected.overdue_invoice_ids),
        )
    # Every invoice seen is accounted for by exactly one reason.
    assert sum(result.by_reason.values()) == result.invoices_seen
    return result


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
    **fields: Any,
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
        **fields,
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
        lago_id="i9",
        index=3,
        page=2,
        error="invoices[3].total_amount_cents: Input should be a valid integer",
        external_customer_id="alice",
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
        Malformed("i9", "alice", "invoices[3].total_amount_cents: Input should be a valid integer")
    ]
    assert collected.by_reason == {"eligible": 1, "malformed_record": 1, "no_customer": 1}
    assert [(s.external_customer_id, s.reason.value) for s in collected.skips] == [
        ("-", "no_customer")
    ]
    assert collected.overdue_invoice_ids == {"i1"}


def test_invoices_with_nothing_due_are_counted_but_not_grouped() -> None:
    alice = _customer("alice")
    bob = _customer("bob")
    items = [
        _invoice("i1", alice, due=0),
        _invoice("i2", alice, due=500),
        _invoice("i3", bob, due=0),
        # An older Lago without total_due_amount_cents: derived like Lago does.
        _invoice(
            "i4",
            bob,
            due=None,
            total=900,
            total_paid_amount_cents=200,
            total_offsetted_credit_note_amount_cents=0,
        ),
        # ... and where it cannot be derived, never guessed.
        _invoice("i5", bob, due=None, total=900),
    ]

    collected = _collect(items)

    assert collected.by_reason == {"eligible": 2, "nothing_due": 2, "amount_unknown": 1}
    assert {g.key: g.overdue_amount_cents for g in collected.groups} == {
        "alice|USD|acme_us": 500,
        "bob|USD|acme_us": 700,
    }
    assert collected.overdue_invoice_ids == {"i2", "i4"}
    skips = {(s.external_customer_id, s.reason.value): s for s in collected.skips}
    assert skips["bob", "amount_unknown"].amount_cents is None
    assert skips["alice", "nothing_due"].invoice_count == 1


def test_a_careless_listing_is_judged_invoice_by_invoice() -> None:
    """A Lago that ignores the listing's filters: drafts, voided, paid, self-billed, disputed,
    not yet due and in-flight invoices come back; none of them joins a group."""
    alice = _customer("alice")
    items = [
        _invoice("ok", alice),
        _invoice("draft", alice, status="draft", payment_overdue=False),
        _invoice("voided", alice, status="voided", total_due_amount_cents=0),
        _invoice("deleted", alice, status="deleted"),
        _invoice("paid", alice, payment_status="succeeded", due=0),
        _invoice("self", alice, self_billed=True),
        _invoice("lost", alice, payment_dispute_lost_at="2025-02-01T00:00:00Z"),
        _invoice("flight", alice, payment_status="processing"),
        _invoice("future", alice, payment_overdue=None, due_date="2025-04-01"),
        _invoice("weird", alice, payment_status="on_hold"),
    ]

    collected = _collect(items)

    assert [g.invoice_ids for g in collected.groups] == [("ok",)]
    assert collected.by_reason == {
        "eligible": 1,
        "not_finalized": 3,
        "already_paid": 1,
        "self_billed": 1,
        "dispute_lost": 1,
        "payment_in_flight": 1,
        "not_overdue": 1,
        "payment_status_unknown": 1,
    }
    not_finalized = next(s for s in collected.skips if s.reason.value == "not_finalized")
    assert not_finalized.invoice_count == 3
    assert "N-deleted is deleted" in not_finalized.detail


def test_a_pending_request_we_did_not_make_marks_the_invoices_it_covers() -> None:
    alice = _customer("alice")
    asked = datetime(2025, 2, 27, 9, 0, tzinfo=UTC)

    collected = _collect(
        [_invoice("i1", alice), _invoice("i2", alice), _invoice("i3", alice, currency="EUR")],
        elsewhere=RequestedElsewhere(invoices={"i2": asked}),
    )

    by_key = {g.key: g for g in collected.groups}
    assert by_key["alice|USD|acme_us"].requested_elsewhere_at == asked
    assert by_key["alice|EUR|acme_us"].requested_elsewhere_at is None


def test_customer_filter_keeps_only_that_customer() -> None:
    alice = _customer("alice")
    bob = _customer("bob")

    collected = _collect(
        [_invoice("i1", alice), _invoice("i2", bob), _invoice("i3", alice, currency="EUR")],
        customer="alice",
    )

    assert [g.key for g in collected.groups] == ["alice|EUR|acme_us", "alice|USD|acme_us"]
    assert collected.overdue_invoice_ids == {"i1", "i3"}
    # Bob's invoice is counted (every invoice seen is accounted for) but not recorded.
    assert collected.by_reason == {"eligible": 2, "other_customer": 1}
    assert collected.skips == []


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
    assert collected.by_reason == {}
