"""Turn a data document (`{"customers": [...], "invoices": [...]}`) into sandbox records.

Records use Lago's object shapes. Only a few fields are required; everything Lago derives
(ids, numbers, due dates, the overdue flag, due amounts, serializer defaults) is filled in.
Any problem raises `DataError` with a one-line message naming the record and the field.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sandbox.model import (
    HIDDEN_INVOICE_STATUSES,
    INVOICE_TYPES,
    PAYMENT_STATUSES,
    VISIBLE_INVOICE_STATUSES,
    Customer,
    Dataset,
    Invoice,
    JsonObject,
    Payment,
    PaymentRequest,
    iso_to_ns,
)

_ID_NAMESPACE = uuid.UUID("6f1d4c1e-3b0a-4c56-9d0e-6a1f4e2b7c10")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
DEFAULT_BILLING_ENTITY = "default"


class DataError(ValueError):
    """The data document is invalid; the message is one line naming record and field."""


def load_data_file(path: Path, today: date) -> Dataset:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"data file {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    try:
        return build_dataset(document, today)
    except DataError as exc:
        raise DataError(f"data file {path}: {exc}") from None


def build_dataset(document: Any, today: date) -> Dataset:
    if not isinstance(document, dict):
        raise DataError(
            'the document must be an object like {"customers": [...], "invoices": [...]}'
        )
    unknown = set(document) - {"customers", "invoices", "payments", "payment_requests"}
    if unknown:
        raise DataError(
            f"unknown top-level key {sorted(unknown)[0]!r} "
            "(expected customers, invoices, payments, payment_requests)"
        )
    customers_raw = document.get("customers", [])
    invoices_raw = document.get("invoices", [])
    if not isinstance(customers_raw, list):
        raise DataError("'customers' must be a list")
    if not isinstance(invoices_raw, list):
        raise DataError("'invoices' must be a list")
    dataset = Dataset()
    for index, raw in enumerate(customers_raw):
        customer = _build_customer(index, raw)
        if customer.external_id in dataset.customers:
            raise DataError(
                f"customers[{index}] (external_id={customer.external_id}): "
                "'external_id' is duplicated"
            )
        dataset.customers[customer.external_id] = customer
    for index, raw in enumerate(invoices_raw):
        invoice = _build_invoice(index, raw, dataset, today)
        if invoice.lago_id in dataset.invoices:
            raise DataError(
                f"invoices[{index}] (lago_id={invoice.lago_id}): 'lago_id' is duplicated"
            )
        dataset.invoices[invoice.lago_id] = invoice
    for index, raw in enumerate(_list(document, "payments")):
        payment = _build_payment(index, raw, dataset)
        dataset.payments[payment.lago_id] = payment
    for index, raw in enumerate(_list(document, "payment_requests")):
        request = _build_payment_request(index, raw, dataset)
        dataset.payment_requests[request.lago_id] = request
    return dataset


def _list(document: JsonObject, key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise DataError(f"{key!r} must be a list")
    return value


def _build_payment(index: int, raw: Any, dataset: Dataset) -> Payment:
    """A payment made in the past: `invoice_id`, `amount_cents`, `created_at` (when paid).

    The invoice's `total_paid_amount_cents` and `payment_status` are the document's to keep
    consistent; the payment only records when and how much."""
    if not isinstance(raw, dict):
        raise DataError(f"payments[{index}]: must be an object")
    fields = _Fields(f"payments[{index}]", raw)
    invoice = dataset.invoices.get(str(raw.get("invoice_id")))
    if invoice is None:
        raise fields.fail("invoice_id", "names no invoice of the document")
    customer = dataset.customers[invoice.customer_external_id]
    created_at: str = fields.pattern("created_at", _TIMESTAMP, "a UTC timestamp", None)
    if created_at is None:
        raise fields.fail("created_at", "is required")
    lago_id = fields.uuid(
        "lago_id", str(uuid.uuid5(_ID_NAMESPACE, f"payment/{index}/{invoice.lago_id}"))
    )
    return Payment(
        lago_id=lago_id,
        customer_external_id=customer.external_id,
        lago_customer_id=customer.data["lago_id"],
        invoice_id=invoice.lago_id,
        invoice_number=invoice.data["number"],
        amount_cents=fields.integer("amount_cents", minimum=1),
        amount_currency=invoice.data["currency"],
        reference=fields.string("reference", "history"),
        created_at=created_at,
        created_at_ns=iso_to_ns(created_at),
        paid_at=created_at,
    )


def _build_payment_request(index: int, raw: Any, dataset: Dataset) -> PaymentRequest:
    """A payment request made in the past (e.g. by Lago's own dunning)."""
    if not isinstance(raw, dict):
        raise DataError(f"payment_requests[{index}]: must be an object")
    fields = _Fields(f"payment_requests[{index}]", raw)
    customer = dataset.customers.get(str(raw.get("external_customer_id")))
    if customer is None:
        raise fields.fail("external_customer_id", "names no customer of the document")
    ids = raw.get("lago_invoice_ids")
    if not isinstance(ids, list) or not ids or any(i not in dataset.invoices for i in ids):
        raise fields.fail("lago_invoice_ids", "must list invoices of the document")
    invoices = [dataset.invoices[i] for i in ids]
    created_at: str = fields.pattern("created_at", _TIMESTAMP, "a UTC timestamp", None)
    if created_at is None:
        raise fields.fail("created_at", "is required")
    return PaymentRequest(
        lago_id=fields.uuid(
            "lago_id", str(uuid.uuid5(_ID_NAMESPACE, f"payment_request/{index}/{ids[0]}"))
        ),
        customer_external_id=customer.external_id,
        email=fields.string("email", customer.data.get("email")),
        amount_cents=fields.integer(
            "amount_cents", sum(i.data["total_amount_cents"] for i in invoices)
        ),
        amount_currency=invoices[0].data["currency"],
        invoice_ids=list(ids),
        created_at=created_at,
        created_at_ns=iso_to_ns(created_at),
        payment_status=fields.choice("payment_status", PAYMENT_STATUSES, "pending"),
        origin=fields.choice("origin", ("api", "dunning_campaign"), "dunning_campaign"),
    )


class _Fields:
    """Typed access to one raw record, raising DataError that names the record."""

    def __init__(self, label: str, raw: JsonObject) -> None:
        self.label = label
        self.raw = raw

    def fail(self, name: str, problem: str) -> DataError:
        return DataError(f"{self.label}: {name!r} {problem}")

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self.raw.get(name, default)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(name, "must be a non-empty string" if required else "must be a string")
        return value

    def integer(self, name: str, default: int | None = None, *, minimum: int = 0) -> Any:
        value = self.raw.get(name, default)
        if value is None:
            if default is None:
                raise self.fail(name, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be an integer")
        if value < minimum:
            raise self.fail(name, f"must be >= {minimum}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str | None) -> Any:
        value = self.raw.get(name, default)
        if value is None and default is None:
            return None
        if value not in options:
            raise self.fail(name, f"must be one of: {', '.join(options)}")
        return value

    def pattern(self, name: str, regex: re.Pattern[str], what: str, default: str | None) -> Any:
        value = self.raw.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not regex.match(value):
            raise self.fail(name, f"must be {what}")
        return value

    def day(self, name: str, default: date) -> date:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(name, "must be a date like 2025-01-31")

    def optional_integer(self, name: str) -> int | None:
        if self.raw.get(name) is None:
            return None
        value: int = self.integer(name)
        return value

    def uuid(self, name: str, default: str) -> str:
        value = self.raw.get(name, default)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
        raise self.fail(name, "must be a UUID")

    def metadata(self, name: str, owner_id: str, created_at: str, *, customer: bool) -> list[Any]:
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, "must be a list of {key, value} objects")
        entries: list[Any] = []
        for position, item in enumerate(value):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("key"), str)
                or not isinstance(item.get("value"), str)
            ):
                raise self.fail(
                    f"{name}[{position}]", "must be an object with string key and value"
                )
            entry: JsonObject = {
                "lago_id": item.get("lago_id")
                or str(uuid.uuid5(_ID_NAMESPACE, f"metadata/{owner_id}/{position}")),
                "key": item["key"],
                "value": item["value"],
            }
            if customer:
                entry["display_in_invoice"] = bool(item.get("display_in_invoice", False))
            entry["created_at"] = item.get("created_at", created_at)
            entries.append(entry)
        return entries


