"""POST/GET /api/v1/payment_requests: Lago's preconditions, in Lago's order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.builders import customer, document, invoice, new_id


def post_request(sandbox: SandboxHandle, body: Any) -> httpx.Response:
    with sandbox.api_client() as client:
        return client.post("/api/v1/payment_requests", json=body)


def ask(sandbox: SandboxHandle, external_id: str, invoice_ids: list[str]) -> httpx.Response:
    return post_request(
        sandbox,
        {"payment_request": {"external_customer_id": external_id, "lago_invoice_ids": invoice_ids}},
    )


def error_code(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("code")


@pytest.fixture
def two_customers(sandbox: SandboxHandle) -> dict[str, dict[str, Any]]:
    """alice: two payable USD invoices (100.00 and 250.00, the latter 50.00 paid)
    plus one of each failing kind; bob: one payable invoice."""
    invoices = {
        "a1": invoice("alice"),
        "a2": invoice("alice", total_amount_cents=25_000, total_paid_amount_cents=5_000),
        "not_overdue": invoice("alice", issuing_date=None, payment_overdue=False),
        "paid": invoice("alice", payment_status="succeeded", total_paid_amount_cents=10_000),
        "eur": invoice("alice", currency="EUR", billing_entity_code="acme_us"),
        "eu_entity": invoice("alice", billing_entity_code="acme_eu"),
        "in_flight": invoice("alice", ready_for_payment_processing=False),
        "credited": invoice("alice", total_offsetted_credit_note_amount_cents=3_000),
        "b1": invoice("bob"),
    }
    invoices["not_overdue"].pop("issuing_date")
    sandbox.reset(data=document([customer("alice"), customer("bob")], list(invoices.values())))
    return invoices


def test_creates_a_request_for_the_customers_overdue_invoices(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    ids = [two_customers["a1"]["lago_id"], two_customers["a2"]["lago_id"]]
    response = ask(sandbox, "alice", ids)
    assert response.status_code == 200
    created = response.json()["payment_request"]
    assert created["amount_cents"] == 10_000 + 25_000 - 5_000
    assert created["amount_currency"] == "USD"
    assert created["payment_status"] == "pending"
    assert created["email"] == "alice@billing.example"
    assert created["customer"]["external_id"] == "alice"
    assert sorted(i["lago_id"] for i in created["invoices"]) == sorted(ids)
    assert [pr["lago_id"] for pr in sandbox.payment_requests()] == [created["lago_id"]]


def test_amount_subtracts_credit_note_offsets_and_email_can_be_overridden(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    response = post_request(
        sandbox,
        {
            "payment_request": {
                "external_customer_id": "alice",
                "email": "  finance@alice.example ",
                "lago_invoice_ids": [two_customers["credited"]["lago_id"]],
            }
        },
    )
    assert response.status_code == 200
    assert response.json()["payment_request"]["amount_cents"] == 7_000
    assert response.json()["payment_request"]["email"] == "finance@alice.example"


def test_other_customers_invoices_are_silently_dropped(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    mine, theirs = two_customers["a1"]["lago_id"], two_customers["b1"]["lago_id"]
    response = ask(sandbox, "alice", [mine, theirs, "not-a-uuid"])
    assert response.status_code == 200
    assert [i["lago_id"] for i in response.json()["payment_request"]["invoices"]] == [mine]
    assert response.json()["payment_request"]["amount_cents"] == 10_000


@pytest.mark.parametrize(
    ("invoice_keys", "expected"),
    [
        (["b1"], (404, "invoice_not_found")),
        ([], (404, "invoice_not_found")),
        (["a1", "not_overdue"], (405, "invoices_not_overdue")),
        (["a1", "paid"], (405, "invoices_not_overdue")),
        (["a1", "eur"], (405, "invoices_have_different_currencies")),
        (["a1", "eu_entity"], (405, "invoices_have_different_billing_entities")),
        (["a1", "in_flight"], (405, "invoices_not_ready_for_payment_processing")),
    ],
)
def test_each_precondition_has_its_code(
    sandbox: SandboxHandle,
    two_customers: dict[str, dict[str, Any]],
    invoice_keys: list[str],
    expected: tuple[int, str],
) -> None:
    response = ask(sandbox, "alice", [two_customers[key]["lago_id"] for key in invoice_keys])
    assert error_code(response) == expected
    assert response.json()["error"] == {404: "Not Found", 405: "Method Not Allowed"}[expected[0]]
    assert sandbox.payment_requests() == []


def test_preconditions_are_checked_in_lagos_order(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    every_problem = [
        two_customers[key]["lago_id"]
        for key in ("in_flight", "eu_entity", "eur", "not_overdue", "a1")
    ]
    # Each step removes the problem reported by the previous one.
    expected_sequence = [
        (403, "feature_unavailable"),
        (404, "customer_not_found"),
        (404, "invoice_not_found"),
        (405, "invoices_not_overdue"),
        (405, "invoices_have_different_currencies"),
        (405, "invoices_have_different_billing_entities"),
        (405, "invoices_not_ready_for_payment_processing"),
    ]
    sandbox.set_faults(premium=False)
    assert error_code(ask(sandbox, "nobody", every_problem)) == expected_sequence[0]
    sandbox.set_faults(premium=True)
    assert error_code(ask(sandbox, "nobody", every_problem)) == expected_sequence[1]
    assert error_code(ask(sandbox, "alice", [new_id()])) == expected_sequence[2]
    remaining = list(every_problem)
    for expected in expected_sequence[3:]:
        assert error_code(ask(sandbox, "alice", remaining)) == expected
        remaining = remaining[:-2] + remaining[-1:]  # drop the invoice causing it
    assert ask(sandbox, "alice", remaining).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"payment_request": {}}, {"payment_request": "x"}, {"something": {"a": 1}}],
)
def test_missing_root_key_is_a_400(sandbox: SandboxHandle, body: Any) -> None:
    response = post_request(sandbox, body)
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "BadRequest: param is missing or the value is empty or invalid: payment_request",
    }


def test_no_premium_answers_403_before_looking_at_the_customer(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    sandbox.set_faults(premium=False)
    response = ask(sandbox, "alice", [two_customers["a1"]["lago_id"]])
    assert response.status_code == 403
    assert response.json() == {"status": 403, "error": "Forbidden", "code": "feature_unavailable"}


def test_show_is_wrapped_and_unknown_is_404(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    created = ask(sandbox, "alice", [two_customers["a1"]["lago_id"]]).json()["payment_request"]
    with sandbox.api_client() as client:
        shown = client.get(f"/api/v1/payment_requests/{created['lago_id']}")
        missing = client.get(f"/api/v1/payment_requests/{new_id()}")
    assert shown.json() == {"payment_request": created}
    assert error_code(missing) == (404, "payment_request_not_found")


def test_list_filters_and_orders_newest_first(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    first = ask(sandbox, "alice", [two_customers["a1"]["lago_id"]]).json()["payment_request"]
    second = ask(sandbox, "alice", [two_customers["a2"]["lago_id"]]).json()["payment_request"]
    bobs = ask(sandbox, "bob", [two_customers["b1"]["lago_id"]]).json()["payment_request"]
    with sandbox.api_client() as client:

        def ids(**params: Any) -> list[str]:
            response = client.get("/api/v1/payment_requests", params=params)
            assert response.status_code == 200
            return [pr["lago_id"] for pr in response.json()["payment_requests"]]

        assert ids() == [bobs["lago_id"], second["lago_id"], first["lago_id"]]
        assert ids(external_customer_id="alice") == [second["lago_id"], first["lago_id"]]
        assert ids(external_customer_id="unknown") == []
        assert ids(payment_status="pending", currency="USD") == ids()
        assert ids(payment_status="succeeded") == []
        assert ids(currency="EUR") == []
        # An array payment_status is dropped by Rails' permit, so it does not filter.
        assert ids(**{"payment_status[]": "succeeded"}) == ids()
        unknown_entity = client.get(
            "/api/v1/payment_requests", params={"billing_entity_codes[]": ["acme_us", "nope"]}
        )
        assert error_code(unknown_entity) == (404, "billing_entity_not_found")
        assert ids(**{"billing_entity_codes[]": "acme_us"}) == ids()
        page = client.get("/api/v1/payment_requests", params={"per_page": 2, "page": 2}).json()
        assert page["meta"] == {
            "current_page": 2,
            "next_page": None,
            "prev_page": 1,
            "total_pages": 2,
            "total_count": 3,
        }


def test_campaign_request_is_created_without_faults_and_is_listed(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    sandbox.set_faults(error_rate=1.0, drop_rate=1.0)
    created = sandbox.create_campaign_payment_request("alice", [two_customers["a1"]["lago_id"]])
    assert created["origin"] == "dunning_campaign"
    sandbox.set_faults(error_rate=0.0)
    with sandbox.api_client() as client:
        listed = client.get(
            "/api/v1/payment_requests",
            params={"external_customer_id": "alice", "payment_status": "pending"},
        ).json()["payment_requests"]
    assert [pr["lago_id"] for pr in listed] == [created["lago_id"]]
    assert sandbox.request_count("POST /api/v1/payment_requests") == 0


def test_campaign_request_follows_the_same_preconditions(
    sandbox: SandboxHandle, two_customers: dict[str, dict[str, Any]]
) -> None:
    with sandbox.api_client() as client:
        response = client.post(
            "/_sandbox/payment_requests",
            json={
                "external_customer_id": "alice",
                "lago_invoice_ids": [two_customers["not_overdue"]["lago_id"]],
            },
        )
    assert error_code(response) == (405, "invoices_not_overdue")
