"""The sandbox's mutable state and the Lago business rules that change it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sandbox.autopay import Autopay, AutopaySettings
from sandbox.dataset import build_dataset, load_data_file
from sandbox.errors import ApiError, not_allowed, not_found
from sandbox.faults import FaultInjector, FaultSettings
from sandbox.generator import GeneratorSpec, generate_document
from sandbox.invoice_payments import InvoicePayments
from sandbox.model import Dataset, Invoice, JsonObject, Payment, PaymentRequest
from sandbox.serializers import payment_request_object, receipt_object
from sandbox.store import Store
from sandbox.webhooks import RsaKeyPair, WebhookConfig, WebhookSender

DEFAULT_API_KEY = "sandbox-key"
DataSource = GeneratorSpec | Path | JsonObject


@dataclass(slots=True)
class SandboxOptions:
    """Everything the sandbox starts with (CLI flags or test fixtures)."""

    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    data: DataSource = field(default_factory=GeneratorSpec)
    today: date | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    autopay: AutopaySettings = field(default_factory=AutopaySettings)
    organization_id: str = "8f5a0d0e-2d35-4c37-9c35-0d7c0f6a1b2c"


def build_dataset_from(source: DataSource, today: date) -> Dataset:
    if isinstance(source, GeneratorSpec):
        return build_dataset(generate_document(source, today), today)
    if isinstance(source, Path):
        return load_data_file(source, today)
    return build_dataset(source, today)


def current_day(options: SandboxOptions) -> date:
    return options.today or datetime.now(UTC).date()


class SandboxState:
    def __init__(self, options: SandboxOptions, dataset: Dataset | None = None) -> None:
        self.options = options
        self.store = Store(dataset or build_dataset_from(options.data, current_day(options)))
        self.injector = FaultInjector(options.faults)
        self.stats: Counter[tuple[str, int]] = Counter()
        # Bumped by every stats reset: a request that arrived before a reset (e.g. a POST
        # still hanging under the timeout-after-commit fault) is not counted after it.
        self.stats_generation = 0
        self.webhooks = WebhookSender(RsaKeyPair(), options.organization_id)
        self.webhooks.config = _copy_webhook_config(options.webhook)
        self.autopay = Autopay(options.autopay)
        self.invoice_payments = InvoicePayments()

    def reset_stats(self) -> None:
        self.stats.clear()
        self.stats_generation += 1

    @property
    def public_url(self) -> str:
        return self.webhooks.issuer

    @public_url.setter
    def public_url(self, url: str) -> None:
        self.webhooks.issuer = url

    def reset_faults(self) -> None:
        self.injector.apply(self.options.faults)

    def reset_webhooks(self) -> None:
        self.webhooks.config = _copy_webhook_config(self.options.webhook)
        self.webhooks.clear()

    # -- payment requests (lago-api PaymentRequests::CreateService) ----------------------

    def create_payment_request(
        self,
        params: JsonObject,
        *,
        origin: str,
        dunning_campaign_code: str | None = None,
        careless: bool = False,
    ) -> PaymentRequest:
        """Check preconditions 2-7 in Lago's order, then create the request.

        Precondition 1 (premium licence) is the caller's job: Lago's own dunning campaigns
        only run on premium instances, so the control-plane path skips it. `careless` (an
        older or buggy Lago) skips the overdue and ready checks and accepts deleted invoices.
        """
        store = self.store
        external_id = params.get("external_customer_id")
        customer = store.customers.get(external_id) if isinstance(external_id, str) else None
        if customer is None:
            raise not_found("customer")
        requested = params.get("lago_invoice_ids")
        wanted = dict.fromkeys(
            item
            for item in (requested if isinstance(requested, list) else [])
            if isinstance(item, str)
        )
        invoices = [
            store.invoices[lago_id]
            for lago_id in wanted
            if lago_id in store.invoices
            and store.invoices[lago_id].customer_external_id == customer.external_id
            and (careless or store.invoices[lago_id].data["status"] != "deleted")
        ]
        _check_payable(invoices, careless=careless)
        email = params.get("email")
        if not isinstance(email, str) or not email.strip():
            email = customer.data.get("email")
        request = store.add_payment_request(
            customer,
            invoices,
            email.strip() if isinstance(email, str) else None,
            origin=origin,
            dunning_campaign_code=dunning_campaign_code,
        )
        self.webhooks.send(
            "payment_request.created", "payment_request", payment_request_object(store, request)
        )
        self.autopay.schedule(self, request)
        return request

    # -- payments (lago-api Payments::ManualCreateService) -------------------------------

    def pay_invoice(
        self, invoice: Invoice, amount_cents: int, *, reference: str, paid_at: str | None = None
    ) -> Payment:
        """A manual payment on `invoice`, with the webhooks Lago sends for it."""
        payment, receipt, status_changed = self.store.add_manual_payment(
            invoice, amount_cents, reference, paid_at
        )
        if status_changed:
            self._invoice_webhook("invoice.payment_status_updated", invoice)
        self.webhooks.send(
            "payment_receipt.created", "payment_receipt", receipt_object(self.store, receipt)
        )
        return payment

    # -- invoices --------------------------------------------------------------------------

    def patch_invoice(self, invoice: Invoice, changes: dict[str, Any]) -> None:
        became_overdue = (
            changes.get("payment_overdue") is True and not invoice.data["payment_overdue"]
        )
        status_changed = (
            "payment_status" in changes
            and changes["payment_status"] != invoice.data["payment_status"]
        )
        code = changes.get("billing_entity_code")
        if isinstance(code, str):
            self.store.billing_entity_codes.add(code)
        self.store.update_invoice(invoice, dict(changes))
        if became_overdue:
            self._invoice_webhook("invoice.payment_overdue", invoice)
        if status_changed:
            self._invoice_webhook("invoice.payment_status_updated", invoice)

    def _invoice_webhook(self, webhook_type: str, invoice: Invoice) -> None:
        payload = {**self.store.invoice_object(invoice), "fees": []}
        self.webhooks.send(webhook_type, "invoice", payload)


def _check_payable(invoices: list[Invoice], *, careless: bool) -> None:
    """Preconditions 3-7 of `PaymentRequests::CreateService#check_preconditions` (a careless
    Lago skips 4 and 7)."""
    if not invoices:
        raise not_found("invoice")
    if not careless and not all(invoice.data["payment_overdue"] for invoice in invoices):
        raise not_allowed("invoices_not_overdue")
    if len({invoice.data["currency"] for invoice in invoices}) > 1:
        raise not_allowed("invoices_have_different_currencies")
    if len({invoice.data["billing_entity_code"] for invoice in invoices}) > 1:
        raise not_allowed("invoices_have_different_billing_entities")
    if not careless and not all(invoice.ready_for_payment_processing for invoice in invoices):
        raise not_allowed("invoices_not_ready_for_payment_processing")


def _copy_webhook_config(config: WebhookConfig) -> WebhookConfig:
    return WebhookConfig(
        url=config.url,
        algorithm=config.algorithm,
        hmac_key=config.hmac_key,
        max_attempts=config.max_attempts,
        retry_delay_seconds=config.retry_delay_seconds,
        timeout_seconds=config.timeout_seconds,
    )


__all__ = ["DEFAULT_API_KEY", "ApiError", "SandboxOptions", "SandboxState"]
