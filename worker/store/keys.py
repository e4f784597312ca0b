"""Stable keys of the ledger: the group key and the intent dedupe key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def make_group_key(
    external_customer_id: str, currency: str, billing_entity_code: str | None
) -> str:
    """`customer|currency|entity` ('-' when there is no billing entity).

    The same format as `worker.policy.types.group_key` (a test keeps them in step).
    """
    return f"{external_customer_id}|{currency}|{billing_entity_code or '-'}"


def make_dedupe_key(group_key: str, invoice_ids: Iterable[str], attempt_number: int) -> str:
    """sha256 hex of the group key, the sorted invoice ids and the attempt number.

    A double sweep or a double beat tick computes the same key for the same decision, so
    the second INSERT is a no-op; a deliberate next attempt has a new attempt number.
    """
    parts = [group_key, *sorted(set(invoice_ids)), str(attempt_number)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