def _timestamp_default(day: date) -> str:
    return f"{day.isoformat()}T08:00:00Z"


def _build_customer(index: int, raw: Any) -> Customer:
    if not isinstance(raw, dict):
        raise DataError(f"customers[{index}]: must be an object")
    ext = raw.get("external_id")
    fields = _Fields(f"customers[{index}] (external_id={ext})", raw)
    external_id: str = fields.string("external_id", required=True)
    lago_id = fields.uuid("lago_id", str(uuid.uuid5(_ID_NAMESPACE, f"customer/{external_id}")))
    created_at = fields.pattern("created_at", _TIMESTAMP, "a UTC timestamp", "2024-01-01T00:00:00Z")
    timezone = fields.string("timezone")
    applicable_timezone = fields.string("applicable_timezone", timezone or "UTC")
    customer_type = fields.choice("customer_type", ("company", "individual"), None)
    sequential_id = fields.integer("sequential_id", index + 1, minimum=1)
    country = fields.pattern("country", _COUNTRY, "a 2-letter country code", None)
    email = fields.string("email")
    name = fields.string("name", external_id)
    billing_entity_code = fields.string("billing_entity_code", DEFAULT_BILLING_ENTITY)
    data: JsonObject = {
        "lago_id": lago_id,
        "sequential_id": sequential_id,
        "slug": fields.string("slug", f"CUS-{sequential_id:05d}"),
        "external_id": external_id,
        "billing_entity_code": billing_entity_code,
        "address_line1": fields.string("address_line1"),
        "address_line2": fields.string("address_line2"),
        "applicable_timezone": applicable_timezone,
        "city": fields.string("city"),
        "country": country,
        "currency": fields.pattern("currency", _CURRENCY, "a 3-letter currency code", None),
        "email": email.strip() if email else email,
        "legal_name": fields.string("legal_name"),
        "legal_number": fields.string("legal_number"),
        "logo_url": fields.string("logo_url"),
        "name": name,
        "firstname": fields.string("firstname"),
        "lastname": fields.string("lastname"),
        "account_type": fields.choice("account_type", ("customer", "partner"), "customer"),
        "customer_type": customer_type,
        "phone": fields.string("phone"),
        "state": fields.string("state"),
        "tax_identification_number": fields.string("tax_identification_number"),
        "timezone": timezone,
        "url": fields.string("url"),
        "zipcode": fields.string("zipcode"),
        "net_payment_term": fields.optional_integer("net_payment_term"),
        "created_at": created_at,
        "updated_at": fields.pattern("updated_at", _TIMESTAMP, "a UTC timestamp", created_at),
        "finalize_zero_amount_invoice": "inherit",
        "skip_invoice_custom_sections": False,
        "billing_configuration": raw.get("billing_configuration")
        or {"invoice_grace_period": 0, "payment_provider": None, "document_locale": "en"},
        "shipping_address": raw.get("shipping_address")
        or {
            "address_line1": None,
            "address_line2": None,
            "city": None,
            "country": None,
            "state": None,
            "zipcode": None,
        },
        "metadata": fields.metadata("metadata", lago_id, created_at, customer=True),
        "integration_customers": [],
    }
    customer = Customer(external_id=external_id, data=data)
    customer.refresh_json()
    return customer


