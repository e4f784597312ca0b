"""Outbound notifications that are not Lago calls (e.g. a policy's `on_exhausted` webhook).

Kept in `worker.lago` because this package is the project's only HTTP client code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from worker.lago.errors import LagoConnectionError, LagoError, LagoTimeoutError


def post_notification(url: str, payload: dict[str, Any], *, timeout_s: float = 10.0) -> None:
    """POST `payload` as JSON to `url`; raise a `LagoError` subclass on any failure.

    Errors name the host only: a notification URL may carry a token in its path or query.
    """
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "?")
    endpoint = f"POST {host}"
    try:
        response = httpx.post(url, json=payload, timeout=timeout_s)
    except httpx.TimeoutException:
        raise LagoTimeoutError("notification timed out", endpoint=endpoint) from None
    except httpx.HTTPError as exc:
        raise LagoConnectionError(
            f"notification failed: {type(exc).__name__}", endpoint=endpoint
        ) from None
    if response.status_code >= 300:
        raise LagoError(f"notification answered HTTP {response.status_code}", endpoint=endpoint)
