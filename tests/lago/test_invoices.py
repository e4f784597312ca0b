"""Listing invoices: concurrent paging, short-page stop, stale counts, malformed rows."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.lago.fakes import InvoiceServer, invoice_json, make_client, meta_json
from worker.lago import (
    Invoice,
    InvoiceFilters,
    LagoClient,
    LagoMalformedResponseError,
    MalformedRecord,
)


def _ids(items: list[Invoice | MalformedRecord]) -> list[str | None]:
    return [item.lago_id for item in items]


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 250, 1000])
def test_every_invoice_is_yielded_once_in_page_order(count: int) -> None:
    server = InvoiceServer(count)
    with make_client(server) as client:
        items = list(client.iter_invoices(InvoiceFilters.overdue(), per_page=100))
    assert _ids(items) == [f"inv-{n:05d}" for n in range(1, count + 1)]
    assert all(isinstance(item, Invoice) for item in items)


def test_exact_multiple_of_per_page_costs_one_extra_empty_page() -> None:
    server = InvoiceServer(200)
    with make_client(server) as client:
        list(client.iter_invoices(InvoiceFilters(), per_page=100))
    assert sorted(server.pages_served) == [1, 2, 3]


def test_stale_count_too_low_keeps_paging_until_a_short_page() -> None:
    # Lago's cached total_count says 150 (2 pages) but 430 invoices exist now.
    server = InvoiceServer(430, announced_count=150)
    with make_client(server) as client:
        items = list(client.iter_invoices(InvoiceFilters(), per_page=100))
    assert len(items) == 430
    assert sorted(server.pages_served) == [1, 2, 3, 4, 5]


def test_stale_count_too_high_stops_at_the_first_short_page() -> None:
    # The cached count says 10 pages; only 120 invoices are left.
    server = InvoiceServer(120, announced_count=1000)
    with make_client(server, concurrency=2) as client:
        items = list(client.iter_invoices(InvoiceFilters(), per_page=100))
    assert len(items) == 120
    # Page 2 is short: at most the window (2 pages) past it were requested, never all 10.
    assert max(server.pages_served) <= 3


def test_pages_are_fetched_concurrently_but_bounded_by_the_window() -> None:
    lock = threading.Lock()
    state = {"in_flight": 0, "max": 0}
    server = InvoiceServer(1000)
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["in_flight"] += 1
            state["max"] = max(state["max"], state["in_flight"])
            if state["in_flight"] >= 3:
                release.set()
        # Hold each page until three are in flight at once (or give up after a while).
        if request.url.params["page"] != "1":
            release.wait(timeout=5)
        try:
            return server(request)
        finally:
            with lock:
                state["in_flight"] -= 1

    with make_client(handler, concurrency=3) as client:
        items = list(client.iter_invoices(InvoiceFilters(), per_page=100))
    assert len(items) == 1000
    assert state["max"] == 3


def test_a_malformed_invoice_becomes_a_record_and_the_stream_goes_on() -> None:
    server = InvoiceServer(150)
    server.overrides[103] = invoice_json(103, total_amount_cents="lots")
    server.overrides[7] = {"number": "no-id", "status": "finalized"}
    with make_client(server) as client:
        items = list(client.iter_invoices(InvoiceFilters(), per_page=100))
    assert len(items) == 150
    bad = [item for item in items if isinstance(item, MalformedRecord)]
    assert bad == [
        MalformedRecord(
            lago_id=None,
            index=6,
            page=1,
            error=bad[0].error,
        ),
        MalformedRecord(
            lago_id="inv-00103",
            index=2,
            page=2,
            error="invoices[2].total_amount_cents: Input should be a valid integer, "
            "unable to parse string as an integer",
            external_customer_id="cust-1",  # read from the raw row: the skip names the customer
        ),
    ]
    assert bad[0].error.startswith("invoices[6].lago_id: Field required")
    assert "\n" not in bad[0].error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"meta": meta_json(1, 100, 1)}, "invoices"),
        ({"invoices": {"a": 1}, "meta": meta_json(1, 100, 1)}, "invoices"),
        ({"invoices": []}, "meta"),
        ({"invoices": [], "meta": {"current_page": 1}}, "meta.total_pages"),
        ([1, 2, 3], "invoices"),
    ],
)
def test_a_page_of_the_wrong_shape_raises_naming_the_field(body: object, field: str) -> None:
    with (
        make_client(lambda _: httpx.Response(200, json=body)) as client,
        pytest.raises(LagoMalformedResponseError) as caught,
    ):
        list(client.iter_invoices(InvoiceFilters()))
    assert caught.value.field == field
    assert caught.value.endpoint == "GET /api/v1/invoices"
    assert field in str(caught.value)


def test_a_page_that_is_not_json_raises() -> None:
    handler = lambda _: httpx.Response(200, text="<html>maintenance</html>")  # noqa: E731
    with (
        make_client(handler) as client,
        pytest.raises(LagoMalformedResponseError, match="not JSON"),
    ):
        list(client.iter_invoices(InvoiceFilters()))


def test_a_bad_later_page_raises_after_the_good_pages_were_yielded() -> None:
    server = InvoiceServer(300)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["page"] == "3":
            return httpx.Response(200, text="not json")
        return server(request)

    seen: list[Invoice | MalformedRecord] = []

    def consume(client: LagoClient) -> None:
        for item in client.iter_invoices(InvoiceFilters(), per_page=100):
            seen.append(item)

    with make_client(handler) as client, pytest.raises(LagoMalformedResponseError):
        consume(client)
    assert len(seen) == 200


def test_the_listing_sends_the_filters_and_paging_params() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"invoices": [], "meta": meta_json(1, 50, 0)})

    with make_client(handler) as client:
        assert list(client.iter_invoices(InvoiceFilters.overdue(), per_page=50)) == []
    query = requests[0].url.query.decode()
    assert query == (
        "status=finalized&payment_overdue=true&payment_status%5B%5D=pending"
        "&payment_status%5B%5D=failed&self_billed=false&page=1&per_page=50"
    )


def test_abandoning_the_iterator_stops_fetching() -> None:
    server = InvoiceServer(5000)
    with make_client(server, concurrency=2) as client:
        iterator = client.iter_invoices(InvoiceFilters(), per_page=100)
        first = [next(iterator) for _ in range(150)]
        iterator.close()
        served_at_close = len(server.pages_served)
        time.sleep(0)  # let nothing else run: the pool was shut down on close
        assert len(server.pages_served) == served_at_close
    assert len(first) == 150
    assert served_at_close <= 1 + 2 + 1