def _build_invoice(index: int, raw: Any, dataset: Dataset, today: date) -> Invoice:
    if not isinstance(raw, dict):
        raise DataError(f"invoices[{index}]: must be an object")
    label_id = raw.get("lago_id") or raw.get("number") or "?"
    fields = _Fields(f"invoices[{index}] (id={label_id})", raw)
    customer_ref = raw.get("customer")
    external_id = customer_ref.get("external_id") if isinstance(customer_ref, dict) else None
    if not isinstance(external_id, str) or not external_id:
        raise fields.fail("customer.external_id", "is required")
    customer = dataset.customers.get(external_id)
    if customer is None:
        raise fields.fail("customer.external_id", f"names unknown customer {external_id!r}")
    lago_id = fields.uuid(
        "lago_id", str(uuid.uuid5(_ID_NAMESPACE, f"invoice/{index}/{external_id}"))
    )
    currency = fields.pattern("currency", _CURRENCY, "a 3-letter currency code", None)
    if currency is None:
        raise fields.fail("currency", "is required")
    total: int = fields.integer("total_amount_cents")
    paid: int = fields.integer("total_paid_amount_cents", 0)
    offset: int = fields.integer("total_offsetted_credit_note_amount_cents", 0)
    issuing_date = fields.day("issuing_date", today)
    term: int = fields.integer("net_payment_term", 30)
    due_date = fields.day("payment_due_date", issuing_date + timedelta(days=term))
    status = fields.choice(
        "status", VISIBLE_INVOICE_STATUSES + HIDDEN_INVOICE_STATUSES, "finalized"
    )
    payment_status = fields.choice("payment_status", PAYMENT_STATUSES, "pending")
    dispute_lost_at = fields.pattern("payment_dispute_lost_at", _TIMESTAMP, "a UTC timestamp", None)
    overdue_default = (
        status == "finalized"
        and payment_status != "succeeded"
        and dispute_lost_at is None
        and due_date < today
    )
    payment_overdue = fields.boolean("payment_overdue", overdue_default)
    created_at = fields.pattern(
        "created_at", _TIMESTAMP, "a UTC timestamp", _timestamp_default(issuing_date)
    )
    sequential_id = fields.integer("sequential_id", index + 1, minimum=1)
    taxes = total - round(total / 1.2)
    data: JsonObject = {
        "lago_id": lago_id,
        "billing_entity_code": fields.string(
            "billing_entity_code", customer.data["billing_entity_code"]
        ),
        "sequential_id": sequential_id,
        "number": fields.string("number", f"{customer.data['slug']}-{sequential_id:03d}"),
        "issuing_date": issuing_date.isoformat(),
        "payment_dispute_lost_at": dispute_lost_at,
        "payment_due_date": due_date.isoformat(),
        "payment_overdue": payment_overdue,
        "net_payment_term": term,
        "invoice_type": fields.choice("invoice_type", INVOICE_TYPES, "subscription"),
        "status": status,
        "payment_status": payment_status,
        "currency": currency,
        "fees_amount_cents": total - taxes,
        "coupons_amount_cents": 0,
        "credit_notes_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": total - taxes,
        "taxes_amount_cents": taxes,
        "sub_total_including_taxes_amount_cents": total,
        "prepaid_credit_amount_cents": 0,
        "prepaid_granted_credit_amount_cents": 0,
        "prepaid_purchased_credit_amount_cents": 0,
        "progressive_billing_credit_amount_cents": 0,
        "total_amount_cents": total,
        "total_due_amount_cents": 0,
        "total_paid_amount_cents": paid,
        "total_offsetted_credit_note_amount_cents": offset,
        "version_number": 4,
        "self_billed": fields.boolean("self_billed", False),
        "purchase_order_number": fields.string("purchase_order_number"),
        "file_url": f"https://lago.example/invoices/{lago_id}.pdf",
        "xml_url": None,
        "created_at": created_at,
        "updated_at": fields.pattern("updated_at", _TIMESTAMP, "a UTC timestamp", created_at),
        "voided_at": fields.pattern("voided_at", _TIMESTAMP, "a UTC timestamp", None),
        "metadata": fields.metadata("metadata", lago_id, created_at, customer=False),
        "applied_taxes": [],
    }
    invoice = Invoice(
        lago_id=lago_id,
        customer_external_id=external_id,
        data=data,
        ready_for_payment_processing=fields.boolean("ready_for_payment_processing", True),
    )
    invoice.refresh_derived()
    return invoice
