"""GET /api/v1/invoices: filters, Lago's 422/404 shapes, ordering, pagination, stale counts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.builders import customer, days_ago, document, invoice, new_id

DUNNING_QUERY: dict[str, Any] = {
    "status": "finalized",
    "payment_overdue": "true",
    "payment_status[]": ["pending", "failed"],
    "self_billed": "false",
}


def get(sandbox: SandboxHandle, path: str, params: Any = None) -> httpx.Response:
    with sandbox.api_client() as client:
        return client.get(path, params=params)


def numbers(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["number"] for row in response.json()["invoices"]]


@pytest.fixture
def catalog(sandbox: SandboxHandle) -> None:
    """Eight invoices with one distinguishing trait each (number says which)."""
    rows = [
        invoice("alice", number="overdue", issuing_date=days_ago(50)),
        invoice("alice", number="failed", payment_status="failed", issuing_date=days_ago(49)),
        invoice(
            "alice",
            number="paid",
            payment_status="succeeded",
            total_paid_amount_cents=10_000,
            issuing_date=days_ago(48),
        ),
        invoice(
            "alice", number="partial", total_paid_amount_cents=4_000, issuing_date=days_ago(47)
        ),
        invoice("alice", number="selfbilled", self_billed=True, issuing_date=days_ago(46)),
        invoice("alice", number="draft", status="draft", issuing_date=days_ago(45)),
        invoice(
            "bob",
            number="eur",
            currency="EUR",
            billing_entity_code="acme_eu",
            invoice_type="one_off",
            total_amount_cents=99_000,
            issuing_date=days_ago(44),
            metadata=[{"key": "po", "value": "PO-7"}],
        ),
        invoice("bob", number="notdue", issuing_date=days_ago(1)),
    ]
    people = [
        customer("alice", name="Alice Corp"),
        customer("bob", name="Bob Ltd", billing_entity_code="acme_eu", email="ap@bob.example"),
    ]
    sandbox.reset(data=document(people, rows))


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["notdue", "eur", "draft", "selfbilled", "partial", "paid", "failed", "overdue"]),
        (DUNNING_QUERY, ["eur", "partial", "failed", "overdue"]),
        ({"status": "draft"}, ["draft"]),
        ({"statuses[]": ["draft", "finalized"], "currency": "EUR"}, ["eur"]),
        ({"payment_status": "failed"}, ["failed"]),
        ({"payment_statuses[]": ["succeeded"]}, ["paid"]),
        ({"payment_overdue": "false"}, ["notdue", "draft", "paid"]),
        ({"partially_paid": "true"}, ["partial"]),
        ({"self_billed": "true"}, ["selfbilled"]),
        ({"external_customer_id": "bob"}, ["notdue", "eur"]),
        ({"customer_external_id": "bob"}, ["notdue", "eur"]),
        ({"billing_entity_codes[]": ["acme_eu"]}, ["eur"]),
        ({"invoice_type": "one_off"}, ["eur"]),
        ({"amount_from": "50000"}, ["eur"]),
        ({"amount_to": "5000"}, []),
        ({"issuing_date_from": days_ago(45), "issuing_date_to": days_ago(44)}, ["eur", "draft"]),
        ({"issuing_date_from": "not-a-date", "currency": "EUR"}, ["eur"]),
        ({"metadata[po]": "PO-7"}, ["eur"]),
        ({"metadata[po]": "", "external_customer_id": "bob"}, ["notdue"]),
        ({"search_term": "PARTIAL"}, ["partial"]),
        ({"search_term": "bob.example"}, ["notdue", "eur"]),
        ({"search_term": "bob.example", "external_customer_id": "bob"}, []),
    ],
)
def test_filters_select_the_expected_invoices(
    sandbox: SandboxHandle, params: dict[str, Any], expected: list[str]
) -> None:
    assert numbers(get(sandbox, "/api/v1/invoices", params)) == expected


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(
    ("params", "details"),
    [
        (
            {"payment_status": "unpaid"},
            {"payment_status": ["must be one of: pending, succeeded, failed or must be an array"]},
        ),
        (
            {"payment_status[]": ["pending", "unpaid"]},
            {"payment_status": {"1": ["must be one of: pending, succeeded, failed"]}},
        ),
        (
            {"status": "open"},
            {
                "status": [
                    "must be one of: draft, finalized, voided, failed, pending or must be an array"
                ]
            },
        ),
        (
            {"payment_overdue": "yes", "self_billed": "nope", "partially_paid": "2"},
            {
                "payment_overdue": ["must be boolean"],
                "self_billed": ["must be boolean"],
                "partially_paid": ["must be boolean"],
            },
        ),
    ],
)
def test_invalid_filters_are_422_with_lagos_details(
    sandbox: SandboxHandle, params: dict[str, Any], details: dict[str, Any]
) -> None:
    response = get(sandbox, "/api/v1/invoices", params)
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize("codes", [["acme_us", "nope"], ["acme_us", "acme_us"]])
def test_unknown_or_duplicate_billing_entity_is_404(
    sandbox: SandboxHandle, codes: list[str]
) -> None:
    response = get(sandbox, "/api/v1/invoices", {"billing_entity_codes[]": codes})
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "error": "Not Found",
        "code": "billing_entity_not_found",
    }


@pytest.mark.usefixtures("catalog")
def test_non_numeric_amount_fails_like_postgres(sandbox: SandboxHandle) -> None:
    response = get(sandbox, "/api/v1/invoices", {"amount_from": "lots"})
    assert response.status_code == 500
    assert response.json() == {"status": 500, "error": "Internal Server Error"}


def test_order_is_issuing_date_then_created_at_desc_then_id_asc(sandbox: SandboxHandle) -> None:
    same_day = days_ago(40)
    low, high = sorted([new_id(), new_id()])
    rows = [
        invoice("c", number="older", issuing_date=days_ago(41)),
        invoice("c", number="tie-high", lago_id=high, issuing_date=same_day),
        invoice("c", number="tie-low", lago_id=low, issuing_date=same_day),
        invoice("c", number="later", issuing_date=same_day, created_at=f"{same_day}T23:00:00Z"),
    ]
    sandbox.reset(data=document([customer("c")], rows))
    assert numbers(get(sandbox, "/api/v1/invoices")) == ["later", "tie-low", "tie-high", "older"]


def test_pages_and_meta_including_a_short_last_page(sandbox: SandboxHandle) -> None:
    rows = [invoice("c", issuing_date=days_ago(40 + n), number=f"n{n:02d}") for n in range(7)]
    sandbox.reset(data=document([customer("c")], rows))
    pages = [get(sandbox, "/api/v1/invoices", {"per_page": 3, "page": p}).json() for p in (1, 2, 3)]
    assert [len(page["invoices"]) for page in pages] == [3, 3, 1]
    assert [row["number"] for page in pages for row in page["invoices"]] == [
        f"n{n:02d}" for n in range(7)
    ]
    assert pages[0]["meta"] == {
        "current_page": 1,
        "next_page": 2,
        "prev_page": None,
        "total_pages": 3,
        "total_count": 7,
    }
    assert pages[2]["meta"] == {
        "current_page": 3,
        "next_page": None,
        "prev_page": 2,
        "total_pages": 3,
        "total_count": 7,
    }
    beyond = get(sandbox, "/api/v1/invoices", {"per_page": 3, "page": 4}).json()
    assert beyond["invoices"] == []
    assert beyond["meta"]["next_page"] is None
    default = get(sandbox, "/api/v1/invoices", {"per_page": "abc"}).json()
    assert len(default["invoices"]) == 7


def test_empty_result_meta_is_all_zero(sandbox: SandboxHandle) -> None:
    response = get(sandbox, "/api/v1/invoices", {"external_customer_id": "nobody"})
    assert response.json() == {
        "invoices": [],
        "meta": {
            "current_page": 0,
            "next_page": None,
            "prev_page": None,
            "total_pages": 0,
            "total_count": 0,
        },
    }


def test_stale_total_count_is_reused_while_larger_than_the_page_window(
    sandbox: SandboxHandle,
) -> None:
    rows = [invoice("c", number=f"n{n}") for n in range(5)]
    sandbox.reset(data=document([customer("c")], rows))
    sandbox.set_faults(stale_count_ttl=600)
    query = {**DUNNING_QUERY, "per_page": 2}
    assert get(sandbox, "/api/v1/invoices", query).json()["meta"]["total_count"] == 5
    for row in rows[:3]:
        sandbox.pay_invoice(row["lago_id"])
    first = get(sandbox, "/api/v1/invoices", query).json()
    assert len(first["invoices"]) == 2
    assert first["meta"]["total_count"] == 5  # stale: only 2 are left
    assert first["meta"]["next_page"] == 2
    second = get(sandbox, "/api/v1/invoices", {**query, "page": 3}).json()
    assert second["invoices"] == []
    # 5 is not > per_page * page (6), so the real count is read again.
    assert second["meta"]["total_count"] == 2
    sandbox.set_faults(stale_count_ttl=0)
    assert get(sandbox, "/api/v1/invoices", query).json()["meta"]["total_count"] == 2


def test_cached_results_follow_changes_to_invoices(sandbox: SandboxHandle) -> None:
    rows = [invoice("c", number=f"n{n}", issuing_date=days_ago(40 + n)) for n in range(4)]
    sandbox.reset(data=document([customer("c")], rows))
    assert numbers(get(sandbox, "/api/v1/invoices", DUNNING_QUERY)) == ["n0", "n1", "n2", "n3"]
    sandbox.pay_invoice(rows[1]["lago_id"])
    assert numbers(get(sandbox, "/api/v1/invoices", DUNNING_QUERY)) == ["n0", "n2", "n3"]
    sandbox.patch_invoice(rows[1]["lago_id"], payment_status="failed", payment_overdue=True)
    assert numbers(get(sandbox, "/api/v1/invoices", DUNNING_QUERY)) == ["n0", "n1", "n2", "n3"]
    sandbox.patch_invoice(rows[3]["lago_id"], issuing_date=days_ago(1))
    assert numbers(get(sandbox, "/api/v1/invoices", DUNNING_QUERY)) == ["n3", "n0", "n1", "n2"]


def test_show_invoice_and_not_found(sandbox: SandboxHandle) -> None:
    row = invoice("c", metadata=[{"key": "po", "value": "1"}])
    sandbox.reset(data=document([customer("c", country="FR", timezone="Europe/Paris")], [row]))
    shown = get(sandbox, f"/api/v1/invoices/{row['lago_id']}").json()["invoice"]
    assert shown["lago_id"] == row["lago_id"]
    assert shown["total_due_amount_cents"] == 10_000
    assert shown["payment_overdue"] is True
    assert shown["customer"]["applicable_timezone"] == "Europe/Paris"
    assert shown["metadata"][0]["key"] == "po"
    assert "ready_for_payment_processing" not in shown
    for missing in (new_id(), "not-a-uuid"):
        response = get(sandbox, f"/api/v1/invoices/{missing}")
        assert response.status_code == 404
        assert response.json()["code"] == "invoice_not_found"


def test_customer_endpoint(sandbox: SandboxHandle) -> None:
    shown = get(sandbox, "/api/v1/customers/cus_00001").json()["customer"]
    assert shown["external_id"] == "cus_00001"
    missing = get(sandbox, "/api/v1/customers/nobody")
    assert missing.status_code == 404
    assert missing.json()["code"] == "customer_not_found"


def test_auth_and_unknown_routes(sandbox: SandboxHandle) -> None:
    with httpx.Client(base_url=sandbox.url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sandbox-key"}):
            response = anonymous.get("/api/v1/invoices", headers=headers)
            assert response.status_code == 401
            assert response.json() == {"status": 401, "error": "Unauthorized"}
    for method, path in (("GET", "/api/v1/nothing"), ("DELETE", "/api/v1/invoices")):
        with sandbox.api_client() as client:
            response = client.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found"}
    assert sandbox.request_count("GET /api/v1/invoices", 401) == 3
