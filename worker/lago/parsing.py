"""Decode and validate Lago response bodies, naming the offending field on failure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from worker.lago.errors import LagoMalformedResponseError
from worker.lago.models import MalformedRecord, PageMeta

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing. `size` counts the raw rows (malformed ones included)."""

    items: list[T]
    size: int
    meta: PageMeta


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_validation_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    """(field path, one-line message) of the first error, e.g. ("invoices[3].currency", ...)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = _path(prefix, first["loc"])
    message = " ".join(str(first["msg"]).split())
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return field, f"{field}: {message}{more}"


def decode_json(content: bytes, *, endpoint: str) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise LagoMalformedResponseError("the response is not JSON", endpoint=endpoint) from None


def _require_object(body: Any, key: str, *, endpoint: str) -> Any:
    if not isinstance(body, dict):
        raise LagoMalformedResponseError(
            f"expected a JSON object with '{key}'", endpoint=endpoint, field=key
        )
    if key not in body:
        raise LagoMalformedResponseError(f"missing '{key}'", endpoint=endpoint, field=key)
    return body[key]


def unwrap(body: Any, key: str, model: type[M], *, endpoint: str) -> M:
    """`{"<key>": {...}}` -> the validated model."""
    value = _require_object(body, key, endpoint=endpoint)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        field, message = describe_validation_error(exc, key)
        raise LagoMalformedResponseError(message, endpoint=endpoint, field=field) from None


def _page_rows(body: Any, key: str, *, endpoint: str) -> tuple[list[Any], PageMeta]:
    rows = _require_object(body, key, endpoint=endpoint)
    if not isinstance(rows, list):
        raise LagoMalformedResponseError(f"'{key}' is not a list", endpoint=endpoint, field=key)
    raw_meta = _require_object(body, "meta", endpoint=endpoint)
    try:
        meta = PageMeta.model_validate(raw_meta)
    except ValidationError as exc:
        field, message = describe_validation_error(exc, "meta")
        raise LagoMalformedResponseError(message, endpoint=endpoint, field=field) from None
    return rows, meta


def parse_page(body: Any, key: str, model: type[M], *, endpoint: str) -> Page[M]:
    """A listing page where every row must be valid (one bad row fails the page)."""
    rows, meta = _page_rows(body, key, endpoint=endpoint)
    items: list[M] = []
    for index, row in enumerate(rows):
        try:
            items.append(model.model_validate(row))
        except ValidationError as exc:
            field, message = describe_validation_error(exc, f"{key}[{index}]")
            raise LagoMalformedResponseError(message, endpoint=endpoint, field=field) from None
    return Page(items=items, size=len(rows), meta=meta)


def parse_page_lenient(
    body: Any, key: str, model: type[M], *, endpoint: str, page: int
) -> Page[M | MalformedRecord]:
    """A listing page where a bad row becomes a `MalformedRecord` instead of an error."""
    rows, meta = _page_rows(body, key, endpoint=endpoint)
    items: list[M | MalformedRecord] = []
    for index, row in enumerate(rows):
        try:
            items.append(model.model_validate(row))
        except ValidationError as exc:
            _, message = describe_validation_error(exc, f"{key}[{index}]")
            items.append(
                MalformedRecord(
                    lago_id=_raw_string(row, "lago_id"),
                    index=index,
                    page=page,
                    error=message,
                    external_customer_id=_raw_customer(row),
                )
            )
    return Page(items=items, size=len(rows), meta=meta)


def _raw_string(row: Any, key: str) -> str | None:
    value = row.get(key) if isinstance(row, dict) else None
    return value if isinstance(value, str) and value else None


def _raw_customer(row: Any) -> str | None:
    """The external customer id of a raw row that failed validation, if it names one."""
    if not isinstance(row, dict):
        return None
    return _raw_string(row.get("customer"), "external_id") or _raw_string(
        row, "external_customer_id"
    )
