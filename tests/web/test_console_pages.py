"""What each console page shows, from a ledger whose figures are worked out by hand
(`report_scenario`), and what its buttons do to the ledger."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.fixtures.console import (
    CONSOLE_NOW,
    CONSOLE_PAGES,
    CONSOLE_USER,
    Clock,
    ConsoleClient,
    console_runtime,
    console_settings,
    page_problem,
)
from tests.fixtures.ledger_rows import add_intent_row, report_scenario
from tests.fixtures.sandbox import SandboxHandle
from worker.read import reading
from worker.read.customers import customer_timeline
from worker.services.operator import cli_actor
from worker.services.pause_customer import pause_customer
from worker.services.runtime import Runtime
from worker.store.db import make_engine, read_session, write_tx
from worker.store.models import CustomerControl, OperatorAction, PaymentRequestIntent
from worker.web.app import create_app
from worker.web.console.sessions import COOKIE_NAME, SessionKeys

HMAC_KEY = "webhook-hmac-key-never-shown"


def _cell(html: str, pattern: str) -> str:
    found = re.search(pattern, html, re.S)
    assert found, pattern
    return found.group(1).strip()


def _text(html: str) -> str:
    """The page's words without tags (what a reader sees, roughly)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_overview_shows_the_hand_worked_figures(logged_in: ConsoleClient) -> None:
    html = logged_in.get("/console/").text
    assert _cell(html, r'data-figure="needs-review">.*?class="figure">(\d+)<') == "1"
    assert _cell(html, r'data-figure="requests-today">.*?class="figure">(\d+)<') == "0"
    # the three requests were sent on Tuesday 17 November; "now" is Friday 20 November
    assert _cell(html, r'data-figure="requests-week">.*?class="figure">(\d+)<') == "3"
    usd = _cell(html, r'(<tr data-currency="USD">.*?</tr>)')
    assert _cell(usd, r'class="num due">([^<]+)<') == "2,511.56"
    assert _cell(usd, r'data-bucket="1-30">([^<]+)<') == "1,234.56"
    assert _cell(usd, r'data-bucket="90\+">([^<]+)<') == "777.00"
    recovery = _cell(html, r'(<table id="recovery">.*?</table>)')
    assert _text(recovery).endswith("USD 12,000.00 4,500.00 37.5%")
    assert 'figure class="recovered" data-currency="USD"><svg' in html
    assert 'figure class="ageing" data-currency="EUR"><svg' in html
    sweeps = _text(_cell(html, r'(<table id="sweeps">.*?</table>)'))
    assert "#1 beat 2026-11-20 11:59 UTC succeeded" in sweeps


def test_an_empty_ledger_says_so(
    sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path, console_clock: Clock
) -> None:
    for runtime in console_runtime(
        sqlite_url, sandbox, tmp_path, console_clock, **console_settings()
    ):
        with ConsoleClient(create_app(runtime)) as client:
            client.login()
            overview = _text(client.get("/console/").text)
            assert "No full sweep has run yet" in overview
            assert "No payment request has been sent yet" in overview
            assert "Nothing needs a human" in client.get("/console/actions").text
            assert "not expected to ask anyone" in client.get("/console/next-sweep").text


