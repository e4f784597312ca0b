"""retry_payment and payment_url: the client against the sandbox's copy of Lago's rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.builders import customer, document, invoice
from worker.lago import (
    LagoAmbiguousError,
    LagoClient,
    LagoMethodNotAllowedError,
    LagoNotFoundError,
    LagoUnprocessableError,
)

STRIPE = {"payment_provider": "stripe"}


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[LagoClient]:
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), timeout_s=5) as lago_client:
        yield lago_client


@pytest.fixture
def invoices(sandbox: SandboxHandle) -> dict[str, dict[str, Any]]:
    """payer (Stripe): one payable invoice, one paid, one voided, one with a payment in
    flight; transfer (no provider) and direct (GoCardless): one payable invoice each."""
    rows = {
        "payable": invoice("payer"),
        "paid": invoice("payer", payment_status="succeeded", total_paid_amount_cents=10_000),
        "voided": invoice("payer", status="voided"),
        "in_flight": invoice("payer", ready_for_payment_processing=False),
        "transfer": invoice("transfer"),
        "direct": invoice("direct"),
    }
    customers = [
        customer("payer", billing_configuration=STRIPE),
        customer("transfer"),
        customer("direct", billing_configuration={"payment_provider": "gocardless"}),
    ]
    sandbox.reset(data=document(customers, list(rows.values())))
    return rows


def test_retry_payment_is_taken_for_a_payable_invoice(
    sandbox: SandboxHandle, client: LagoClient, invoices: dict[str, dict[str, Any]]
) -> None:
    assert client.retry_payment(invoices["payable"]["lago_id"]) is None
    taken = sandbox.invoice_payments()["retries"]
    assert [row["lago_id"] for row in taken] == [invoices["payable"]["lago_id"]]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("paid", "invalid_status"),
        ("voided", "invalid_status"),
        ("in_flight", "payment_processor_is_currently_handling_payment"),
    ],
)
def test_retry_payment_refusals_are_lagos_405s(
    sandbox: SandboxHandle,
    client: LagoClient,
    invoices: dict[str, dict[str, Any]],
    name: str,
    code: str,
) -> None:
    with pytest.raises(LagoMethodNotAllowedError) as caught:
        client.retry_payment(invoices[name]["lago_id"])
    assert caught.value.code == code
    assert sandbox.invoice_payments()["retries"] == []


def test_retry_payment_of_an_unknown_invoice_is_not_found(
    client: LagoClient, invoices: dict[str, dict[str, Any]]
) -> None:
    with pytest.raises(LagoNotFoundError):
        client.retry_payment("00000000-0000-4000-8000-000000000000")


def test_a_5xx_after_the_retry_was_taken_is_ambiguous_and_not_repeated(
    sandbox: SandboxHandle, client: LagoClient, invoices: dict[str, dict[str, Any]]
) -> None:
    sandbox.set_faults(retry_payment_error_rate=1.0)
    with pytest.raises(LagoAmbiguousError):
        client.retry_payment(invoices["payable"]["lago_id"])
    # Not idempotent: the client never sends it twice on its own.
    assert len(sandbox.invoice_payments()["retries"]) == 1
    assert sandbox.request_count("POST /api/v1/invoices/{lago_id}/retry_payment") == 1


def test_payment_url_names_the_invoice_and_the_provider(
    client: LagoClient, invoices: dict[str, dict[str, Any]]
) -> None:
    lago_id = invoices["payable"]["lago_id"]
    details = client.payment_url(lago_id)
    assert details.lago_invoice_id == lago_id
    assert details.external_customer_id == "payer"
    assert details.payment_provider == "stripe"
    assert details.payment_url is not None
    assert details.payment_url.startswith("https://")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("transfer", "no_linked_payment_provider"),
        ("direct", "invalid_payment_provider"),
        ("paid", "invalid_invoice_status_or_payment_status"),
        ("voided", "invalid_invoice_status_or_payment_status"),
    ],
)
def test_payment_url_refusals_are_lagos_422s_with_the_base_code(
    client: LagoClient, invoices: dict[str, dict[str, Any]], name: str, code: str
) -> None:
    with pytest.raises(LagoUnprocessableError) as caught:
        client.payment_url(invoices[name]["lago_id"])
    assert caught.value.code == code


def test_customers_carry_their_payment_provider(
    client: LagoClient, invoices: dict[str, dict[str, Any]]
) -> None:
    assert client.get_customer("payer").payment_provider == "stripe"
    assert client.get_customer("transfer").payment_provider is None


def test_generated_customers_mix_providers_and_all_have_an_email(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    sandbox.reset(customers=12, invoices_per_customer=1, seed=3)
    found = [client.get_customer(f"cus_{n:05d}") for n in range(1, 13)]
    providers = [c.payment_provider for c in found]
    assert providers.count(None) == 4
    assert "gocardless" in providers
    assert "stripe" in providers
    assert all(c.email for c in found)
