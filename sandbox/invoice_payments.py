"""`retry_payment` and `payment_url` on one invoice, with Lago's validations.

Read from lago-api `Invoices::Payments::RetryService` and `GeneratePaymentUrlService`:

- retry_payment: draft, voided or paid -> 405 `invalid_status`; a payment in flight
  (`ready_for_payment_processing` false) -> 405
  `payment_processor_is_currently_handling_payment`; otherwise 200 with an empty body, also
  when the customer has no payment provider (Lago then only sends an
  `invoice.payment_failure` webhook with `customer_must_have_payment_provider`).
- payment_url: no provider -> 422 `no_linked_payment_provider`; GoCardless -> 422
  `invalid_payment_provider`; paid, voided or draft -> 422
  `invalid_invoice_status_or_payment_status`; otherwise the checkout link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import not_allowed, validation_failed
from sandbox.model import Invoice, utc_now_iso


@dataclass(slots=True)
class InvoicePayments:
    """What was asked of the invoice payment endpoints (for tests and audits)."""

    retries: list[tuple[str, str]] = field(default_factory=list)  # (lago_id, at)
    urls: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.retries.clear()
        self.urls.clear()


def _not_payable(invoice: Invoice) -> bool:
    data = invoice.data
    return bool(data["status"] in ("draft", "voided") or data["payment_status"] == "succeeded")


def retry_payment(payments: InvoicePayments, invoice: Invoice) -> None:
    """Raise the refusal Lago gives, or record the retry."""
    if _not_payable(invoice):
        raise not_allowed("invalid_status")
    if not invoice.ready_for_payment_processing:
        raise not_allowed("payment_processor_is_currently_handling_payment")
    payments.retries.append((invoice.lago_id, utc_now_iso()))


def payment_url(
    payments: InvoicePayments, invoice: Invoice, customer: dict[str, Any]
) -> dict[str, Any]:
    """The `invoice_payment_details` Lago answers, or the refusal it gives."""
    config = customer.get("billing_configuration") or {}
    provider = config.get("payment_provider")
    if not provider:
        raise validation_failed({"base": ["no_linked_payment_provider"]})
    if provider == "gocardless":
        raise validation_failed({"base": ["invalid_payment_provider"]})
    if _not_payable(invoice):
        raise validation_failed({"base": ["invalid_invoice_status_or_payment_status"]})
    payments.urls.append(invoice.lago_id)
    return {
        "lago_customer_id": customer.get("lago_id"),
        "external_customer_id": customer.get("external_id"),
        "payment_provider": provider,
        "lago_invoice_id": invoice.lago_id,
        "payment_url": f"https://checkout.{provider}.example/pay/{invoice.lago_id}",
    }
