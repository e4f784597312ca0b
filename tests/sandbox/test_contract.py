"""Sandbox responses validated against Lago's OpenAPI spec (`<repo>/../shared/lago-openapi`).

The spec is known to differ from what lago-api really sends (lago-api.md section 8). Each such
difference is written below as an explicit, commented exception; everything else must match.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.fixtures.sandbox import SandboxHandle

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "lago-openapi" / "openapi.yaml"

pytestmark = pytest.mark.skipif(
    not SPEC_PATH.exists(), reason=f"Lago's OpenAPI spec is not available at {SPEC_PATH}"
)


def _allow_null(schema: dict[str, Any], *fields: str) -> None:
    for name in fields:
        prop = schema["properties"][name]
        types = prop.get("type", [])
        prop["type"] = [*([types] if isinstance(types, str) else types), "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]


@functools.cache
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded: dict[str, Any] = yaml.load(SPEC_PATH.read_text(), Loader=loader)
    patched = copy.deepcopy(loaded)
    schemas = patched["components"]["schemas"]
    # Known gap: lago-api serializes a nil `payment_dispute_lost_at` as null; the spec types
    # it as a plain string.
    _allow_null(schemas["InvoiceBaseObject"], "payment_dispute_lost_at")
    # Known gap: customers without a payment provider get `payment_provider: null`.
    _allow_null(schemas["CustomerBillingConfiguration"], "payment_provider")
    # Known gap: manual payments have no provider, so lago-api sends null for these.
    _allow_null(
        schemas["PaymentObject"],
        "payment_provider_code",
        "payment_provider_type",
        "provider_customer_id",
    )
    return patched


@functools.cache
def validator_for(schema_name: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": spec()["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def documented_schema(path: str, method: str, status: str = "200") -> str:
    """The schema name the spec gives for one response of one path."""
    response = spec()["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = spec()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


def assert_valid(schema_name: str, body: Any) -> None:
    errors = sorted(validator_for(schema_name).iter_errors(body), key=str)
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    with sandbox.api_client() as api:
        yield api


@pytest.fixture
def activity(sandbox: SandboxHandle, client: httpx.Client) -> dict[str, Any]:
    """One payment request and one manual payment so every list has rows."""
    overdue = [
        row["lago_id"]
        for row in sandbox.invoices()
        if row["customer"]["external_id"] == "cus_00001" and row["payment_overdue"]
    ]
    created = client.post(
        "/api/v1/payment_requests",
        json={
            "payment_request": {
                "external_customer_id": "cus_00001",
                "lago_invoice_ids": overdue[:2],
            }
        },
    )
    assert created.status_code == 200
    payment = client.post(
        "/api/v1/payments",
        json={"payment": {"invoice_id": overdue[2], "amount_cents": 100, "reference": "wire 1"}},
    )
    assert payment.status_code == 200
    return {"request": created.json(), "payment": payment.json(), "invoice_id": overdue[2]}


@pytest.mark.parametrize(
    ("path", "spec_path", "params"),
    [
        ("/api/v1/invoices", "/invoices", {"per_page": 100}),
        ("/api/v1/payment_requests", "/payment_requests", {}),
        ("/api/v1/payments", "/payments", {}),
        ("/api/v1/payment_receipts", "/payment_receipts", {}),
        ("/api/v1/webhooks/json_public_key", "/webhooks/json_public_key", {}),
    ],
)
@pytest.mark.usefixtures("activity")
def test_list_responses_match_the_spec(
    client: httpx.Client, path: str, spec_path: str, params: dict[str, Any]
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 200
    body = response.json()
    assert any(isinstance(v, list) and v for v in body.values()) or "webhook" in body
    assert_valid(documented_schema(spec_path, "get"), body)


def test_single_objects_match_the_spec(client: httpx.Client, activity: dict[str, Any]) -> None:
    invoice = client.get(f"/api/v1/invoices/{activity['invoice_id']}").json()
    assert_valid(documented_schema("/invoices/{lago_id}", "get"), invoice)
    customer = client.get("/api/v1/customers/cus_00001").json()
    assert_valid(documented_schema("/customers/{external_customer_id}", "get"), customer)
    assert_valid(documented_schema("/payment_requests", "post"), activity["request"])
    assert_valid(documented_schema("/payments", "post"), activity["payment"])


def test_payment_request_show_is_wrapped_unlike_the_spec(
    client: httpx.Client, activity: dict[str, Any]
) -> None:
    lago_id = activity["request"]["payment_request"]["lago_id"]
    body = client.get(f"/api/v1/payment_requests/{lago_id}").json()
    # Known gap: the spec documents an unwrapped PaymentRequestObject; lago-api wraps it in
    # {"payment_request": ...}. Validate the wrapped object, and prove the spec's shape fails.
    assert documented_schema("/payment_requests/{lago_id}", "get") == "PaymentRequestObject"
    assert_valid("PaymentRequestObject", body["payment_request"])
    assert list(validator_for("PaymentRequestObject").iter_errors(body))


def test_error_bodies_match_the_spec(sandbox: SandboxHandle, client: httpx.Client) -> None:
    with httpx.Client(base_url=sandbox.url) as anonymous:
        assert_valid("ApiErrorUnauthorized", anonymous.get("/api/v1/invoices").json())
    assert_valid("ApiErrorNotFound", client.get("/api/v1/customers/nobody").json())
    assert_valid(
        "ApiErrorUnprocessableEntity",
        client.get("/api/v1/invoices", params={"payment_overdue": "x"}).json(),
    )
    assert_valid("ApiErrorBadRequest", client.post("/api/v1/payment_requests", json={}).json())
    # Known gap: the spec lists no 403/404/405 for POST /payment_requests; lago-api sends
    # them with the generic Forbidden / NotFound / NotAllowed bodies validated here.
    ask = {"payment_request": {"external_customer_id": "cus_00001", "lago_invoice_ids": []}}
    assert_valid("ApiErrorNotFound", client.post("/api/v1/payment_requests", json=ask).json())
    not_overdue = next(row for row in sandbox.invoices() if not row["payment_overdue"])
    ask["payment_request"] = {
        "external_customer_id": not_overdue["customer"]["external_id"],
        "lago_invoice_ids": [not_overdue["lago_id"]],
    }
    assert_valid("ApiErrorNotAllowed", client.post("/api/v1/payment_requests", json=ask).json())
    sandbox.set_faults(premium=False)
    assert_valid("ApiErrorForbidden", client.post("/api/v1/payment_requests", json=ask).json())
    # Known gap: an unrouted path gets Rails' `{"status":404,"error":"Not Found"}` with no
    # `code`, which ApiErrorNotFound requires.
    unrouted = client.get("/api/v1/nothing-here").json()
    assert unrouted == {"status": 404, "error": "Not Found"}
    assert list(validator_for("ApiErrorNotFound").iter_errors(unrouted))
