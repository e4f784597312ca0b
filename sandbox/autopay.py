"""Customers who pay on their own, some time after being asked (the demo shows recovery).

With `rate` > 0, each payment request is, with that probability, paid in full by its customer
after a random delay between `min_delay_s` and `max_delay_s`: every invoice of the request
still due gets a manual payment of what is due (Lago's `Payments::ManualCreateService`, with
its webhooks), so the invoices leave the overdue listing like a real payment would make them.
Random choices come from their own RNG seeded with `seed`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.model import PaymentRequest
    from sandbox.state import SandboxState


class AutopaySettingsError(ValueError):
    """An autopay setting is out of range; the message is one line."""


@dataclass(frozen=True, slots=True)
class AutopaySettings:
    rate: float = 0.0
    min_delay_s: float = 20.0
    max_delay_s: float = 120.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise AutopaySettingsError(f"pay_rate must be between 0 and 1, got {self.rate}")
        if self.min_delay_s < 0:
            raise AutopaySettingsError(f"pay_delay_min must be >= 0, got {self.min_delay_s}")
        if self.max_delay_s < self.min_delay_s:
            raise AutopaySettingsError(
                f"pay_delay_max must be >= pay_delay_min ({self.min_delay_s}), "
                f"got {self.max_delay_s}"
            )


class Autopay:
    def __init__(self, settings: AutopaySettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self.scheduled = 0
        self.paid_requests = 0

    def schedule(self, state: SandboxState, request: PaymentRequest) -> bool:
        """Maybe make the customer pay `request` later; True if a payment is scheduled. Must
        run on the server's event loop thread (where every state change happens)."""
        if self.settings.rate <= 0 or self._rng.random() >= self.settings.rate:
            return False
        delay = self._rng.uniform(self.settings.min_delay_s, self.settings.max_delay_s)
        asyncio.get_running_loop().call_later(delay, self._pay, state, request.lago_id)
        self.scheduled += 1
        return True

    def _pay(self, state: SandboxState, lago_id: str) -> None:
        store = state.store
        request = store.payment_requests.get(lago_id)
        if request is None:  # the data was reset meanwhile
            return
        paid = False
        for invoice_id in request.invoice_ids:
            invoice = store.invoices.get(invoice_id)
            if invoice is None:
                continue
            due = int(invoice.data["total_due_amount_cents"])
            if due > 0:
                state.pay_invoice(invoice, due, reference=f"paid after request {lago_id[:8]}")
                paid = True
        if paid:
            self.paid_requests += 1
