"""The ops console in a real browser: a real `dunning serve` on a ledger filled by real sweeps
against the sandbox, driven by Playwright in Debian's headless Chromium.

A careless Lago (wrong answers to some payment requests) leaves intents to review; three
requests get paid and a sweep of each of those customers reconciles them, so every part of
the overview has figures. The test logs in, checks the overview's numbers against the
ledger (computed here with SQL, not through the console's read models), finds a customer,
pauses them and sees the pause on their timeline, and retries an intent under review from
the action list.
In CI a missing browser fails the test (`.ci/run` installs it); elsewhere it is skipped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.e2e.sweep_support import GENERATED_POLICY, sweep_runtime, test_settings, write_policy
from tests.fixtures.browser import LAPTOP, skip_without_browser
from tests.fixtures.console import CONSOLE_PASSWORD, console_hash
from tests.fixtures.sandbox import SandboxHandle, free_port
from tests.fixtures.serving import wait_for_health
from tests.tasks.support import child_env
from worker.services.sweep import run_sweep
from worker.store.db import make_engine
from worker.store.migrate import upgrade

skip_without_browser()

from playwright.sync_api import Browser, Page, Request  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DUNNING = str(Path(sys.executable).with_name("dunning"))
OPERATOR = "Rosa Finance"


@dataclass(frozen=True)
class Served:
    url: str
    engine: Engine
    sandbox: SandboxHandle


def _fill_ledger(db_url: str, sandbox: SandboxHandle, policy: Path) -> None:
    """Sweep a careless Lago, pay three of the requests, sweep their customers again."""
    sandbox.reset(customers=30, seed=5)
    sandbox.set_faults(careless=True, careless_answer_rate=0.3, seed=5)
    settings = test_settings(db_url, sandbox, policy)
    with sweep_runtime(settings) as rt:
        first = run_sweep(rt, trigger="cli")
    assert first.outcomes["needs_review"] > 0
    sandbox.set_faults(careless=False)
    paid = sandbox.payment_requests()[:3]
    for request in paid:
        for lago_id in request["lago_invoice_ids"]:
            sandbox.pay_invoice(lago_id)
    # One sweep per paying customer: it reconciles their requests and leaves the groups under
    # review alone (a full sweep would ask some of them again, and an intent whose group has a
    # newer open one cannot be retried).
    with sweep_runtime(settings) as rt:
        for request in paid:
            run_sweep(rt, trigger="cli", customer=request["customer"]["external_id"])


@pytest.fixture
def served(sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Served]:
    upgrade(sqlite_url)
    policy = write_policy(tmp_path, text=GENERATED_POLICY)
    _fill_ledger(sqlite_url, sandbox, policy)
    port = free_port()
    env = child_env(
        DUNNING_DATA_DIR=str(tmp_path / "data"),
        DUNNING_DATABASE_URL=sqlite_url,
        DUNNING_POLICY_FILE=str(policy),
        LAGO_API_URL=sandbox.url,
        LAGO_API_KEY=sandbox.api_key,
        DUNNING_CONSOLE_PASSWORD_HASH=console_hash(),
        DUNNING_LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [DUNNING, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    engine = make_engine(sqlite_url)
    try:
        wait_for_health(process, url)
        yield Served(url, engine, sandbox)
    finally:
        engine.dispose()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert CONSOLE_PASSWORD.encode() not in stderr
        assert console_hash().encode() not in stderr


@pytest.fixture
def page(browser: Browser, served: Served, tmp_path: Path) -> Iterator[Page]:
    opened = browser.new_page(viewport=LAPTOP)
    problems: list[str] = []
    opened.on("console", lambda message: problems.append(message.text))

    def failed(request: Request) -> None:
        # A click that leaves the page before its stylesheet arrived aborts that request: a
        # loaded machine, not a broken page.
        if request.failure != "net::ERR_ABORTED":
            problems.append(f"{request.url}: {request.failure}")

    opened.on("requestfailed", failed)
    try:
        opened.goto(f"{served.url}/console/")
        assert opened.url.startswith(f"{served.url}/console/login")
        opened.get_by_label("Your name").fill(OPERATOR)
        opened.get_by_label("Password").fill(CONSOLE_PASSWORD)
        opened.get_by_role("button", name="Log in").click()
        opened.wait_for_url(f"{served.url}/console/")
        yield opened
    finally:
        opened.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        opened.close()
    assert problems == []  # no script errors, nothing that failed to load


def _money(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d}"


def _scalar(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql), params).scalar() or 0)


def test_the_overview_shows_the_ledgers_numbers(page: Page, served: Served) -> None:
    engine = served.engine
    needs_review = _scalar(
        engine, "SELECT count(*) FROM payment_request_intents WHERE status = 'needs_review'"
    )
    assert needs_review > 0
    card = page.locator('[data-figure="needs-review"] .figure')
    assert card.inner_text() == str(needs_review)
    now = datetime.now(UTC)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    sent_since = (
        "SELECT count(*) FROM payment_request_intents "
        "WHERE status IN ('sent', 'adopted') AND sent_at >= :since"
    )
    requests_today = _scalar(engine, sent_since, since=today)
    week = _scalar(engine, sent_since, since=today - timedelta(days=today.weekday()))
    assert requests_today > 0
    assert page.locator('[data-figure="requests-today"] .figure').inner_text() == str(
        requests_today
    )
    assert page.locator('[data-figure="requests-week"] .figure').inner_text() == str(week)

    with engine.connect() as connection:
        latest = connection.execute(text("SELECT max(run_id) FROM overdue_snapshots")).scalar()
        overdue = connection.execute(
            text(
                "SELECT currency, due_cents, invoices FROM overdue_ageing "
                "WHERE run_id = :run AND bucket = 'all' ORDER BY currency"
            ),
            {"run": latest},
        ).all()
        recovered = connection.execute(
            text(
                "SELECT currency, sum(amount_cents), sum(coalesce(recovered_cents, 0)) "
                "FROM payment_request_intents WHERE status IN ('sent', 'adopted') "
                "AND sent_at IS NOT NULL GROUP BY currency ORDER BY currency"
            )
        ).all()
    assert overdue
    for currency, due_cents, invoices in overdue:
        row = page.locator(f'#overdue tr[data-currency="{currency}"]')
        assert row.locator(".due").inner_text() == _money(due_cents)
        assert row.locator(".invoices").inner_text() == str(invoices)
    assert any(got > 0 for _, _, got in recovered)  # the paid requests were reconciled
    for currency, asked, got in recovered:
        row = page.locator(f'#recovery tr[data-currency="{currency}"]')
        assert row.locator(".asked").inner_text() == _money(int(asked))
        assert row.locator(".recovered").inner_text() == _money(int(got))
        assert row.locator(".rate").inner_text() == f"{got / asked * 100:.1f}%"
        assert page.locator(f'figure.recovered[data-currency="{currency}"] svg').is_visible()
    sweeps = page.locator("#sweeps tbody tr")
    assert sweeps.count() == 4
    assert all("succeeded" in row for row in sweeps.all_inner_texts())


def test_find_a_customer_pause_them_and_see_it_on_their_timeline(
    page: Page, served: Served
) -> None:
    with served.engine.connect() as connection:
        customer = connection.execute(
            text(
                "SELECT external_customer_id FROM payment_request_intents "
                "WHERE status = 'sent' ORDER BY id LIMIT 1"
            )
        ).scalar_one()
    page.locator("header nav").get_by_role("link", name="Customers").click()
    page.get_by_label("External id or e-mail").fill(customer[-5:])
    page.get_by_role("button", name="Search").click()
    page.locator("#matches").get_by_role("link", name=customer).click()
    assert page.locator("h1 .customer-id").inner_text() == customer
    assert page.locator("#pause-state").inner_text() == "Dunned normally."
    assert "Lago payment request" in page.locator("#timeline").inner_text()

    page.get_by_label(f"Reason for pausing {customer}").fill("disputes the March invoice")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_load_state()
    state = page.locator("#pause-state").inner_text()
    assert state.startswith("Paused: disputes the March invoice (until resumed")
    newest = page.locator("#timeline li").first.inner_text()
    assert f"pause by {OPERATOR} (console)" in newest
    assert "why: disputes the March invoice" in newest
    paused = "SELECT count(*) FROM customer_controls WHERE external_customer_id = :c AND paused"
    assert _scalar(served.engine, paused, c=customer) == 1

    page.get_by_role("button", name="Resume").click()
    page.wait_for_load_state()
    assert page.locator("#pause-state").inner_text() == "Dunned normally."
    assert f"resume by {OPERATOR} (console)" in page.locator("#timeline li").first.inner_text()


def test_retry_an_intent_under_review_from_the_action_list(page: Page, served: Served) -> None:
    page.locator("header nav").get_by_role("link", name="Action list").click()
    # an intent whose group has a newer open one cannot be retried: it has no button
    review = (
        page.locator("section#needs_review tbody tr")
        .filter(has=page.locator("button.retry-button"))
        .first
    )
    intent_id = int(review.get_attribute("data-intent") or 0)
    customer = review.get_attribute("data-customer")
    assert "answer" in review.locator(".reason").inner_text().lower()  # why it needs a human
    review.get_by_label(f"Reason for retrying intent {intent_id}").fill("checked in Lago")
    review.get_by_role("button", name="Retry").click()
    page.wait_for_url(f"**/console/customers/{customer}")
    row = page.locator(f'#intents tr[data-intent="{intent_id}"]')
    assert row.locator(".status").inner_text() == "pending"
    newest = page.locator("#timeline li").first.inner_text()
    assert f"retry by {OPERATOR} (console)" in newest
    assert "re-queued from needs_review" in newest
    pending = "SELECT count(*) FROM payment_request_intents WHERE id = :i AND status = 'pending'"
    assert _scalar(served.engine, pending, i=intent_id) == 1
