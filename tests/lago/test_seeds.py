"""Every Lago response example in the user's seed documents parses with our models.

The seeds mix prose, curl commands and JSON: every JSON object is pulled out of the text and
the response-shaped ones (invoices, payment requests, payment receipts) are validated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.lago.models import Invoice, PageMeta, PaymentReceipt, PaymentRequest

SEEDS = Path("/work/shared/seeds")


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        start = text.find("{", end)
    return found


def _is_payment_request(value: object) -> bool:
    return isinstance(value, dict) and "lago_id" in value and "amount_currency" in value


def _examples() -> list[tuple[str, str, dict[str, Any]]]:
    """(seed file, kind, object) for every response example."""
    examples: list[tuple[str, str, dict[str, Any]]] = []
    for path in sorted(SEEDS.glob("*.txt")):
        for obj in _json_objects(path.read_text(encoding="utf-8")):
            if "invoices" in obj and "meta" in obj:
                examples.append((path.name, "invoices", obj))
            elif "payment_receipts" in obj and "meta" in obj:
                examples.append((path.name, "payment_receipts", obj))
            elif _is_payment_request(obj.get("payment_request")):
                # (a request body also has "payment_request", but no lago_id)
                examples.append((path.name, "payment_request", obj["payment_request"]))
            elif _is_payment_request(obj):
                examples.append((path.name, "payment_request", obj))
    return examples


pytestmark = pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed folder is absent")


def test_the_seeds_contain_every_kind_of_example() -> None:
    kinds = {kind for _, kind, _ in _examples()}
    assert kinds == {"invoices", "payment_receipts", "payment_request"}


@pytest.mark.parametrize(
    ("seed", "kind", "example"),
    _examples() if SEEDS.is_dir() else [],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_seed_example_parses(seed: str, kind: str, example: dict[str, Any]) -> None:
    if kind == "invoices":
        invoices = [Invoice.model_validate(row) for row in example["invoices"]]
        assert invoices
        assert all(invoice.lago_id for invoice in invoices)
        PageMeta.model_validate(example["meta"])
    elif kind == "payment_receipts":
        receipts = [PaymentReceipt.model_validate(row) for row in example["payment_receipts"]]
        assert receipts
        assert all(receipt.payment.lago_id for receipt in receipts)
        PageMeta.model_validate(example["meta"])
    else:
        request = PaymentRequest.model_validate(example)
        assert request.lago_id == example["lago_id"]
        assert len(request.invoices) == len(example["invoices"])
