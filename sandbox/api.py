"""Handlers for the Lago API endpoints the dunning worker uses (`/api/v1/...`)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox import invoice_payments
from sandbox.careless import garble_answer
from sandbox.errors import (
    bad_request,
    bad_request_missing_param,
    forbidden,
    internal_error,
    not_found,
    validation_failed,
)
from sandbox.model import JsonObject, dump_json
from sandbox.queries import PageRequest, is_uuid, parse_invoice_filters, parse_page
from sandbox.serializers import payment_object, payment_request_object, receipt_object
from sandbox.state import SandboxState

JSON_MEDIA_TYPE = "application/json; charset=utf-8"


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dump_json(value), status_code=status, media_type=JSON_MEDIA_TYPE)


def pagination_meta(total_count: int, page: PageRequest) -> JsonObject:
    """Lago's `meta` object (Kaminari semantics; all zeros and nulls when empty)."""
    if total_count <= 0:
        return {
            "current_page": 0,
            "next_page": None,
            "prev_page": None,
            "total_pages": 0,
            "total_count": 0,
        }
    total_pages = math.ceil(total_count / page.per_page)
    current = page.page
    return {
        "current_page": current,
        "next_page": current + 1 if current < total_pages else None,
        "prev_page": current - 1 if 1 < current <= total_pages else None,
        "total_pages": total_pages,
        "total_count": total_count,
    }


def _slice(items: list[Any], page: PageRequest) -> list[Any]:
    start = (page.page - 1) * page.per_page
    return items[start : start + page.per_page]


