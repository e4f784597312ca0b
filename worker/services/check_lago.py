"""Check that Lago answers and accepts the API key, before any worker starts.

One GET: the first page (of one invoice) of the overdue listing every sweep reads. A
rejected key raises `LagoUnauthorizedError`, an unreachable Lago `LagoConnectionError`, so
`dunning run` stops with one line instead of a worker failing every sweep. The premium
licence cannot be checked without a payment request; a worker that meets its absence stops
`dunning run` the same way (see `worker.services.instance.record_halt`).
"""

from __future__ import annotations

from config import Settings
from worker.lago import LagoClient
from worker.lago.filters import InvoiceFilters


def check_lago_access(settings: Settings, *, base_url: str) -> None:
    with LagoClient.from_settings(settings, base_url=base_url) as client:
        listing = client.iter_invoices(InvoiceFilters.overdue(), per_page=1)
        try:
            next(listing, None)
        finally:
            listing.close()