def test_search_finds_customers_by_external_id_or_email(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    with write_tx(console_rt.engine) as session:
        session.execute(
            update(PaymentRequestIntent)
            .where(PaymentRequestIntent.external_customer_id == "cus_stuck")
            .values(email="Billing@Stuck.example")
        )
    found = logged_in.get("/console/customers", params={"q": "STUCK"}).text
    assert 'href="/console/customers/cus_stuck"' in found
    by_mail = logged_in.get("/console/customers", params={"q": "billing@stuck"}).text
    assert 'href="/console/customers/cus_stuck"' in by_mail
    assert 'href="/console/customers/cus_done"' not in by_mail
    everything = logged_in.get("/console/customers", params={"q": "%"}).text
    assert "No customer in the ledger matches" in everything  # % is a character, not a wildcard


def test_a_customer_timeline_shows_intents_decisions_and_who_did_what(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    pause_customer(
        console_rt.engine,
        external_customer_id="cus_stuck",
        reason="called us, pays Monday",
        until=None,
        now=CONSOLE_NOW,
        actor=cli_actor(),
    )
    html = logged_in.get("/console/customers/cus_stuck").text
    intents = _text(_cell(html, r'(<table id="intents">.*?</table>)'))
    assert "88.00 USD needs_review - - 5 unknown outcomes" in intents
    assert 'name="intent_id" value=' in html  # a Retry button for the intent under review
    timeline = _text(_cell(html, r'(<ol id="timeline">.*?</ol>)'))
    assert f"pause by {cli_actor().name} (cli)" in timeline
    assert "why: called us, pays Monday" in timeline
    assert _text(_cell(html, r'(<p class="paused" id="pause-state">.*?</p>)')).startswith(
        "Paused: called us, pays Monday (until resumed"
    )
    done = _text(logged_in.get("/console/customers/cus_done").text)
    assert "exhausted: max_attempts_reached" in done
    unknown = logged_in.get("/console/customers/nobody%2Fat%20all").text
    assert "The ledger has nothing about this customer yet" in unknown
    assert "nobody/at all" in unknown


def test_pause_from_the_console_is_recorded_and_shown(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    form = logged_in.form("/console/actions", "/console/do/pause", customer="cus_done")
    answer = logged_in.submit(form, reason="promised to pay", until="2026-12-01")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/customers/cus_done"
    with read_session(console_rt.engine) as session:
        control = session.get(CustomerControl, "cus_done")
        (action,) = session.scalars(select(OperatorAction)).all()
    assert control is not None
    assert control.paused
    assert control.paused_until == datetime(2026, 12, 2, tzinfo=UTC)
    assert (action.actor, action.source, action.action, action.reason) == (
        CONSOLE_USER,
        "console",
        "pause",
        "promised to pay",
    )
    assert action.at == CONSOLE_NOW
    timeline = _text(logged_in.get(answer.headers["location"]).text)
    assert f"pause by {CONSOLE_USER} (console) why: promised to pay" in timeline
    assert "until 2026-12-02 00:00 UTC" in timeline
    resume = logged_in.form("/console/customers/cus_done", "/console/do/resume")
    assert logged_in.submit(resume).status_code == 303
    with read_session(console_rt.engine) as session:
        control = session.get(CustomerControl, "cus_done")
    assert control is not None
    assert not control.paused
    assert (
        f"resume by {CONSOLE_USER} (console)" in logged_in.get("/console/customers/cus_done").text
    )


def test_bad_input_is_one_line_and_changes_nothing(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    pause = logged_in.form("/console/actions", "/console/do/pause", customer="cus_done")
    past = logged_in.submit(pause, until="2001-01-01")
    assert past.status_code == 400
    assert page_problem(past.text) == "2001-01-01 is already past: give a later date"
    pause = logged_in.form("/console/actions", "/console/do/pause", customer="cus_done")
    assert logged_in.submit(pause, customer="  ").status_code == 400
    pause = logged_in.form("/console/actions", "/console/do/pause", customer="cus_done")
    assert logged_in.submit(pause, reason="bad\x00reason").status_code == 400
    retry = logged_in.form("/console/actions", "/console/do/retry")
    answer = logged_in.submit(retry, intent_id="99999")
    assert answer.status_code == 400
    assert page_problem(answer.text).startswith("no intent #99999")
    with read_session(console_rt.engine) as session:
        assert session.scalars(select(OperatorAction)).all() == []
        assert session.get(CustomerControl, "cus_done") is None


def test_retry_re_queues_the_intent_under_review(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    html = logged_in.get("/console/actions").text
    review = _cell(html, r'(<section class="kind" id="needs_review">.*?</section>)')
    assert "cus_stuck" in review
    assert "5 unknown outcomes" in review
    retry = logged_in.form("/console/actions", "/console/do/retry")
    intent_id = int(retry.fields["intent_id"])
    answer = logged_in.submit(retry, reason="checked Lago: no request there")
    assert answer.headers["location"] == "/console/customers/cus_stuck"
    with reading(console_rt.engine) as session:
        timeline = customer_timeline(session, "cus_stuck", now=CONSOLE_NOW)
        intent = session.get(PaymentRequestIntent, intent_id)
    assert intent is not None
    assert intent.status == "pending"
    (event,) = [event for event in timeline.events if event.kind == "action"]
    assert event.title == f"retry by {CONSOLE_USER} (console)"
    assert event.detail == "why: checked Lago: no request there · re-queued from needs_review"
    assert "Nothing needs a human" not in logged_in.get("/console/actions").text
    assert (
        'id="needs_review">\n<h2>Needs review <span class="count">0'
        in logged_in.get("/console/actions").text
    )


def test_the_next_sweep_page_lists_what_will_be_asked(logged_in: ConsoleClient) -> None:
    html = logged_in.get("/console/next-sweep").text
    assert "Scheduled at 2026-11-20 12:15 UTC" in html
    totals = _text(_cell(html, r'(<table id="next-totals">.*?</table>)'))
    assert totals.endswith("USD 1 66.00")
    asks = _text(_cell(html, r'(<table id="asks">.*?</table>)'))
    assert "cus_next USD new attempt 2026-11-20 12:02 UTC 66.00 USD standard" in asks
    outlook = re.findall(
        r"<tr class=\"kind-.*?</tr>", _cell(html, r'(<table id="outlook">.*?</table>)'), re.S
    )
    assert [_text(row) for row in outlook] == [
        "cus_next USD 66.00 USD wait: too_soon asked at the next sweep",
        "cus_done USD 77.00 USD exhausted: max_attempts_reached no more attempts",
    ]


@pytest.fixture
def policy_file(tmp_path: Path, sandbox: SandboxHandle) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(
        f"# the API key is {sandbox.api_key} (it must never reach a page)\n"
        "version: 1\npolicies:\n  - name: everyone\n    min_overdue_cents: {USD: 100}\n"
        "    max_attempts: 3\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def secret_console(
    sqlite_url: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
    console_clock: Clock,
    policy_file: Path,
) -> Iterator[tuple[ConsoleClient, Runtime]]:
    for runtime in console_runtime(
        sqlite_url,
        sandbox,
        tmp_path,
        console_clock,
        **console_settings(webhook_hmac_key=HMAC_KEY, policy_file=policy_file),
    ):
        report_scenario(runtime.engine, now=CONSOLE_NOW)
        with ConsoleClient(create_app(runtime)) as client:
            assert client.login().status_code == 303
            yield client, runtime


def test_the_policies_page_renders_the_file_and_its_status(
    secret_console: tuple[ConsoleClient, Runtime], policy_file: Path
) -> None:
    client, _ = secret_console
    html = client.get("/console/policies").text
    assert _cell(html, r'<p class="ok" id="policy-status" data-valid="true">(.*?)</p>').startswith(
        "Valid: 1 policy"
    )
    assert "everyone" in _text(_cell(html, r'(<table id="policies">.*?</table>)'))
    assert "3" in _text(_cell(html, r'(<table id="policies">.*?</table>)'))
    policy_file.write_text("version: 1\npolicies: [{name: x}]\n", encoding="utf-8")
    broken = client.get("/console/policies")
    assert broken.status_code == 200
    status = _cell(broken.text, r'id="policy-status" data-valid="false" role="alert">(.*?)</p>')
    assert status.startswith("Invalid: ")
    assert "\n" not in status
    assert "min_overdue_cents" in status
    assert "policies: [{name: x}]" in broken.text  # the file as written, to fix it


def test_no_page_ever_contains_a_configured_secret(
    secret_console: tuple[ConsoleClient, Runtime], sandbox: SandboxHandle
) -> None:
    client, runtime = secret_console
    settings = runtime.settings
    assert settings.console_password_hash is not None
    assert settings.console_secret_key is not None
    secrets = [
        sandbox.api_key,
        HMAC_KEY,
        settings.console_password_hash.get_secret_value(),
        settings.console_secret_key.get_secret_value(),
    ]
    pages = [*CONSOLE_PAGES, "/console/do-not-exist"]
    bodies = [client.get(path).text for path in pages]
    form = client.form("/console/actions", "/console/do/retry")
    bodies.append(client.submit(form).text)
    bodies.append(client.submit(form).text)  # the 409 page
    client.cookies.clear()
    bodies.append(client.get("/console/login").text)
    bodies.append(client.login(password="wrong password here").text)
    assert (
        "[hidden] (it must never reach a page)" in bodies[CONSOLE_PAGES.index("/console/policies")]
    )
    for body in bodies:
        for secret in secrets:
            assert secret not in body


def test_no_retry_button_while_a_newer_intent_of_the_group_is_open(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    newer = add_intent_row(
        console_rt.engine,
        customer="cus_stuck",
        status="pending",
        amount=8_800,
        sent_at=CONSOLE_NOW,
        group_key="cus_stuck|USD|-",
    )
    for page in ("/console/actions", "/console/customers/cus_stuck"):
        html = logged_in.get(page).text
        assert 'action="/console/do/retry"' not in html, page
        assert f"intent #{newer} is open for this group: retry once it is settled" in html


def test_a_ledger_that_cannot_be_reached_is_a_clear_page_not_a_500(console_rt: Runtime) -> None:
    unreachable = make_engine("postgresql+psycopg://dunning@127.0.0.1:1/nowhere")
    runtime = dataclasses.replace(console_rt, engine=unreachable)
    try:
        with ConsoleClient(create_app(runtime)) as client:
            assert client.login().status_code == 303
            page = client.get("/console/actions")
            assert page.status_code == 503
            assert page_problem(page.text) == "the ledger is unavailable right now"
            form = client.form("/console/login", "/console/logout")  # any page has forms
            answer = client.post(
                "/console/do/pause",
                data={**form.fields, "form_nonce": _nonce_for(client), "customer": "cus_done"},
                follow_redirects=False,
            )
            assert answer.status_code == 503
            assert page_problem(answer.text) == "the ledger is unavailable: nothing was changed"
    finally:
        unreachable.dispose()


def _nonce_for(client: ConsoleClient) -> str:
    """A genuine one-time token of this client's session (as a page would have drawn it)."""
    settings = console_settings()
    keys = SessionKeys(
        password_hash=settings["console_password_hash"],
        secret_key=settings["console_secret_key"],
    )
    session = keys.decode(client.cookies[COOKIE_NAME], now=CONSOLE_NOW)
    assert session is not None
    return keys.form_nonce(session)
