"""Query filters of `GET /api/v1/invoices`, encoded the way Lago's Rails controller reads them.

Arrays go out as `key[]=value` (Rails drops a repeated plain `key=`), booleans as `true` /
`false`, dates as ISO-8601, metadata as `metadata[key]=value`. `payment_dispute_lost=false` is
never sent: Lago tests the raw string, so "false" acts like true (`payment_overdue=true`
already excludes dispute-lost invoices).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Literal

InvoiceStatus = Literal["draft", "finalized", "voided", "failed", "pending"]
InvoicePaymentStatus = Literal["pending", "succeeded", "failed"]
InvoiceType = Literal[
    "subscription", "add_on", "credit", "one_off", "advance_charges", "progressive_billing"
]

QueryParams = list[tuple[str, str]]


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class InvoiceFilters:
    """Every filter of `GET /api/v1/invoices` the worker may use; `None` means "not sent".

    `statuses` and `payment_statuses` are sent as arrays (`status[]=...`, `payment_status[]=
    ...`). `payment_dispute_lost` can only be asked for as `True` (see the module docstring).
    """

    statuses: tuple[InvoiceStatus, ...] = ()
    payment_statuses: tuple[InvoicePaymentStatus, ...] = ()
    payment_overdue: bool | None = None
    payment_dispute_lost: Literal[True] | None = None
    partially_paid: bool | None = None
    self_billed: bool | None = None
    currency: str | None = None
    external_customer_id: str | None = None
    billing_entity_codes: tuple[str, ...] = ()
    invoice_type: InvoiceType | None = None
    issuing_date_from: date | None = None
    issuing_date_to: date | None = None
    amount_from: int | None = None
    amount_to: int | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    search_term: str | None = None

    def __post_init__(self) -> None:
        # Lago answers 404 billing_entity_not_found when the list has duplicates.
        if len(set(self.billing_entity_codes)) != len(self.billing_entity_codes):
            raise ValueError("billing_entity_codes must not contain duplicates")
        if self.payment_dispute_lost is not None and self.payment_dispute_lost is not True:
            raise ValueError("payment_dispute_lost can only be True (Lago reads 'false' as true)")
        # Freeze a caller's dict so the dataclass stays truly immutable.
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def overdue(cls, **extra: object) -> InvoiceFilters:
        """The dunning listing: finalized, overdue, unpaid, not self-billed invoices.

        `extra` adds or overrides filters, e.g. `InvoiceFilters.overdue(currency="EUR")`.
        """
        values: dict[str, object] = {
            "statuses": ("finalized",),
            "payment_overdue": True,
            "payment_statuses": ("pending", "failed"),
            "self_billed": False,
        }
        values.update(extra)
        return cls(**values)  # type: ignore[arg-type]

    def to_params(self) -> QueryParams:
        """The query string pairs, in a stable order (page/per_page are added by the client)."""
        params: QueryParams = []
        if len(self.statuses) == 1:
            params.append(("status", self.statuses[0]))
        else:
            params.extend(("status[]", status) for status in self.statuses)
        if self.payment_overdue is not None:
            params.append(("payment_overdue", _bool(self.payment_overdue)))
        params.extend(("payment_status[]", status) for status in self.payment_statuses)
        if self.payment_dispute_lost:
            params.append(("payment_dispute_lost", "true"))
        if self.partially_paid is not None:
            params.append(("partially_paid", _bool(self.partially_paid)))
        if self.self_billed is not None:
            params.append(("self_billed", _bool(self.self_billed)))
        if self.currency is not None:
            params.append(("currency", self.currency))
        if self.external_customer_id is not None:
            params.append(("external_customer_id", self.external_customer_id))
        params.extend(("billing_entity_codes[]", code) for code in self.billing_entity_codes)
        if self.invoice_type is not None:
            params.append(("invoice_type", self.invoice_type))
        if self.issuing_date_from is not None:
            params.append(("issuing_date_from", self.issuing_date_from.isoformat()))
        if self.issuing_date_to is not None:
            params.append(("issuing_date_to", self.issuing_date_to.isoformat()))
        if self.amount_from is not None:
            params.append(("amount_from", str(int(self.amount_from))))
        if self.amount_to is not None:
            params.append(("amount_to", str(int(self.amount_to))))
        params.extend((f"metadata[{key}]", value) for key, value in sorted(self.metadata.items()))
        if self.search_term is not None:
            params.append(("search_term", self.search_term))
        return params
