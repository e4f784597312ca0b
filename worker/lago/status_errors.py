"""Turn a Lago error response into the matching `LagoStatusError` subclass.

Lago's envelope is `{"status", "error", "code"?, "error_details"?}`. A body that is not JSON
(a proxy's HTML 502, an empty 404) still maps by status, with a generic message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.lago.errors import (
    PAYMENT_REQUEST_REFUSAL_CODES,
    PAYMENT_URL_REFUSAL_CODES,
    FeatureUnavailableError,
    LagoBadRequestError,
    LagoForbiddenError,
    LagoMethodNotAllowedError,
    LagoNotFoundError,
    LagoRateLimitedError,
    LagoServerError,
    LagoStatusError,
    LagoUnauthorizedError,
    LagoUnprocessableError,
)

UNAUTHORIZED_MESSAGE = "the API key was rejected (check LAGO_API_KEY)"
FEATURE_UNAVAILABLE_MESSAGE = (
    "this Lago instance lacks the premium licence that payment requests need"
)
_MAX_TEXT = 200


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_TEXT else flat[: _MAX_TEXT - 1] + "…"


def _decode_envelope(content: bytes) -> Mapping[str, Any] | None:
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _details_summary(details: Mapping[str, Any]) -> str:
    """`{"email": ["invalid"], "base": ["x"]}` -> "email: invalid; base: x"."""
    parts: list[str] = []
    for field, value in details.items():
        if isinstance(value, list):
            text = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            text = ", ".join(f"{key}: {item}" for key, item in value.items())
        else:
            text = str(value)
        parts.append(f"{field}: {text}")
    return "; ".join(parts)


_BASE_CODES = PAYMENT_REQUEST_REFUSAL_CODES | PAYMENT_URL_REFUSAL_CODES


def _specific_code(code: str | None, details: Mapping[str, Any]) -> str | None:
    """A 422 `validation_errors` whose only detail is `base: [<refusal code>]` -> that code."""
    if code != "validation_errors" or set(details) != {"base"}:
        return code
    base = details["base"]
    if isinstance(base, list) and len(base) == 1 and base[0] in _BASE_CODES:
        return str(base[0])
    return code


def status_error(
    status: int, content: bytes, *, endpoint: str, retry_after_s: float | None = None
) -> LagoStatusError:
    """The error for an HTTP error `status` with body `content` from `endpoint`."""
    envelope = _decode_envelope(content)
    code: str | None = None
    details: Mapping[str, Any] = {}
    error_text: str | None = None
    if envelope is not None:
        raw_code = envelope.get("code")
        code = str(raw_code) if raw_code is not None else None
        raw_details = envelope.get("error_details")
        if isinstance(raw_details, dict):
            details = raw_details
        raw_error = envelope.get("error")
        if isinstance(raw_error, str) and raw_error.strip():
            error_text = _one_line(raw_error)

    if envelope is None:
        generic = f"HTTP {status} with a non-JSON body"
    else:
        generic = error_text or f"HTTP {status} error"

    if status == 400:
        return LagoBadRequestError(
            generic, endpoint=endpoint, status=status, code=code, error_details=details
        )
    if status == 401:
        return LagoUnauthorizedError(
            UNAUTHORIZED_MESSAGE, endpoint=endpoint, status=status, code=code, error_details=details
        )
    if status == 403:
        if code == "feature_unavailable":
            return FeatureUnavailableError(
                FEATURE_UNAVAILABLE_MESSAGE,
                endpoint=endpoint,
                status=status,
                code=code,
                error_details=details,
            )
        message = f"the API key is not allowed to do this ({code})" if code else "forbidden"
        return LagoForbiddenError(
            message, endpoint=endpoint, status=status, code=code, error_details=details
        )
    if status == 404:
        message = f"not found ({code})" if code else "not found"
        return LagoNotFoundError(
            message, endpoint=endpoint, status=status, code=code, error_details=details
        )
    if status == 405:
        message = f"refused: {code}" if code else generic
        return LagoMethodNotAllowedError(
            message, endpoint=endpoint, status=status, code=code, error_details=details
        )
    if status == 422:
        specific = _specific_code(code, details)
        summary = _one_line(_details_summary(details)) if details else ""
        message = f"rejected: {specific or 'unprocessable'}"
        if summary and specific == code:
            message += f" ({summary})"
        return LagoUnprocessableError(
            message, endpoint=endpoint, status=status, code=specific, error_details=details
        )
    if status == 429:
        message = "rate limited by Lago"
        if retry_after_s is not None:
            message += f" (retry after {retry_after_s:g} s)"
        return LagoRateLimitedError(
            message,
            endpoint=endpoint,
            status=status,
            code=code,
            error_details=details,
            retry_after_s=retry_after_s,
        )
    if status >= 500:
        return LagoServerError(
            f"Lago server error: {generic}",
            endpoint=endpoint,
            status=status,
            code=code,
            error_details=details,
        )
    return LagoStatusError(
        generic, endpoint=endpoint, status=status, code=code, error_details=details
    )
