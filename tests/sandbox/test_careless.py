"""The careless sandbox: a Lago that ignores filters, omits fields, sends odd values and does
not check what it is asked, so the worker is tested against more than the tidy case."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.fixtures.sandbox import SandboxHandle

OVERDUE_QUERY = (
    "/api/v1/invoices?status=finalized&payment_overdue=true&payment_status[]=pending"
    "&payment_status[]=failed&self_billed=false&per_page=5000"
)


def _list(sandbox: SandboxHandle, query: str = OVERDUE_QUERY) -> list[dict[str, Any]]:
    with sandbox.api_client() as http:
        response = http.get(query)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["invoices"]
    return rows


def _post(sandbox: SandboxHandle, customer: str, invoice_ids: list[str]) -> Any:
    body = {"external_customer_id": customer, "lago_invoice_ids": invoice_ids}
    with sandbox.api_client() as http:
        return http.post("/api/v1/payment_requests", json={"payment_request": body})


def test_odd_data_adds_disputed_and_deleted_invoices_that_a_tidy_listing_never_shows(
    sandbox: SandboxHandle,
) -> None:
    sandbox.reset(customers=300, seed=5, odd_invoices=True)
    truth = sandbox.invoices()
    statuses = Counter(invoice["status"] for invoice in truth)
    assert statuses["deleted"] > 0
    disputed = [i for i in truth if i["payment_dispute_lost_at"] is not None]
    assert disputed
    assert not any(i["payment_overdue"] for i in disputed)  # a lost dispute is never overdue

    everything = _list(sandbox, "/api/v1/invoices?per_page=5000")
    assert "deleted" not in {invoice["status"] for invoice in everything}
    assert {i["lago_id"] for i in _list(sandbox)} == {
        i["lago_id"]
        for i in truth
        if i["status"] == "finalized"
        and i["payment_overdue"]
        and i["payment_status"] in ("pending", "failed")
        and not i["self_billed"]
    }


def test_a_careless_listing_ignores_every_filter_and_shows_older_shapes(
    sandbox: SandboxHandle,
) -> None:
    sandbox.reset(customers=300, seed=5, odd_invoices=True)
    truth = {invoice["lago_id"]: invoice for invoice in sandbox.invoices()}
    sandbox.set_faults(careless=True)

    listed = _list(sandbox)

    assert {invoice["lago_id"] for invoice in listed} == set(truth)  # every invoice, every status
    assert {"draft", "voided", "deleted", "finalized"} <= {i["status"] for i in listed}
    without_due = [i for i in listed if "total_due_amount_cents" not in i]
    without_overdue = [i for i in listed if "payment_overdue" not in i]
    assert without_due
    assert without_overdue
    assert any("total_offsetted_credit_note_amount_cents" not in i for i in without_due)
    assert any(i["invoice_type"] == "usage_forecast" for i in listed)
    in_flight = [i for i in listed if i["payment_status"] == "processing"]
    assert in_flight
    # What is shown is never a lie about eligibility.
    for invoice in in_flight:
        assert not truth[invoice["lago_id"]]["ready_for_payment_processing"]
    for invoice in without_due:
        if "total_offsetted_credit_note_amount_cents" in invoice:
            real = truth[invoice["lago_id"]]
            derived = (
                invoice["total_amount_cents"]
                - invoice["total_paid_amount_cents"]
                - invoice["total_offsetted_credit_note_amount_cents"]
            )
            assert derived == real["total_due_amount_cents"] or real["status"] == "voided"
    # The same data is shown the same way every time.
    assert _list(sandbox) == listed


def test_a_careless_lago_creates_requests_a_tidy_one_refuses_and_audits_them(
    sandbox: SandboxHandle,
) -> None:
    sandbox.reset(customers=300, seed=5, odd_invoices=True)
    draft = next(
        i for i in sandbox.invoices() if i["status"] == "draft" and i["total_amount_cents"] > 0
    )
    customer = draft["customer"]["external_id"]

    refused = _post(sandbox, customer, [draft["lago_id"]])
    assert refused.status_code == 405
    assert refused.json()["code"] == "invoices_not_overdue"

    sandbox.set_faults(careless=True)
    created = _post(sandbox, customer, [draft["lago_id"]])
    assert created.status_code == 200, created.text
    [audited] = sandbox.payment_requests()
    assert audited["ineligible_invoice_ids"] == [draft["lago_id"]]


def test_deleted_invoices_are_unknown_to_a_tidy_lago(sandbox: SandboxHandle) -> None:
    sandbox.reset(customers=300, seed=5, odd_invoices=True)
    deleted = next(i for i in sandbox.invoices() if i["status"] == "deleted")
    answer = _post(sandbox, deleted["customer"]["external_id"], [deleted["lago_id"]])
    assert answer.status_code == 404
    assert answer.json()["code"] == "invoice_not_found"


def test_a_careless_answer_may_name_other_invoices_or_another_customer(
    sandbox: SandboxHandle,
) -> None:
    sandbox.set_faults(careless=True, careless_answer_rate=1.0)
    overdue = [i for i in sandbox.invoices() if i["customer"]["external_id"] == "cus_00001"]
    asked = sorted(i["lago_id"] for i in overdue if i["payment_overdue"])

    answers = []
    for _ in range(6):
        response = _post(sandbox, "cus_00001", asked)
        assert response.status_code == 200
        answers.append(response.json()["payment_request"])

    created = sandbox.payment_requests()
    assert all(request["delivery"] == "garbled" for request in created)
    assert all(sorted(request["lago_invoice_ids"]) == asked for request in created)
    wrong_customer = [a for a in answers if a["customer"]["external_id"] != "cus_00001"]
    wrong_invoices = [a for a in answers if sorted(i["lago_id"] for i in a["invoices"]) != asked]
    assert wrong_customer
    assert wrong_invoices
    assert len(wrong_customer) + len(wrong_invoices) == len(answers)
