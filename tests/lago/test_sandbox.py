"""The client against the sandbox over real HTTP: every endpoint, paging, 429s, ambiguity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.sandbox import SandboxHandle
from worker.lago import (
    FeatureUnavailableError,
    Invoice,
    InvoiceFilters,
    LagoAmbiguousError,
    LagoClient,
    LagoConnectionError,
    LagoMethodNotAllowedError,
    LagoNotFoundError,
    LagoTimeoutError,
    LagoUnauthorizedError,
    MalformedRecord,
)
from worker.lago.retry import RetryPolicy

PAYER = "cus_00001"  # always has 4 overdue, payable USD invoices (see the sandbox fixture)


class RealSleeps:
    """Really sleeps, and records how long it was asked to."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[LagoClient]:
    with LagoClient(
        sandbox.url, SecretStr(sandbox.api_key), timeout_s=5, concurrency=4
    ) as lago_client:
        yield lago_client


def _overdue_ids_in_lago_order(sandbox: SandboxHandle) -> list[str]:
    return [
        invoice["lago_id"]
        for invoice in sandbox.invoices()
        if invoice["status"] == "finalized"
        and invoice["payment_overdue"]
        and invoice["payment_status"] in {"pending", "failed"}
        and not invoice["self_billed"]
    ]


def _payer_overdue(client: LagoClient) -> list[Invoice]:
    found = client.iter_invoices(InvoiceFilters.overdue(external_customer_id=PAYER))
    return [invoice for invoice in found if isinstance(invoice, Invoice)]


def test_overdue_listing_matches_the_sandbox(sandbox: SandboxHandle, client: LagoClient) -> None:
    listed = list(client.iter_invoices(InvoiceFilters.overdue(), per_page=3))
    assert not [item for item in listed if isinstance(item, MalformedRecord)]
    assert [item.lago_id for item in listed] == _overdue_ids_in_lago_order(sandbox)
    assert listed


@pytest.mark.parametrize("per_page", [1, 7, 50, 100])
def test_paging_with_a_short_last_page_lists_everything_once(
    sandbox: SandboxHandle, per_page: int
) -> None:
    sandbox.reset(customers=23, invoices_per_customer=3, seed=11)  # 69 invoices
    expected = [invoice["lago_id"] for invoice in sandbox.invoices()]
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), concurrency=3) as client:
        listed = [
            item.lago_id for item in client.iter_invoices(InvoiceFilters(), per_page=per_page)
        ]
        pages = client.calls()["GET /api/v1/invoices 200"]
    assert listed == expected
    # The minimum: every page once, plus one empty page when the count divides evenly,
    # plus at most the window of pages requested beyond the end.
    assert len(expected) // per_page + 1 <= pages <= len(expected) // per_page + 1 + 3


