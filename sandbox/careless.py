"""A careless Lago: how older or buggy Lago versions answer, so tests stop measuring a tidy one.

When the `careless` fault is on:
- `GET /api/v1/invoices` ignores every filter (status, payment status, overdue, self-billed,
  customer, ...) and lists every invoice, deleted ones included; `GET
  /api/v1/payment_requests` ignores its customer, status and currency filters;
- invoices are shown the way older versions show them: some without
  `total_due_amount_cents` (derivable from total, paid and credit-note offsets), some without
  those either (the amount due cannot be known), some without `payment_overdue`, some with an
  `invoice_type` we do not know, and a payment in flight as payment_status `processing`;
- `POST /api/v1/payment_requests` skips Lago's own checks that the invoices are overdue and
  ready (a client may not lean on them) and accepts deleted invoices;
- with `careless_answer_rate`, some answers to that POST name other invoices or another
  customer than the request created (a buggy answer).

What is shown is never a lie about eligibility: an invoice shown as eligible is eligible.
Each distortion is chosen by a stable hash of the invoice id, so every listing of the same
data looks the same.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from sandbox.model import JsonObject


def _roll(lago_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}:{lago_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def careless_invoice(data: JsonObject, *, ready_for_payment_processing: bool) -> JsonObject:
    """The invoice as a careless Lago serializes it."""
    shown = dict(data)
    lago_id = str(data["lago_id"])
    amounts = _roll(lago_id, "amounts")
    if amounts < 0.25:
        shown.pop("total_due_amount_cents", None)
    elif amounts < 0.33:
        for name in ("total_due_amount_cents", "total_offsetted_credit_note_amount_cents"):
            shown.pop(name, None)
    if data["payment_overdue"] is True and _roll(lago_id, "overdue") < 0.2:
        # Only a true flag is left out: a reader falls back to the due date, which an overdue
        # invoice has passed (leaving out a false flag could make it look overdue).
        shown.pop("payment_overdue", None)
    if _roll(lago_id, "type") < 0.1:
        shown["invoice_type"] = "usage_forecast"
    if (
        not ready_for_payment_processing
        and data["payment_status"] == "pending"
        and data["status"] == "finalized"
    ):
        shown["payment_status"] = "processing"
    return shown


def garble_answer(body: JsonObject, rng: random.Random) -> JsonObject:
    """A buggy answer to a payment request POST: other invoices, or another customer."""
    garbled: dict[str, Any] = dict(body)
    if rng.random() < 0.5 and garbled.get("invoices"):
        invoices = [dict(invoice) for invoice in garbled["invoices"]]
        invoices[0]["lago_id"] = f"{invoices[0]['lago_id'][:-4]}beef"
        garbled["invoices"] = invoices
    else:
        customer = dict(garbled.get("customer") or {})
        customer["external_id"] = f"{customer.get('external_id', 'cus')}-other"
        garbled["customer"] = customer
    return garbled
