"""Parsing and matching of `GET /api/v1/invoices` filters, the way lago-api validates them.

Validation follows `InvoicesQueryFiltersContract` (422 `validation_errors`, array values keyed
by index), `billing_entity_codes[]` gives 404 `billing_entity_not_found` for unknown or
duplicated codes, invalid dates are silently ignored and a non-numeric amount fails like
PostgreSQL does (500). See lago-api.md section 3.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.datastructures import QueryParams

from sandbox.errors import internal_error, not_found, validation_failed
from sandbox.model import PAYMENT_STATUSES, VISIBLE_INVOICE_STATUSES, Customer, Invoice

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


@dataclass(frozen=True, slots=True)
class InvoiceFilters:
    statuses: tuple[str, ...] = VISIBLE_INVOICE_STATUSES
    payment_statuses: tuple[str, ...] | None = None
    payment_overdue: bool | None = None
    partially_paid: bool | None = None
    self_billed: bool | None = None
    currency: str | None = None
    customer_external_id: str | None = None
    billing_entity_codes: tuple[str, ...] | None = None
    invoice_type: str | None = None
    issuing_date_from: str | None = None
    issuing_date_to: str | None = None
    amount_from: float | None = None
    amount_to: float | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    search_term: str | None = None


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int


def parse_page(params: QueryParams, default_per_page: int = 100) -> PageRequest:
    """`page`/`per_page` like Kaminari: non-numeric or < 1 falls back to the defaults."""
    return PageRequest(
        page=_positive_int(params.get("page"), 1),
        per_page=_positive_int(params.get("per_page"), default_per_page),
    )


def _positive_int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value >= 1 else default


def _string_or_array(params: QueryParams, *names: str) -> str | list[str] | None:
    for name in names:
        if f"{name}[]" in params:
            return params.getlist(f"{name}[]")
        value = params.get(name)
        if value:
            return value
    return None


def _check_enum(
    field: str, value: str | list[str] | None, allowed: tuple[str, ...], errors: dict[str, Any]
) -> tuple[str, ...] | None:
    if value is None:
        return None
    choices = ", ".join(allowed)
    if isinstance(value, str):
        if value not in allowed:
            errors[field] = [f"must be one of: {choices} or must be an array"]
            return None
        return (value,)
    bad = {
        str(index): [f"must be one of: {choices}"]
        for index, item in enumerate(value)
        if item not in allowed
    }
    if bad:
        errors[field] = bad
        return None
    return tuple(value)


def _check_bool(params: QueryParams, field: str, errors: dict[str, Any]) -> bool | None:
    raw = params.get(field)
    if raw is None or raw == "":
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    errors[field] = ["must be boolean"]
    return None


def _valid_date(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        return None


def _amount(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise internal_error() from None


def parse_invoice_filters(params: QueryParams, billing_entities: Collection[str]) -> InvoiceFilters:
    errors: dict[str, Any] = {}
    statuses = _check_enum(
        "status", _string_or_array(params, "status", "statuses"), VISIBLE_INVOICE_STATUSES, errors
    )
    payment_statuses = _check_enum(
        "payment_status",
        _string_or_array(params, "payment_status", "payment_statuses"),
        PAYMENT_STATUSES,
        errors,
    )
    payment_overdue = _check_bool(params, "payment_overdue", errors)
    partially_paid = _check_bool(params, "partially_paid", errors)
    self_billed = _check_bool(params, "self_billed", errors)
    if errors:
        raise validation_failed(errors)

    codes: tuple[str, ...] | None = None
    if "billing_entity_codes[]" in params:
        requested = params.getlist("billing_entity_codes[]")
        known = {code for code in requested if code in billing_entities}
        if len(known) != len(requested):
            raise not_found("billing_entity")
        codes = tuple(sorted(known))

    metadata = tuple(
        sorted(
            (key[len("metadata[") : -1], value)
            for key, value in params.multi_items()
            if key.startswith("metadata[") and key.endswith("]")
        )
    )
    return InvoiceFilters(
        statuses=tuple(sorted(statuses)) if statuses else VISIBLE_INVOICE_STATUSES,
        payment_statuses=tuple(sorted(payment_statuses)) if payment_statuses else None,
        payment_overdue=payment_overdue,
        partially_paid=partially_paid,
        self_billed=self_billed,
        currency=params.get("currency") or None,
        customer_external_id=params.get("external_customer_id")
        or params.get("customer_external_id")
        or None,
        billing_entity_codes=codes,
        invoice_type=params.get("invoice_type") or None,
        issuing_date_from=_valid_date(params.get("issuing_date_from")),
        issuing_date_to=_valid_date(params.get("issuing_date_to")),
        amount_from=_amount(params.get("amount_from")),
        amount_to=_amount(params.get("amount_to")),
        metadata=metadata,
        search_term=params.get("search_term") or None,
    )


def invoice_matches(
    invoice: Invoice, customers: Mapping[str, Customer], filters: InvoiceFilters
) -> bool:
    """True when the invoice belongs in the result set of `filters`."""
    data = invoice.data
    if data["status"] not in filters.statuses:
        return False
    if (
        filters.payment_statuses is not None
        and data["payment_status"] not in filters.payment_statuses
    ):
        return False
    if filters.payment_overdue is not None and data["payment_overdue"] != filters.payment_overdue:
        return False
    if filters.self_billed is not None and data["self_billed"] != filters.self_billed:
        return False
    if filters.partially_paid is not None:
        paid = data["total_paid_amount_cents"]
        partial = 0 < paid < data["total_amount_cents"]
        if partial != filters.partially_paid:
            return False
    if filters.currency is not None and data["currency"] != filters.currency:
        return False
    if (
        filters.customer_external_id is not None
        and invoice.customer_external_id != filters.customer_external_id
    ):
        return False
    if (
        filters.billing_entity_codes is not None
        and data["billing_entity_code"] not in filters.billing_entity_codes
    ):
        return False
    if filters.invoice_type is not None and data["invoice_type"] != filters.invoice_type:
        return False
    if filters.issuing_date_from is not None and data["issuing_date"] < filters.issuing_date_from:
        return False
    if filters.issuing_date_to is not None and data["issuing_date"] > filters.issuing_date_to:
        return False
    if filters.amount_from is not None and data["total_amount_cents"] < filters.amount_from:
        return False
    if filters.amount_to is not None and data["total_amount_cents"] > filters.amount_to:
        return False
    if filters.metadata and not _metadata_matches(data["metadata"], filters.metadata):
        return False
    return filters.search_term is None or _search_matches(invoice, customers, filters)


def _metadata_matches(entries: list[Any], wanted: tuple[tuple[str, str], ...]) -> bool:
    present = {entry["key"]: entry["value"] for entry in entries}
    for key, value in wanted:
        if value == "":
            if key in present:
                return False
        elif present.get(key) != value:
            return False
    return True


def _search_matches(
    invoice: Invoice, customers: Mapping[str, Customer], filters: InvoiceFilters
) -> bool:
    term = (filters.search_term or "").lower()
    if term in invoice.data["number"].lower():
        return True
    if _is_uuid(term) and term == invoice.lago_id:
        return True
    if filters.customer_external_id is not None:
        return False
    customer = customers[invoice.customer_external_id].data
    for key in ("name", "firstname", "lastname", "external_id", "email"):
        value = customer.get(key)
        if isinstance(value, str) and term in value.lower():
            return True
    return False


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_uuid(value: str) -> bool:
    return len(value) == 36 and _is_uuid(value)
