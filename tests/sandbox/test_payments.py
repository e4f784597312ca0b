"""Manual payments (POST /api/v1/payments) and their effects; payments and receipts lists."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.builders import customer, document, invoice, new_id


@pytest.fixture
def unpaid(sandbox: SandboxHandle) -> dict[str, Any]:
    row = invoice("alice", total_amount_cents=10_000)
    other = invoice("bob")
    sandbox.reset(data=document([customer("alice"), customer("bob")], [row, other]))
    return row


def pay(sandbox: SandboxHandle, body: Any) -> httpx.Response:
    with sandbox.api_client() as client:
        return client.post("/api/v1/payments", json=body)


def test_partial_payment_keeps_the_invoice_overdue(
    sandbox: SandboxHandle, unpaid: dict[str, Any]
) -> None:
    payment = sandbox.pay_invoice(unpaid["lago_id"], amount_cents=4_000)
    assert payment["amount_cents"] == 4_000
    assert payment["type"] == "manual"
    assert payment["invoice_ids"] == [unpaid["lago_id"]]
    after = sandbox.invoice(unpaid["lago_id"])
    assert after["total_paid_amount_cents"] == 4_000
    assert after["total_due_amount_cents"] == 6_000
    assert after["payment_status"] == "pending"
    assert after["payment_overdue"] is True
    assert after["ready_for_payment_processing"] is True


def test_full_payment_settles_the_invoice(sandbox: SandboxHandle, unpaid: dict[str, Any]) -> None:
    sandbox.pay_invoice(unpaid["lago_id"], amount_cents=4_000)
    sandbox.pay_invoice(unpaid["lago_id"])  # the remaining 6,000
    after = sandbox.invoice(unpaid["lago_id"])
    assert after["total_paid_amount_cents"] == 10_000
    assert after["total_due_amount_cents"] == 0
    assert after["payment_status"] == "succeeded"
    assert after["payment_overdue"] is False
    assert after["ready_for_payment_processing"] is False
    with sandbox.api_client() as client:
        refused = client.post(
            "/api/v1/payment_requests",
            json={
                "payment_request": {
                    "external_customer_id": "alice",
                    "lago_invoice_ids": [unpaid["lago_id"]],
                }
            },
        )
    assert refused.json()["code"] == "invoices_not_overdue"


def test_payments_and_receipts_are_listed_per_invoice(
    sandbox: SandboxHandle, unpaid: dict[str, Any]
) -> None:
    first = sandbox.pay_invoice(unpaid["lago_id"], amount_cents=1_000)
    second = sandbox.pay_invoice(unpaid["lago_id"], amount_cents=2_000)
    with sandbox.api_client() as client:
        payments = client.get("/api/v1/payments", params={"invoice_id": unpaid["lago_id"]}).json()
        by_customer = client.get("/api/v1/payments", params={"external_customer_id": "bob"}).json()
        receipts = client.get(
            "/api/v1/payment_receipts", params={"invoice_id": unpaid["lago_id"]}
        ).json()
        unrelated = client.get("/api/v1/payment_receipts", params={"invoice_id": new_id()}).json()
    assert [p["lago_id"] for p in payments["payments"]] == [second["lago_id"], first["lago_id"]]
    assert payments["meta"]["total_count"] == 2
    assert by_customer["payments"] == []
    assert [r["payment"]["lago_id"] for r in receipts["payment_receipts"]] == [
        second["lago_id"],
        first["lago_id"],
    ]
    assert unrelated["payment_receipts"] == []


@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/payment_receipts"])
def test_invoice_id_must_be_a_uuid(sandbox: SandboxHandle, path: str) -> None:
    with sandbox.api_client() as client:
        response = client.get(path, params={"invoice_id": "INV-1"})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"invoice_id": ["is in invalid format"]}


def test_manual_payment_errors(sandbox: SandboxHandle, unpaid: dict[str, Any]) -> None:
    good = {"invoice_id": unpaid["lago_id"], "amount_cents": 100, "reference": "r"}
    assert pay(sandbox, {}).status_code == 400
    missing = pay(sandbox, {"payment": {**good, "invoice_id": new_id()}})
    assert (missing.status_code, missing.json()["code"]) == (404, "invoice_not_found")
    too_much = pay(sandbox, {"payment": {**good, "amount_cents": 10_001}})
    assert too_much.status_code == 422
    assert too_much.json()["error_details"] == {"amount_cents": ["invalid_amount"]}
    no_reference = pay(sandbox, {"payment": {**good, "reference": ""}})
    assert no_reference.json()["error_details"] == {"reference": ["value_is_mandatory"]}
    sandbox.set_faults(premium=False)
    assert pay(sandbox, {"payment": good}).json()["code"] == "feature_unavailable"
    assert sandbox.invoice(unpaid["lago_id"])["total_paid_amount_cents"] == 0


def test_patch_invoice_validates_fields(sandbox: SandboxHandle, unpaid: dict[str, Any]) -> None:
    url = f"{sandbox.url}/_sandbox/invoices/{unpaid['lago_id']}"
    for body, message in [
        ({"payment_status": "paid"}, "payment_status must be one of: pending, succeeded, failed"),
        ({"payment_overdue": "yes"}, "payment_overdue must be a bool"),
        ({"total_due_amount_cents": 1}, "total_due_amount_cents cannot be patched"),
        ({"colour": "red"}, "unknown invoice field 'colour'"),
    ]:
        response = httpx.post(url, json=body)
        assert response.status_code == 400
        assert response.json()["error"].startswith(message)
    patched = sandbox.patch_invoice(
        unpaid["lago_id"], ready_for_payment_processing=False, total_paid_amount_cents=2_500
    )
    assert patched["ready_for_payment_processing"] is False
    assert patched["total_due_amount_cents"] == 7_500


def test_a_manual_payment_paid_at_is_its_created_at_as_in_lago(
    sandbox: SandboxHandle, unpaid: dict[str, Any]
) -> None:
    # Payments::ManualCreateService creates the payment with `created_at: parsed_paid_at`.
    body = {
        "payment": {
            "invoice_id": unpaid["lago_id"],
            "amount_cents": 1_000,
            "reference": "wire",
            "paid_at": "2026-05-04",
        }
    }
    response = pay(sandbox, body)
    assert response.status_code == 200, response.text
    assert response.json()["payment"]["created_at"] == "2026-05-04T00:00:00Z"
