"""Whatever the listing holds, a sweep either records every decision (garbage rows as
`malformed_record` skips) or, when a whole page is unreadable, fails having written no intent
and no decision: never a partial write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from config import load_settings
from config.policies import load_policies
from tests.e2e.sweep_support import Clock, count_rows
from tests.property.test_client_bad_input import GOOD_INVOICE, JSONISH, broken_invoices
from worker.lago import LagoClient
from worker.lago.errors import LagoError
from worker.services.runtime import Runtime
from worker.services.sweep import SweepSummary, run_sweep
from worker.store.db import make_engine
from worker.store.migrate import upgrade

POLICY = """\
version: 1
policies:
  - name: everyone
    min_overdue_cents: {EUR: 1}
"""


def _invoice(number: int) -> dict[str, Any]:
    return {
        **GOOD_INVOICE,
        "lago_id": f"2f8a1c3e-0000-4000-8000-{number:012d}",
        "number": f"ACM-{number}",
        "customer": {**GOOD_INVOICE["customer"], "external_id": f"cus_{number}"},
    }


def _pages(rows: list[Any], page_two: bytes | None) -> httpx.MockTransport:
    """Page 1: `rows` (100 of them, so the client asks for page 2); page 2: `page_two`."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        if request.url.path.endswith("/payment_requests"):  # nothing pending elsewhere
            empty = {"current_page": 0, "next_page": None, "total_pages": 0, "total_count": 0}
            return httpx.Response(200, json={"payment_requests": [], "meta": empty})
        if page == 1:
            meta = {"current_page": 1, "next_page": 2, "total_pages": 2, "total_count": 101}
            return httpx.Response(200, json={"invoices": rows, "meta": meta})
        if page_two is not None:
            return httpx.Response(200, content=page_two)
        last: dict[str, int | None] = {
            "current_page": 2,
            "next_page": None,
            "total_pages": 2,
            "total_count": 101,
        }
        return httpx.Response(200, json={"invoices": [], "meta": last})

    return httpx.MockTransport(handler)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("bad-pages")
    url = f"sqlite:///{directory / 'ledger.sqlite3'}"
    upgrade(url)
    (directory / "policies.yaml").write_text(POLICY, encoding="utf-8")
    return url


def _sweep(db_url: str, transport: httpx.MockTransport) -> SweepSummary:
    policy_file = Path(db_url.removeprefix("sqlite:///")).parent / "policies.yaml"
    settings_ = load_settings(
        database_url=db_url, policy_file=policy_file, lago_api_url="http://lago.test"
    )
    client = LagoClient("http://lago.test", SecretStr("key"), transport=transport, max_retries=0)
    runtime = Runtime(
        settings=settings_,
        engine=make_engine(db_url),
        client=client,
        policies=load_policies(policy_file),
        clock=Clock(),
    )
    try:
        # No send: the mock answers only listings. Decisions and intents are what we check.
        return run_sweep(runtime, trigger="cli", send_inline=False)
    finally:
        runtime.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=st.lists(broken_invoices(), min_size=1, max_size=5),
    junk=st.lists(JSONISH, max_size=3),
)
def test_garbage_rows_become_recorded_skips(db_url: str, bad: list[Any], junk: list[Any]) -> None:
    good = [_invoice(number) for number in range(100 - len(bad) - len(junk))]
    rows = [*good, *bad, *junk]
    before = count_rows(db_url)

    try:
        summary = _sweep(db_url, _pages(rows, None))
    except LagoError:
        # A row so broken the page itself is rejected: nothing may have been written.
        assert count_rows(db_url)["payment_request_intents"] == before["payment_request_intents"]
        assert count_rows(db_url)["decisions"] == before["decisions"]
        return

    after = count_rows(db_url)
    # Every listed row was read and accounted for, and the run recorded one decision per
    # group, one per malformed row and one per summary of skipped invoices: nothing silently
    # dropped, nothing half written.
    assert summary.invoices_seen == len(rows)
    assert sum(summary.invoices.values()) == len(rows)
    assert after["decisions"] - before["decisions"] == (
        summary.groups + summary.malformed + summary.skip_summaries
    )
    assert summary.malformed <= len(bad) + len(junk)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_two=st.one_of(st.binary(max_size=40), JSONISH.map(lambda v: json.dumps(v).encode())))
def test_an_unreadable_page_writes_nothing(db_url: str, page_two: bytes) -> None:
    rows = [_invoice(number) for number in range(100)]
    before = count_rows(db_url)

    try:
        _sweep(db_url, _pages(rows, page_two))
    except LagoError:
        after = count_rows(db_url)
        assert after["payment_request_intents"] == before["payment_request_intents"]
        assert after["decisions"] == before["decisions"]
        return
    # Page 2 happened to read as an empty or short page: the sweep finished normally.
    assert count_rows(db_url)["sweep_runs"] == before["sweep_runs"] + 1
