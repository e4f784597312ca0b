"""Invoice filters are encoded the way Lago's Rails controller reads them."""

from __future__ import annotations

from datetime import date

import pytest

from worker.lago import InvoiceFilters


def test_overdue_listing_is_the_dunning_query() -> None:
    assert InvoiceFilters.overdue().to_params() == [
        ("status", "finalized"),
        ("payment_overdue", "true"),
        ("payment_status[]", "pending"),
        ("payment_status[]", "failed"),
        ("self_billed", "false"),
    ]


def test_overdue_listing_accepts_extra_filters() -> None:
    params = InvoiceFilters.overdue(currency="EUR", external_customer_id="c-1").to_params()
    assert ("currency", "EUR") in params
    assert ("external_customer_id", "c-1") in params
    assert ("status", "finalized") in params


def test_every_filter_is_encoded() -> None:
    filters = InvoiceFilters(
        statuses=("finalized", "failed"),
        payment_statuses=("failed",),
        payment_overdue=False,
        payment_dispute_lost=True,
        partially_paid=True,
        self_billed=True,
        currency="USD",
        external_customer_id="cust 1",
        billing_entity_codes=("acme-fr", "acme-us"),
        invoice_type="one_off",
        issuing_date_from=date(2026, 1, 1),
        issuing_date_to=date(2026, 3, 31),
        amount_from=100,
        amount_to=999_999,
        metadata={"region": "emea", "tier": ""},
        search_term="ACME-0",
    )
    assert filters.to_params() == [
        ("status[]", "finalized"),
        ("status[]", "failed"),
        ("payment_overdue", "false"),
        ("payment_status[]", "failed"),
        ("payment_dispute_lost", "true"),
        ("partially_paid", "true"),
        ("self_billed", "true"),
        ("currency", "USD"),
        ("external_customer_id", "cust 1"),
        ("billing_entity_codes[]", "acme-fr"),
        ("billing_entity_codes[]", "acme-us"),
        ("invoice_type", "one_off"),
        ("issuing_date_from", "2026-01-01"),
        ("issuing_date_to", "2026-03-31"),
        ("amount_from", "100"),
        ("amount_to", "999999"),
        ("metadata[region]", "emea"),
        ("metadata[tier]", ""),
        ("search_term", "ACME-0"),
    ]


def test_no_filter_sends_nothing() -> None:
    assert InvoiceFilters().to_params() == []


def test_payment_dispute_lost_false_is_refused() -> None:
    # Lago reads the string "false" as truthy: sending it would return dispute-lost invoices.
    with pytest.raises(ValueError, match="payment_dispute_lost"):
        InvoiceFilters(payment_dispute_lost=False)  # type: ignore[arg-type]
    assert all(key != "payment_dispute_lost" for key, _ in InvoiceFilters().to_params())


def test_duplicate_billing_entity_codes_are_refused() -> None:
    # Lago answers 404 billing_entity_not_found for a list with duplicates.
    with pytest.raises(ValueError, match="duplicates"):
        InvoiceFilters(billing_entity_codes=("a", "a"))


def test_filters_are_frozen_even_their_metadata() -> None:
    metadata = {"k": "v"}
    filters = InvoiceFilters(metadata=metadata)
    metadata["k"] = "changed"
    assert filters.to_params() == [("metadata[k]", "v")]
    with pytest.raises(TypeError):
        filters.metadata["k"] = "x"  # type: ignore[index]
    assert hash(InvoiceFilters(currency="EUR")) == hash(InvoiceFilters(currency="EUR"))