def test_a_stale_total_count_that_is_too_low_does_not_lose_invoices(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    sandbox.set_faults(stale_count_ttl=600)
    before = list(client.iter_invoices(InvoiceFilters.overdue(), per_page=2))
    # More invoices turn overdue after the count was cached.
    newly_overdue = [
        invoice["lago_id"]
        for invoice in sandbox.invoices()
        if invoice["status"] == "finalized"
        and not invoice["payment_overdue"]
        and invoice["payment_status"] == "pending"
        and not invoice["self_billed"]
    ][:5]
    assert newly_overdue, "the sandbox data should have finalized, not yet overdue invoices"
    for lago_id in newly_overdue:
        sandbox.patch_invoice(lago_id, payment_overdue=True)
    after = [item.lago_id for item in client.iter_invoices(InvoiceFilters.overdue(), per_page=2)]
    assert after == _overdue_ids_in_lago_order(sandbox)
    assert len(after) == len(before) + len(newly_overdue)


def test_a_stale_total_count_that_is_too_high_stops_at_the_short_page(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    sandbox.set_faults(stale_count_ttl=600)
    found = client.iter_invoices(InvoiceFilters.overdue(), per_page=2)
    before = [item.lago_id for item in found if isinstance(item, Invoice)]
    for lago_id in before[: len(before) // 2]:
        sandbox.pay_invoice(lago_id)
    after = [item.lago_id for item in client.iter_invoices(InvoiceFilters.overdue(), per_page=2)]
    assert after == before[len(before) // 2 :]


def test_get_invoice_and_customer(sandbox: SandboxHandle, client: LagoClient) -> None:
    invoice = _payer_overdue(client)[0]
    fetched = client.get_invoice(invoice.lago_id)
    assert fetched == invoice
    customer = client.get_customer(PAYER)
    assert customer.external_id == PAYER
    with pytest.raises(LagoNotFoundError) as caught:
        client.get_customer("nobody")
    assert caught.value.code == "customer_not_found"


def test_create_then_find_a_payment_request(sandbox: SandboxHandle, client: LagoClient) -> None:
    invoices = _payer_overdue(client)
    ids = [invoice.lago_id for invoice in invoices]
    created = client.create_payment_request(PAYER, ids, email="ap@payer.test")
    assert created.invoice_ids == frozenset(ids)
    assert created.amount_cents == sum(invoice.total_due_amount_cents for invoice in invoices)
    assert client.get_payment_request(created.lago_id) == created
    listed = list(
        client.iter_payment_requests(external_customer_id=PAYER, payment_status="pending")
    )
    assert [request.lago_id for request in listed] == [created.lago_id]
    assert [request["lago_id"] for request in sandbox.payment_requests()] == [created.lago_id]


def test_a_paid_invoice_is_refused_with_lagos_code(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    invoice = _payer_overdue(client)[0]
    sandbox.pay_invoice(invoice.lago_id)
    with pytest.raises(LagoMethodNotAllowedError) as caught:
        client.create_payment_request(PAYER, [invoice.lago_id])
    assert caught.value.code == "invoices_not_overdue"


def test_manual_payment_then_payments_and_receipts(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    invoice = _payer_overdue(client)[0]
    payment = client.create_payment(
        invoice_id=invoice.lago_id, amount_cents=invoice.total_due_amount_cents, reference="wire 7"
    )
    assert payment.amount_cents == invoice.total_due_amount_cents
    payments = list(client.iter_payments(invoice_id=invoice.lago_id))
    assert [p.lago_id for p in payments] == [payment.lago_id]
    assert [p.lago_id for p in client.iter_payments(external_customer_id=PAYER)] == [
        payment.lago_id
    ]
    receipts = list(client.iter_payment_receipts(invoice_id=invoice.lago_id))
    assert [receipt.payment.lago_id for receipt in receipts] == [payment.lago_id]
    assert client.get_invoice(invoice.lago_id).payment_status == "succeeded"


def test_webhook_public_key_is_a_pem(client: LagoClient) -> None:
    pem = client.get_webhook_public_key()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_a_wrong_key_is_unauthorized(sandbox: SandboxHandle) -> None:
    with (
        LagoClient(sandbox.url, SecretStr("not-the-key")) as client,
        pytest.raises(LagoUnauthorizedError) as caught,
    ):
        client.get_customer(PAYER)
    assert "not-the-key" not in str(caught.value)
    assert "check LAGO_API_KEY" in str(caught.value)


def test_no_premium_licence_is_feature_unavailable(
    sandbox: SandboxHandle, client: LagoClient
) -> None:
    ids = [invoice.lago_id for invoice in _payer_overdue(client)]
    sandbox.set_faults(premium=False)
    with pytest.raises(FeatureUnavailableError):
        client.create_payment_request(PAYER, ids)
    assert sandbox.payment_requests() == []


def test_429s_with_real_headers_are_waited_out(sandbox: SandboxHandle) -> None:
    sandbox.reset(customers=20, invoices_per_customer=3, seed=3)
    sandbox.set_faults(rate_limit=4)
    sleeps = RealSleeps()
    policy = RetryPolicy(max_retries=6, base_delay_s=0.05, max_delay_s=0.2)
    with LagoClient(
        sandbox.url, SecretStr(sandbox.api_key), concurrency=4, retry_policy=policy, sleep=sleeps
    ) as client:
        listed = list(client.iter_invoices(InvoiceFilters(), per_page=5))
        calls = client.calls()
    assert len(listed) == 60
    assert calls["GET /api/v1/invoices 429"] == sandbox.request_count("GET /api/v1/invoices", 429)
    assert calls["GET /api/v1/invoices 429"] >= 1
    # Each wait honoured X-RateLimit-Reset (a whole number of seconds, at least 1).
    assert all(delay >= 1 for delay in sleeps.delays)


def test_a_post_that_times_out_after_commit_is_ambiguous_and_sent_once(
    sandbox: SandboxHandle,
) -> None:
    sandbox.set_faults(timeout_after_commit_rate=1, hang_seconds=1)
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), timeout_s=0.3) as client:
        ids = [invoice.lago_id for invoice in _payer_overdue(client)]
        with pytest.raises(LagoAmbiguousError) as caught:
            client.create_payment_request(PAYER, ids)
    assert isinstance(caught.value.cause, LagoTimeoutError)
    created: list[dict[str, Any]] = sandbox.payment_requests()
    assert [request["delivery"] for request in created] == ["hung"]
    # The sandbox counts the call once its (late) answer is written: wait for that.
    deadline = time.monotonic() + 10
    while sandbox.request_count("POST /api/v1/payment_requests") == 0:
        assert time.monotonic() < deadline, "the hung request never finished"
        time.sleep(0.05)
    assert sandbox.request_count("POST /api/v1/payment_requests") == 1


def test_a_post_whose_answer_is_cut_off_is_ambiguous(sandbox: SandboxHandle) -> None:
    sandbox.set_faults(drop_rate=1)
    with LagoClient(sandbox.url, SecretStr(sandbox.api_key), timeout_s=5) as client:
        ids = [invoice.lago_id for invoice in _payer_overdue(client)]
        with pytest.raises(LagoAmbiguousError) as caught:
            client.create_payment_request(PAYER, ids)
    assert isinstance(caught.value.cause, LagoConnectionError)
    assert [request["delivery"] for request in sandbox.payment_requests()] == ["dropped"]
    assert sandbox.request_count("POST /api/v1/payment_requests") == 1


def test_a_refused_connection_is_retried_then_reported_with_the_host() -> None:
    sleeps: list[float] = []
    with (
        LagoClient(
            "http://127.0.0.1:1", SecretStr("k"), max_retries=2, sleep=sleeps.append
        ) as client,
        pytest.raises(LagoConnectionError) as caught,
    ):
        client.create_payment_request(PAYER, ["inv"])
    assert not isinstance(caught.value, LagoAmbiguousError)
    assert len(sleeps) == 2
    assert "127.0.0.1:1" in str(caught.value)
