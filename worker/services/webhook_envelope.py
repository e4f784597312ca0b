"""The envelope of a Lago webhook body: a JSON object with a `webhook_type` name.

A signature proves who sent a body, not that it is sane. `parse_envelope` refuses, before
anything reads the ledger, a body that is not JSON, is nested deeper than `MAX_BODY_DEPTH`
(a 50,000-deep one made the JSON parser itself give up), holds a NUL character anywhere
(PostgreSQL can neither store nor compare one) or names no webhook type.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Lago's bodies nest a handful of levels (invoice -> fees -> charge -> ...).
MAX_BODY_DEPTH = 64
_WEBHOOK_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class WebhookPayloadError(Exception):
    """The (authentic) webhook body is not what Lago sends. `str()` is one line."""


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body; raises `WebhookPayloadError` (see the module doc)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise WebhookPayloadError("body is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookPayloadError("body is not valid JSON") from None
    _check_values(payload)
    if not isinstance(payload, dict):
        raise WebhookPayloadError("body is not a JSON object")
    webhook_type = payload.get("webhook_type")
    if not isinstance(webhook_type, str) or not webhook_type:
        raise WebhookPayloadError("body lacks a 'webhook_type' string")
    if not _WEBHOOK_TYPE.fullmatch(webhook_type):
        raise WebhookPayloadError("'webhook_type' is not a webhook type name")
    return payload


def _check_values(payload: object) -> None:
    """Walk the parsed body (without recursion): bounded depth, no NUL in keys or strings."""
    pending: list[tuple[object, int]] = [(payload, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_BODY_DEPTH:
            raise WebhookPayloadError("body is nested too deeply")
        if isinstance(value, str):
            if "\x00" in value:
                raise WebhookPayloadError("body contains a NUL character")
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise WebhookPayloadError("body contains a NUL character")
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
