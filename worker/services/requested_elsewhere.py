"""Which invoices a pending payment request we did not make already covers.

Lago's own dunning campaign, or a person in Lago's UI, may have asked a customer already;
asking again would be a second request for the same invoices. Once per sweep (one listing of
pending payment requests, however many groups there are), the requests whose Lago id is not
in our ledger are read and folded into invoice id -> when it was asked. Each row's own
`payment_status` is checked (a listing's filter is not trusted). A row that cannot be read
makes every invoice of the customer it names count as asked now: we cannot tell which
invoices it covers, and not asking is the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from worker.lago.models import MalformedRecord, PaymentRequest
from worker.logging import get_logger
from worker.services.runtime import Runtime
from worker.store import intents
from worker.store.db import read_session

log = get_logger(__name__)

_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RequestedElsewhere:
    """`invoices`: invoice id -> when the newest pending request we did not make covering it
    was created. `customers`: customers with a pending request we could not read -> when we
    saw it (all their invoices count as asked then)."""

    invoices: Mapping[str, datetime] = field(default_factory=dict)
    customers: Mapping[str, datetime] = field(default_factory=dict)

    def requested_at(self, lago_id: str, external_customer_id: str) -> datetime | None:
        moments = [
            moment
            for moment in (self.invoices.get(lago_id), self.customers.get(external_customer_id))
            if moment is not None
        ]
        return max(moments) if moments else None


@dataclass(frozen=True, slots=True)
class ElsewhereScan:
    covered: RequestedElsewhere
    requests: int  # pending requests we did not make
    unreadable: int  # rows that could not be read


def requested_elsewhere(rt: Runtime, *, customer: str | None, now: datetime) -> ElsewhereScan:
    """Read the pending payment requests (of `customer` only, when given) once."""
    rows = rt.client.iter_payment_request_rows(
        payment_status="pending", external_customer_id=customer
    )
    return fold_requests(rt, rows, customer=customer, now=now)


def fold_requests(
    rt: Runtime,
    rows: Iterable[PaymentRequest | MalformedRecord],
    *,
    customer: str | None,
    now: datetime,
) -> ElsewhereScan:
    invoices: dict[str, datetime] = {}
    customers: dict[str, datetime] = {}
    foreign = unreadable = 0
    for chunk in _chunks(iter(rows)):
        readable: list[PaymentRequest] = []
        for row in chunk:
            if isinstance(row, PaymentRequest):
                if row.payment_status == "pending" and customer in (None, row.external_customer_id):
                    readable.append(row)
                continue
            unreadable += 1
            log.warning("sweep.pending_request_unreadable", lago_id=row.lago_id, error=row.error)
            if row.external_customer_id is not None:
                customers[row.external_customer_id] = now
        with read_session(rt.engine) as session:
            ours = intents.known_lago_ids(session, lago_ids=[r.lago_id for r in readable])
        for request in readable:
            if request.lago_id in ours:
                continue
            foreign += 1
            asked = request.created_at or now
            for lago_id in request.invoice_ids:
                if lago_id not in invoices or invoices[lago_id] < asked:
                    invoices[lago_id] = asked
    return ElsewhereScan(
        covered=RequestedElsewhere(invoices=invoices, customers=customers),
        requests=foreign,
        unreadable=unreadable,
    )


def _chunks(
    rows: Iterator[PaymentRequest | MalformedRecord],
) -> Iterator[list[PaymentRequest | MalformedRecord]]:
    while chunk := list(islice(rows, _CHUNK)):
        yield chunk
