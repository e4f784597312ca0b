"""Holdouts: a stable share of customers kept out of dunning, to measure what dunning adds.

A customer's bucket is a number in [0, 100) from sha256(salt, customer id): the same customer
always lands in the same bucket for a given salt, whatever the sweep or the machine. A policy
with `holdout_percent: p` holds out the customers whose bucket is below p, so raising p only
adds customers to the holdout and a customer is held out (or not) in all its currencies.
"""

from __future__ import annotations

import hashlib

_SCALE = 2**64


def holdout_bucket(salt: str, external_customer_id: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{external_customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100 / _SCALE


def is_held_out(salt: str | None, percent: float, external_customer_id: str) -> bool:
    if percent <= 0 or salt is None:
        return False
    return holdout_bucket(salt, external_customer_id) < percent
