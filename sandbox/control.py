"""The control plane (`/_sandbox/*`, no auth): data, faults, stats, audits and webhooks.

Every endpoint is listed in sandbox/README.md.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.api import json_response, read_json
from sandbox.careless import careless_invoice
from sandbox.dataset import DataError
from sandbox.errors import ApiError
from sandbox.faults import FaultSettingsError
from sandbox.generator import GeneratorSpec
from sandbox.model import INVOICE_TYPES, PAYMENT_STATUSES, VISIBLE_INVOICE_STATUSES, JsonObject
from sandbox.serializers import audit_payment_request
from sandbox.state import DataSource, SandboxState, build_dataset_from, current_day
from sandbox.store import Store
from sandbox.webhooks import WebhookConfig

_ENUM_FIELDS: dict[str, tuple[str, ...]] = {
    "status": VISIBLE_INVOICE_STATUSES,
    "payment_status": PAYMENT_STATUSES,
    "invoice_type": INVOICE_TYPES,
}
_READ_ONLY_FIELDS = frozenset({"lago_id", "total_due_amount_cents", "customer"})


class ControlError(Exception):
    """A bad control-plane request; answered 400 `{"error": <one line>}`."""


def control_error_response(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)


class ControlPlane:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/stats/reset", self.reset_stats, methods=["POST"]),
            Route("/_sandbox/faults", self.get_faults, methods=["GET"]),
            Route("/_sandbox/faults", self.set_faults, methods=["POST"]),
            Route("/_sandbox/faults/reset", self.reset_faults, methods=["POST"]),
            Route("/_sandbox/reset", self.reset_data, methods=["POST"]),
            Route("/_sandbox/invoices", self.list_invoices, methods=["GET"]),
            Route("/_sandbox/invoices/{lago_id}", self.patch_invoice, methods=["POST"]),
            Route("/_sandbox/payment_requests", self.list_payment_requests, methods=["GET"]),
            Route("/_sandbox/payment_requests", self.campaign_payment_request, methods=["POST"]),
            Route("/_sandbox/invoice_payments", self.invoice_payments, methods=["GET"]),
            Route("/_sandbox/webhooks", self.get_webhooks, methods=["GET"]),
            Route("/_sandbox/webhooks", self.set_webhooks, methods=["POST"]),
            Route("/_sandbox/webhooks/reset", self.reset_webhooks, methods=["POST"]),
            Route("/_sandbox/webhooks/deliveries", self.webhook_deliveries, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        store = self.state.store
        return json_response(
            {"ok": True, "customers": len(store.customers), "invoices": len(store.invoices)}
        )

    async def stats(self, request: Request) -> Response:
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.state.stats.items()):
            requests.setdefault(endpoint, {})[str(status)] = count
        return json_response({"requests": requests, "total": sum(self.state.stats.values())})

    async def reset_stats(self, request: Request) -> Response:
        self.state.reset_stats()
        return json_response({"ok": True})

    async def get_faults(self, request: Request) -> Response:
        return json_response(self.state.injector.settings.to_json())

    async def set_faults(self, request: Request) -> Response:
        changes = await _json_object(request)
        try:
            settings = self.state.injector.settings.updated(changes)
        except FaultSettingsError as exc:
            return control_error_response(str(exc))
        except (TypeError, ValueError) as exc:
            return control_error_response(f"invalid fault settings: {exc}")
        self.state.injector.apply(settings)
        return json_response(settings.to_json())

    async def reset_faults(self, request: Request) -> Response:
        self.state.reset_faults()
        return json_response(self.state.injector.settings.to_json())

    async def reset_data(self, request: Request) -> Response:
        body = await _json_object(request)
        try:
            source = _data_source(body, self.state.options.data)
        except ControlError as exc:
            return control_error_response(str(exc))
        today = current_day(self.state.options)
        try:
            store = await run_in_threadpool(lambda: Store(build_dataset_from(source, today)))
        except DataError as exc:
            return control_error_response(str(exc))
        self.state.store = store
        self.state.invoice_payments.clear()
        return json_response(
            {"ok": True, "customers": len(store.customers), "invoices": len(store.invoices)}
        )

    async def list_invoices(self, request: Request) -> Response:
        """Every invoice as it really is; `?view=careless`: as a careless Lago shows it."""
        store = self.state.store
        view = request.query_params.get("view")
        if view not in (None, "careless"):
            return control_error_response("view must be careless (or absent)")
        rows = []
        for lago_id in store.ordered_ids:
            invoice = store.invoices[lago_id]
            shown = (
                careless_invoice(
                    invoice.data, ready_for_payment_processing=invoice.ready_for_payment_processing
                )
                if view == "careless"
                else invoice.data
            )
            rows.append(
                {
                    **shown,
                    "customer": store.customers[invoice.customer_external_id].data,
                    "ready_for_payment_processing": invoice.ready_for_payment_processing,
                }
            )
        return json_response({"invoices": rows})

    async def patch_invoice(self, request: Request) -> Response:
        invoice = self.state.store.invoices.get(request.path_params["lago_id"])
        if invoice is None:
            return control_error_response("invoice not found", 404)
        changes = await _json_object(request)
        try:
            _check_invoice_patch(invoice.data, changes)
        except ControlError as exc:
            return control_error_response(str(exc))
        self.state.patch_invoice(invoice, changes)
        store = self.state.store
        return json_response(
            {
                **store.invoice_object(invoice),
                "ready_for_payment_processing": invoice.ready_for_payment_processing,
            }
        )

    async def list_payment_requests(self, request: Request) -> Response:
        store = self.state.store
        ordered = sorted(store.payment_requests.values(), key=lambda pr: pr.created_at_ns)
        return json_response(
            {"payment_requests": [audit_payment_request(store, pr) for pr in ordered]}
        )

    async def invoice_payments(self, request: Request) -> Response:
        """The payment retries taken and the payment links made, oldest first."""
        payments = self.state.invoice_payments
        return json_response(
            {
                "retries": [{"lago_id": i, "at": at} for i, at in payments.retries],
                "payment_urls": list(payments.urls),
            }
        )

    async def campaign_payment_request(self, request: Request) -> Response:
        params = await _json_object(request)
        code = params.get("dunning_campaign_code", "default_campaign")
        try:
            created = self.state.create_payment_request(
                params,
                origin="dunning_campaign",
                dunning_campaign_code=code if isinstance(code, str) else None,
            )
        except ApiError as exc:
            return json_response(exc.body, exc.status)
        return json_response({"payment_request": audit_payment_request(self.state.store, created)})

    async def get_webhooks(self, request: Request) -> Response:
        return json_response(self.state.webhooks.config.public_json())

    async def set_webhooks(self, request: Request) -> Response:
        changes = await _json_object(request)
        try:
            config = _updated_webhook_config(self.state.webhooks.config, changes)
        except ControlError as exc:
            return control_error_response(str(exc))
        self.state.webhooks.config = config
        return json_response(config.public_json())

    async def reset_webhooks(self, request: Request) -> Response:
        self.state.reset_webhooks()
        return json_response(self.state.webhooks.config.public_json())

    async def webhook_deliveries(self, request: Request) -> Response:
        return json_response({"deliveries": self.state.webhooks.summaries()})


async def _json_object(request: Request) -> JsonObject:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ControlError("the request body must be a JSON object")
    return body


def _data_source(body: JsonObject, startup: DataSource) -> DataSource:
    if not body:
        return startup
    customers = body.get("customers")
    if isinstance(customers, list) or "invoices" in body:
        return body
    names = ("customers", "invoices_per_customer", "seed", "history_days")
    unknown = set(body) - {*names, "odd_invoices"}
    if unknown:
        raise ControlError(f"unknown generator field {sorted(unknown)[0]!r}")
    values: dict[str, int] = {}
    for name in names:
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ControlError(f"{name} must be an integer")
            values[name] = value
    odd = body.get("odd_invoices", False)
    if not isinstance(odd, bool):
        raise ControlError("odd_invoices must be true or false")
    try:
        return GeneratorSpec(**values, odd_invoices=odd)
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def _check_invoice_patch(current: JsonObject, changes: JsonObject) -> None:
    for name, value in changes.items():
        if name == "ready_for_payment_processing":
            if not isinstance(value, bool):
                raise ControlError(f"{name} must be true or false")
            continue
        if name in _READ_ONLY_FIELDS:
            raise ControlError(f"{name} cannot be patched (it is derived or an identifier)")
        if name not in current:
            raise ControlError(f"unknown invoice field {name!r}")
        allowed = _ENUM_FIELDS.get(name)
        if allowed is not None and value not in allowed:
            raise ControlError(f"{name} must be one of: {', '.join(allowed)}")
        existing = current[name]
        if existing is not None and value is not None and not _same_kind(existing, value):
            raise ControlError(f"{name} must be a {type(existing).__name__}")


def _same_kind(existing: Any, value: Any) -> bool:
    if isinstance(existing, bool) or isinstance(value, bool):
        return isinstance(existing, bool) and isinstance(value, bool)
    return isinstance(value, type(existing))


def _updated_webhook_config(config: WebhookConfig, changes: JsonObject) -> WebhookConfig:
    updated = WebhookConfig(
        url=config.url,
        algorithm=config.algorithm,
        hmac_key=config.hmac_key,
        max_attempts=config.max_attempts,
        retry_delay_seconds=config.retry_delay_seconds,
        timeout_seconds=config.timeout_seconds,
    )
    for name, value in changes.items():
        if name == "url":
            if value is not None and not (isinstance(value, str) and value.startswith("http")):
                raise ControlError("url must be an http(s) URL or null")
            updated.url = value
        elif name == "algorithm":
            if value not in ("jwt", "hmac"):
                raise ControlError("algorithm must be jwt or hmac")
            updated.algorithm = value
        elif name == "hmac_key":
            if not isinstance(value, str):
                raise ControlError("hmac_key must be a string")
            updated.hmac_key = value
        elif name == "max_attempts":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ControlError("max_attempts must be an integer >= 1")
            updated.max_attempts = value
        elif name in ("retry_delay_seconds", "timeout_seconds"):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ControlError(f"{name} must be a number >= 0")
            setattr(updated, name, float(value))
        else:
            raise ControlError(f"unknown webhook setting {name!r}")
    if updated.algorithm == "hmac" and not updated.hmac_key:
        raise ControlError("hmac signatures need an hmac_key")
    return updated
