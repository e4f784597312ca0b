"""Bad input through the real `LagoClient` (httpx.MockTransport): whatever Lago's answer holds,
the client yields parsed records or `MalformedRecord`s, or raises a typed `LagoError`; nothing
else escapes."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from worker.lago import LagoClient
from worker.lago.errors import LagoError
from worker.lago.filters import InvoiceFilters
from worker.lago.models import Invoice, MalformedRecord, PaymentRequest

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no NaN or Infinity
    st.text(max_size=12),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

GOOD_INVOICE: dict[str, Any] = {
    "lago_id": "2f8a1c3e-0000-4000-8000-000000000001",
    "number": "ACM-1",
    "customer": {"lago_id": "c-1", "external_id": "cus_1", "email": "a@example.com"},
    "billing_entity_code": "acme_eu",
    "currency": "EUR",
    "status": "finalized",
    "payment_status": "pending",
    "payment_overdue": True,
    "payment_due_date": "2025-01-01",
    "total_amount_cents": 1000,
    "total_due_amount_cents": 1000,
    "self_billed": False,
}


@st.composite
def broken_invoices(draw: st.DrawFn) -> dict[str, Any]:
    """A realistic invoice with some fields removed or replaced by anything."""
    invoice = dict(GOOD_INVOICE)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD_INVOICE)), max_size=4)):
        if draw(st.booleans()):
            invoice.pop(name, None)
        else:
            invoice[name] = draw(JSONISH)
    if draw(st.booleans()):
        invoice["currency"] = draw(st.text(min_size=0, max_size=5))
    return invoice


def _client(handler: Any) -> LagoClient:
    return LagoClient(
        "http://lago.test",
        SecretStr("k"),
        max_retries=0,
        transport=httpx.MockTransport(handler),
        sleep=lambda _s: None,
    )


def _page(rows: list[Any]) -> dict[str, Any]:
    return {
        "invoices": rows,
        "meta": {"current_page": 1, "next_page": None, "total_pages": 1, "total_count": len(rows)},
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.one_of(broken_invoices(), JSONISH), max_size=6))
def test_garbage_rows_become_records_or_malformed_records(rows: list[Any]) -> None:
    body = json.dumps(_page(rows)).encode()
    client = _client(lambda request: httpx.Response(200, content=body))
    try:
        items = list(client.iter_invoices(InvoiceFilters.overdue()))
    except LagoError:
        return
    finally:
        client.close()
    assert len(items) == len(rows)
    assert all(isinstance(item, Invoice | MalformedRecord) for item in items)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from([200, 201, 400, 401, 403, 404, 405, 422, 429, 500, 502, 503]),
    body=st.one_of(st.binary(max_size=40), JSONISH.map(lambda v: json.dumps(v).encode())),
)
def test_any_answer_to_a_payment_request_post_is_a_result_or_a_typed_error(
    status: int, body: bytes
) -> None:
    client = _client(lambda request: httpx.Response(status, content=body))
    message: str | None = None
    result: PaymentRequest | None = None
    try:
        result = client.create_payment_request("cus_1", ["inv-1"])
    except LagoError as exc:
        message = str(exc)
    finally:
        client.close()
    if message is not None:
        assert message
        assert "\n" not in message
    else:
        assert isinstance(result, PaymentRequest)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_broken_json_on_the_listing_is_a_typed_error(body: bytes) -> None:
    client = _client(lambda request: httpx.Response(200, content=body))
    try:
        items = list(client.iter_invoices(InvoiceFilters.overdue()))
    except LagoError:
        return
    finally:
        client.close()
    assert all(isinstance(item, Invoice | MalformedRecord) for item in items)
