"""Each endpoint: the request it sends and the response shape it reads (MockTransport)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest

from tests.lago.fakes import (
    customer_json,
    invoice_json,
    make_client,
    meta_json,
    payment_json,
    payment_request_json,
)
from worker.lago import LagoMalformedResponseError

PEM = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----\n"


class Recorder:
    """Answers from a fixed table and keeps every request."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = self.answer(request) if callable(self.answer) else self.answer
        return httpx.Response(200, json=body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def test_get_invoice_reads_the_wrapped_invoice() -> None:
    recorder = Recorder({"invoice": invoice_json(7)})
    with make_client(recorder) as client:
        invoice = client.get_invoice("inv-00007")
    assert invoice.lago_id == "inv-00007"
    assert invoice.total_due_amount_cents == 10_000
    assert recorder.last.method == "GET"
    assert recorder.last.url.path == "/api/v1/invoices/inv-00007"


def test_create_payment_request_sends_the_wrapped_body() -> None:
    recorder = Recorder({"payment_request": payment_request_json("pr-9", ("inv-1", "inv-2"))})
    with make_client(recorder) as client:
        created = client.create_payment_request("cust-1", ["inv-2", "inv-1"], email="ap@acme.test")
    assert created.lago_id == "pr-9"
    assert created.invoice_ids == frozenset({"inv-1", "inv-2"})
    assert recorder.last.method == "POST"
    assert recorder.last.url.path == "/api/v1/payment_requests"
    assert json.loads(recorder.last.content) == {
        "payment_request": {
            "external_customer_id": "cust-1",
            "lago_invoice_ids": ["inv-1", "inv-2"],
            "email": "ap@acme.test",
        }
    }


def test_create_payment_request_leaves_email_to_lago_by_default() -> None:
    recorder = Recorder({"payment_request": payment_request_json()})
    with make_client(recorder) as client:
        client.create_payment_request("cust-1", ("inv-00001",))
    assert "email" not in json.loads(recorder.last.content)["payment_request"]


def test_create_payment_request_refuses_an_empty_invoice_list() -> None:
    with make_client(Recorder({})) as client, pytest.raises(ValueError, match="empty"):
        client.create_payment_request("cust-1", [])


def test_create_payment_request_with_an_unreadable_answer_names_the_field() -> None:
    bad = payment_request_json()
    bad["amount_cents"] = "a lot"
    with (
        make_client(Recorder({"payment_request": bad})) as client,
        pytest.raises(LagoMalformedResponseError) as caught,
    ):
        client.create_payment_request("cust-1", ["inv-00001"])
    assert caught.value.field == "payment_request.amount_cents"


def test_an_answer_with_values_we_do_not_know_is_kept_raw_for_the_checks() -> None:
    odd = payment_request_json()
    odd["amount_currency"] = "euro"
    odd["payment_status"] = "processing"
    with make_client(Recorder({"payment_request": odd})) as client:
        request = client.create_payment_request("cust-1", ["inv-00001"])
    assert (request.amount_currency, request.payment_status) == ("euro", "processing")


def test_get_payment_request_reads_the_wrapped_object() -> None:
    recorder = Recorder({"payment_request": payment_request_json("pr-3")})
    with make_client(recorder) as client:
        assert client.get_payment_request("pr-3").lago_id == "pr-3"
    assert recorder.last.url.path == "/api/v1/payment_requests/pr-3"


def test_an_unwrapped_payment_request_is_malformed() -> None:
    # The OpenAPI spec shows it unwrapped; Lago really wraps it. Trust the code.
    with (
        make_client(Recorder(payment_request_json("pr-3"))) as client,
        pytest.raises(LagoMalformedResponseError) as caught,
    ):
        client.get_payment_request("pr-3")
    assert caught.value.field == "payment_request"


def _paged(key: str, rows: list[dict[str, Any]]) -> Callable[[httpx.Request], dict[str, Any]]:
    def answer(request: httpx.Request) -> dict[str, Any]:
        page = int(request.url.params["page"])
        per_page = int(request.url.params["per_page"])
        chunk = rows[(page - 1) * per_page : page * per_page]
        # next_page is deliberately wrong (always null): paging must not rely on it.
        return {key: chunk, "meta": {**meta_json(page, per_page, len(rows)), "next_page": None}}

    return answer


def test_iter_payment_requests_pages_sequentially_until_a_short_page() -> None:
    rows = [payment_request_json(f"pr-{n}") for n in range(5)]
    recorder = Recorder(_paged("payment_requests", rows))
    with make_client(recorder) as client:
        found = list(
            client.iter_payment_requests(
                external_customer_id="cust-1", payment_status="pending", currency="EUR", per_page=2
            )
        )
    assert [pr.lago_id for pr in found] == [f"pr-{n}" for n in range(5)]
    assert [r.url.params["page"] for r in recorder.requests] == ["1", "2", "3"]
    params = recorder.requests[0].url.params
    assert params["external_customer_id"] == "cust-1"
    assert params["payment_status"] == "pending"
    assert params["currency"] == "EUR"


def test_iter_payment_requests_raises_on_a_bad_row_rather_than_skipping_it() -> None:
    # Reconciliation must not miss a request: a row we cannot read stops the listing.
    rows = [payment_request_json("pr-0"), {**payment_request_json("pr-1"), "created_at": "x"}]
    with (
        make_client(Recorder(_paged("payment_requests", rows))) as client,
        pytest.raises(LagoMalformedResponseError) as caught,
    ):
        list(client.iter_payment_requests())
    assert caught.value.field == "payment_requests[1].created_at"


def test_iter_payment_receipts_filters_by_invoice() -> None:
    receipt = {
        "lago_id": "rcpt-1",
        "number": "R-1",
        "payment": payment_json(),
        "created_at": "2026-11-02T10:00:00Z",
    }
    recorder = Recorder(_paged("payment_receipts", [receipt]))
    with make_client(recorder) as client:
        receipts = list(client.iter_payment_receipts(invoice_id="inv-00001"))
    assert [r.payment.lago_id for r in receipts] == ["pay-1"]
    assert recorder.last.url.path == "/api/v1/payment_receipts"
    assert recorder.last.url.params["invoice_id"] == "inv-00001"


def test_iter_payments_sends_only_the_given_filters() -> None:
    recorder = Recorder(_paged("payments", [payment_json("pay-1"), payment_json("pay-2")]))
    with make_client(recorder) as client:
        payments = list(client.iter_payments(external_customer_id="cust-1"))
    assert [p.lago_id for p in payments] == ["pay-1", "pay-2"]
    assert recorder.last.url.path == "/api/v1/payments"
    assert dict(recorder.last.url.params) == {
        "external_customer_id": "cust-1",
        "page": "1",
        "per_page": "100",
    }


def test_create_payment_sends_a_manual_payment() -> None:
    recorder = Recorder({"payment": payment_json("pay-7")})
    with make_client(recorder) as client:
        payment = client.create_payment(
            invoice_id="inv-1", amount_cents=2500, reference="wire 42", paid_at=date(2026, 11, 2)
        )
    assert payment.lago_id == "pay-7"
    assert recorder.last.method == "POST"
    assert recorder.last.url.path == "/api/v1/payments"
    assert json.loads(recorder.last.content) == {
        "payment": {
            "invoice_id": "inv-1",
            "amount_cents": 2500,
            "reference": "wire 42",
            "paid_at": "2026-11-02",
        }
    }


def test_get_customer_by_external_id() -> None:
    recorder = Recorder({"customer": customer_json("cust-42")})
    with make_client(recorder) as client:
        customer = client.get_customer("cust-42")
    assert customer.external_id == "cust-42"
    assert recorder.last.url.path == "/api/v1/customers/cust-42"


def test_webhook_public_key_is_decoded_to_pem() -> None:
    encoded = base64.b64encode(PEM.encode()).decode()
    recorder = Recorder({"webhook": {"public_key": encoded}})
    with make_client(recorder) as client:
        assert client.get_webhook_public_key() == PEM
    assert recorder.last.url.path == "/api/v1/webhooks/json_public_key"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"webhook": {}},
        {"webhook": {"public_key": "%%% not base64 %%%"}},
        {"webhook": {"public_key": base64.b64encode(b"hello").decode()}},
        {"webhook": "nope"},
    ],
)
def test_a_bad_webhook_public_key_is_malformed(body: dict[str, Any]) -> None:
    with (
        make_client(Recorder(body)) as client,
        pytest.raises(LagoMalformedResponseError) as caught,
    ):
        client.get_webhook_public_key()
    assert caught.value.field == "webhook.public_key"