class DroppedResponse(Response):
    """Announces the full Content-Length, sends half the body, then ends the exchange:
    the server closes the connection and the client sees a protocol error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", JSON_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request() from None


class LagoApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/invoices", self.list_invoices, methods=["GET"]),
            Route("/api/v1/invoices/{lago_id}", self.get_invoice, methods=["GET"]),
            Route("/api/v1/invoices/{lago_id}/retry_payment", self.retry_payment, methods=["POST"]),
            Route("/api/v1/invoices/{lago_id}/payment_url", self.payment_url, methods=["POST"]),
            Route("/api/v1/payment_requests", self.create_payment_request, methods=["POST"]),
            Route("/api/v1/payment_requests", self.list_payment_requests, methods=["GET"]),
            Route("/api/v1/payment_requests/{lago_id}", self.get_payment_request, methods=["GET"]),
            Route("/api/v1/payment_receipts", self.list_payment_receipts, methods=["GET"]),
            Route("/api/v1/payments", self.list_payments, methods=["GET"]),
            Route("/api/v1/payments", self.create_payment, methods=["POST"]),
            Route("/api/v1/customers/{external_id}", self.get_customer, methods=["GET"]),
            Route("/api/v1/webhooks/json_public_key", self.webhook_public_key, methods=["GET"]),
        ]

    # -- invoices ------------------------------------------------------------------------

    async def list_invoices(self, request: Request) -> Response:
        store = self.state.store
        params = request.query_params
        filters = parse_invoice_filters(params, store.billing_entity_codes)
        page = parse_page(params)
        invoices = store.invoices
        if self.state.injector.settings.careless:
            # An older or buggy Lago: the filters are ignored, every invoice is listed.
            ids, total = store.ordered_ids, len(store.ordered_ids)
            render = store.careless_invoice_json
        else:
            ids = store.matching_invoice_ids(filters)
            total = store.reported_total(
                filters, page.per_page, page.page, self.state.injector.settings.stale_count_ttl
            )
            render = store.invoice_json
        rows = b",".join(render(invoices[lago_id]) for lago_id in _slice(ids, page))
        body = (
            b'{"invoices":[' + rows + b'],"meta":' + dump_json(pagination_meta(total, page)) + b"}"
        )
        return Response(body, media_type=JSON_MEDIA_TYPE)

    async def get_invoice(self, request: Request) -> Response:
        store = self.state.store
        invoice = store.invoices.get(request.path_params["lago_id"])
        if invoice is None:
            raise not_found("invoice")
        careless = self.state.injector.settings.careless
        body = store.careless_invoice_json(invoice) if careless else store.invoice_json(invoice)
        return Response(b'{"invoice":' + body + b"}", media_type=JSON_MEDIA_TYPE)

    async def retry_payment(self, request: Request) -> Response:
        state = self.state
        invoice = state.store.invoices.get(request.path_params["lago_id"])
        if invoice is None:
            raise not_found("invoice")
        invoice_payments.retry_payment(state.invoice_payments, invoice)
        if state.injector.should_fail_retry_payment():
            # The retry was taken, the answer is lost: the worker must not retry blindly.
            return json_response(internal_error().body, 500)
        return Response(b"", status_code=200)

    async def payment_url(self, request: Request) -> Response:
        state = self.state
        invoice = state.store.invoices.get(request.path_params["lago_id"])
        if invoice is None:
            raise not_found("invoice")
        customer = state.store.customers[invoice.customer_external_id]
        details = invoice_payments.payment_url(state.invoice_payments, invoice, customer.data)
        return json_response({"invoice_payment_details": details})

    # -- payment requests ------------------------------------------------------------------

    async def create_payment_request(self, request: Request) -> Response:
        state = self.state
        body = await read_json(request)
        params = body.get("payment_request") if isinstance(body, dict) else None
        if not isinstance(params, dict) or not params:
            raise bad_request_missing_param("payment_request")
        if not state.injector.settings.premium:
            raise forbidden()
        injector = state.injector
        careless = injector.settings.careless
        created = state.create_payment_request(params, origin="api", careless=careless)
        answer = payment_request_object(state.store, created)
        if injector.should_garble_answer():
            answer = garble_answer(answer, injector.rng)
            created.delivery = "garbled"
        payload = dump_json({"payment_request": answer})
        if injector.should_hang_after_commit():
            created.delivery = "hung"
            await asyncio.sleep(injector.settings.hang_seconds)
        elif injector.should_drop_after_commit():
            created.delivery = "dropped"
            return DroppedResponse(payload)
        return Response(payload, media_type=JSON_MEDIA_TYPE)

    async def list_payment_requests(self, request: Request) -> Response:
        store = self.state.store
        params = request.query_params
        customer_id = params.get("external_customer_id")
        status = params.get("payment_status") or None
        currency = params.get("currency") or None
        if self.state.injector.settings.careless:
            customer_id = status = currency = None  # a careless Lago ignores the filters
        entity_codes: set[str] | None = None
        if "billing_entity_codes[]" in params:
            requested = params.getlist("billing_entity_codes[]")
            entity_codes = {code for code in requested if code in store.billing_entity_codes}
            if len(entity_codes) != len(requested):
                raise not_found("billing_entity")
        selected = [
            pr
            for pr in store.payment_requests.values()
            if (customer_id is None or pr.customer_external_id == customer_id)
            and (status is None or pr.payment_status == status)
            and (currency is None or pr.amount_currency == currency)
            and (
                entity_codes is None
                or any(
                    store.invoices[i].data["billing_entity_code"] in entity_codes
                    for i in pr.invoice_ids
                )
            )
        ]
        selected.sort(key=lambda pr: pr.lago_id)
        selected.sort(key=lambda pr: pr.created_at_ns, reverse=True)
        page = parse_page(params)
        return json_response(
            {
                "payment_requests": [
                    payment_request_object(store, pr) for pr in _slice(selected, page)
                ],
                "meta": pagination_meta(len(selected), page),
            }
        )

    async def get_payment_request(self, request: Request) -> Response:
        store = self.state.store
        found = store.payment_requests.get(request.path_params["lago_id"])
        if found is None:
            raise not_found("payment_request")
        return json_response({"payment_request": payment_request_object(store, found)})

    # -- payments and receipts -------------------------------------------------------------

    async def list_payment_receipts(self, request: Request) -> Response:
        store = self.state.store
        invoice_id = _uuid_filter(request, "invoice_id")
        receipts = [
            receipt
            for receipt in store.receipts.values()
            if invoice_id is None or store.payments[receipt.payment_id].invoice_id == invoice_id
        ]
        receipts.sort(key=lambda r: r.lago_id)
        receipts.sort(key=lambda r: r.created_at_ns, reverse=True)
        page = parse_page(request.query_params)
        return json_response(
            {
                "payment_receipts": [receipt_object(store, r) for r in _slice(receipts, page)],
                "meta": pagination_meta(len(receipts), page),
            }
        )

    async def list_payments(self, request: Request) -> Response:
        store = self.state.store
        invoice_id = _uuid_filter(request, "invoice_id")
        customer_id = request.query_params.get("external_customer_id")
        payments = [
            payment
            for payment in store.payments.values()
            if (invoice_id is None or payment.invoice_id == invoice_id)
            and (customer_id is None or payment.customer_external_id == customer_id)
        ]
        payments.sort(key=lambda p: p.lago_id)
        payments.sort(key=lambda p: p.created_at_ns, reverse=True)
        page = parse_page(request.query_params)
        return json_response(
            {
                "payments": [payment_object(p) for p in _slice(payments, page)],
                "meta": pagination_meta(len(payments), page),
            }
        )

    async def create_payment(self, request: Request) -> Response:
        """A manual payment (`Payments::ManualCreateService`)."""
        state = self.state
        body = await read_json(request)
        params = body.get("payment") if isinstance(body, dict) else None
        if not isinstance(params, dict) or not params:
            raise bad_request_missing_param("payment")
        if not state.injector.settings.premium:
            raise forbidden()
        invoice_id = params.get("invoice_id")
        invoice = state.store.invoices.get(invoice_id) if isinstance(invoice_id, str) else None
        if invoice is None:
            raise not_found("invoice")
        amount = params.get("amount_cents")
        reference = params.get("reference")
        paid_at = params.get("paid_at")
        errors: dict[str, list[str]] = {}
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            errors["amount_cents"] = ["value_is_mandatory"]
        elif amount > invoice.data["total_due_amount_cents"]:
            errors["amount_cents"] = ["invalid_amount"]
        if not isinstance(reference, str) or not reference:
            errors["reference"] = ["value_is_mandatory"]
        if paid_at is not None and not isinstance(paid_at, str):
            errors["paid_at"] = ["invalid_date"]
        if errors:
            raise validation_failed(errors)
        assert isinstance(amount, int)
        assert isinstance(reference, str)
        payment = state.pay_invoice(invoice, amount, reference=reference, paid_at=paid_at)
        return json_response({"payment": payment_object(payment)})

    # -- customers and webhooks --------------------------------------------------------------

    async def get_customer(self, request: Request) -> Response:
        customer = self.state.store.customers.get(request.path_params["external_id"])
        if customer is None:
            raise not_found("customer")
        return Response(b'{"customer":' + customer.json_bytes + b"}", media_type=JSON_MEDIA_TYPE)

    async def webhook_public_key(self, request: Request) -> Response:
        return json_response(
            {"webhook": {"public_key": self.state.webhooks.keys.public_key_base64}}
        )


def _uuid_filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not is_uuid(value):
        raise validation_failed({name: ["is in invalid format"]})
    return value.lower()
