"""JSON objects in the shapes of lago-api's `V1::*Serializer` classes."""

from __future__ import annotations

from sandbox.model import JsonObject, Payment, PaymentReceipt, PaymentRequest
from sandbox.store import Store


def payment_request_object(store: Store, request: PaymentRequest) -> JsonObject:
    """`V1::PaymentRequestSerializer` with `includes: [:customer, :invoices]`."""
    invoices = [store.invoices[lago_id] for lago_id in request.invoice_ids]
    return {
        "lago_id": request.lago_id,
        "email": request.email,
        "amount_cents": request.amount_cents,
        "amount_currency": request.amount_currency,
        "payment_status": request.payment_status,
        "created_at": request.created_at,
        "customer": store.customers[request.customer_external_id].data,
        "invoices": [invoice.data for invoice in invoices],
    }


def payment_object(payment: Payment) -> JsonObject:
    """`V1::PaymentSerializer` for a manual payment of one invoice."""
    return {
        "lago_id": payment.lago_id,
        "lago_customer_id": payment.lago_customer_id,
        "external_customer_id": payment.customer_external_id,
        "invoice_ids": [payment.invoice_id],
        "invoice_numbers": [payment.invoice_number],
        "lago_payable_id": payment.invoice_id,
        "payable_type": "Invoice",
        "amount_cents": payment.amount_cents,
        "amount_currency": payment.amount_currency,
        "status": "succeeded",
        "payment_status": "succeeded",
        "type": "manual",
        "reference": payment.reference,
        "payment_provider_code": None,
        "payment_provider_type": None,
        "external_payment_id": None,
        "provider_payment_id": None,
        "provider_customer_id": None,
        "next_action": {},
        "created_at": payment.created_at,
    }


def receipt_object(store: Store, receipt: PaymentReceipt) -> JsonObject:
    """`V1::PaymentReceiptSerializer`."""
    return {
        "lago_id": receipt.lago_id,
        "number": receipt.number,
        "file_url": None,
        "xml_url": None,
        "payment": payment_object(store.payments[receipt.payment_id]),
        "created_at": receipt.created_at,
    }


def audit_payment_request(store: Store, request: PaymentRequest) -> JsonObject:
    """A payment request as the control plane shows it: Lago's object plus sandbox facts."""
    return {
        **payment_request_object(store, request),
        "external_customer_id": request.customer_external_id,
        "lago_invoice_ids": list(request.invoice_ids),
        "origin": request.origin,
        "dunning_campaign_code": request.dunning_campaign_code,
        "delivery": request.delivery,
        "ineligible_invoice_ids": list(request.ineligible_invoice_ids),
    }
