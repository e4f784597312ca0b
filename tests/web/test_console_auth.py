"""The console's locks: off by default, login, signed cookies, CSRF, one-time forms, secrets.

Every read-only page and every action is tried without a cookie, with a forged one, with an
expired one; every action without a CSRF token, with another session's, and replayed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from tests.fixtures.console import (
    CONSOLE_NOW as NOW,
)
from tests.fixtures.console import (
    CONSOLE_PAGES,
    CONSOLE_PASSWORD,
    CONSOLE_SECRET_KEY,
    CONSOLE_USER,
    Clock,
    ConsoleClient,
    console_hash,
    console_runtime,
    page_problem,
)
from tests.fixtures.sandbox import SandboxHandle
from worker.services.runtime import Runtime
from worker.store.db import read_session
from worker.store.models import CustomerControl, OperatorAction
from worker.web.app import create_app
from worker.web.console.sessions import COOKIE_NAME, Session, SessionKeys

PAGES = CONSOLE_PAGES
ACTIONS = {
    "/console/do/pause": {"customer": "cus_stuck", "reason": "disputing"},
    "/console/do/resume": {"customer": "cus_stuck"},
    "/console/do/retry": {"intent_id": "1"},
}


def _actions(rt: Runtime) -> int:
    with read_session(rt.engine) as session:
        return int(session.scalar(select(func.count()).select_from(OperatorAction)) or 0)


def _paused(rt: Runtime, customer: str) -> bool:
    with read_session(rt.engine) as session:
        row = session.get(CustomerControl, customer)
        return bool(row and row.paused)


def test_the_console_is_off_without_a_password_hash(
    sqlite_url: str, sandbox: SandboxHandle, tmp_path: Path, console_clock: Clock
) -> None:
    for runtime in console_runtime(sqlite_url, sandbox, tmp_path, console_clock):
        with ConsoleClient(create_app(runtime)) as client:
            for path in [*PAGES, "/console/login", "/console/static/console.css"]:
                assert client.get(path).status_code == 404, path
            for path, fields in ACTIONS.items():
                assert client.post(path, data=fields).status_code == 404, path
            assert client.get("/healthz").status_code == 200


def test_every_page_without_a_session_goes_to_the_login_form(console: ConsoleClient) -> None:
    for path in PAGES:
        answer = console.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next=/console/"), path
        assert "Overdue" not in answer.text


def test_every_action_without_a_session_is_refused_and_changes_nothing(
    console: ConsoleClient, console_rt: Runtime
) -> None:
    for path, fields in ACTIONS.items():
        answer = console.post(path, data=fields, follow_redirects=False)
        assert answer.status_code == 403, path
        assert page_problem(answer.text) == "log in first"
    assert _actions(console_rt) == 0
    assert not _paused(console_rt, "cus_stuck")


def _forged_cookies(logged_in: ConsoleClient) -> list[str]:
    genuine = logged_in.cookies[COOKIE_NAME]
    payload, signature = genuine.split(".")
    other_key = SessionKeys(password_hash=console_hash(), secret_key="another-" + "k" * 40)
    someone = Session("0" * 32, "Mallory", NOW + timedelta(hours=1))
    return [
        f"{payload}.{signature[:-2]}AA",  # a changed signature
        f"{payload[:-2]}xx.{signature}",  # a changed payload
        other_key.encode(someone),  # signed with another key
        "garbage",
        f"{payload}.",
    ]


def test_a_forged_cookie_is_no_session(logged_in: ConsoleClient, console_rt: Runtime) -> None:
    for forged in _forged_cookies(logged_in):
        logged_in.cookies.clear()
        logged_in.cookies.set(COOKIE_NAME, forged, path="/console")
        for path in PAGES:
            answer = logged_in.get(path, follow_redirects=False)
            assert answer.status_code == 303, (forged, path)
        for path, fields in ACTIONS.items():
            answer = logged_in.post(path, data=fields, follow_redirects=False)
            assert answer.status_code == 403, (forged, path)
    assert _actions(console_rt) == 0


def test_an_expired_session_is_logged_out(logged_in: ConsoleClient, console_clock: Clock) -> None:
    assert logged_in.get("/console/actions", follow_redirects=False).status_code == 200
    console_clock.now = NOW + timedelta(hours=12, seconds=1)
    assert logged_in.get("/console/actions", follow_redirects=False).status_code == 303


def test_a_new_password_hash_logs_everyone_out(logged_in: ConsoleClient) -> None:
    genuine = logged_in.cookies[COOKIE_NAME]
    same = SessionKeys(password_hash=console_hash(), secret_key=CONSOLE_SECRET_KEY)
    other = SessionKeys(password_hash=console_hash() + "x", secret_key=CONSOLE_SECRET_KEY)
    assert same.decode(genuine, now=NOW) is not None
    assert other.decode(genuine, now=NOW) is None


def test_the_session_cookie_is_httponly_samesite_strict_and_scoped(
    console: ConsoleClient,
) -> None:
    answer = console.login()
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http (a local test): the browser would drop it


def test_over_https_the_cookie_is_secure(console_rt: Runtime) -> None:
    with ConsoleClient(create_app(console_rt), base_url="https://console.example") as client:
        cookie = client.login().headers["set-cookie"]
    assert "Secure" in cookie


def test_a_login_starts_a_new_session_id(console: ConsoleClient) -> None:
    console.get("/console/login")
    keys = SessionKeys(password_hash=console_hash(), secret_key=CONSOLE_SECRET_KEY)
    before = keys.decode(console.cookies[COOKIE_NAME], now=NOW)
    console.login()
    after = keys.decode(console.cookies[COOKIE_NAME], now=NOW)
    assert before is not None
    assert after is not None
    assert before.user is None
    assert after.user == CONSOLE_USER
    assert before.sid != after.sid


def test_a_wrong_password_is_refused_then_the_address_is_locked_out(
    console: ConsoleClient,
) -> None:
    for _ in range(5):
        answer = console.login(password="not the password")
        assert answer.status_code == 401
        assert "wrong password" in answer.text
    assert console.login().status_code == 429  # even the right one, for a while
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_login_without_its_csrf_token_is_refused(console: ConsoleClient) -> None:
    console.get("/console/login")
    answer = console.post(
        "/console/login",
        data={"name": CONSOLE_USER, "password": CONSOLE_PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert COOKIE_NAME not in answer.headers.get("set-cookie", "")


def test_login_never_sends_you_to_another_site(console: ConsoleClient) -> None:
    page = console.get("/console/login?next=//evil.example/x")
    assert "evil.example" not in page.text
    for target in ("//evil.example", "https://evil.example", "/console//evil.example"):
        console.cookies.clear()
        form = console.form("/console/login", "/console/login")
        answer = console.submit(form, next=target, name=CONSOLE_USER, password=CONSOLE_PASSWORD)
        assert answer.headers["location"] == "/console/", target


def test_an_action_without_a_csrf_token_is_refused(
    logged_in: ConsoleClient, console_rt: Runtime
) -> None:
    form = logged_in.form("/console/customers/cus_stuck", "/console/do/pause")
    for broken in ({"csrf_token": ""}, {"csrf_token": "x" * 43}):
        answer = logged_in.submit(form, **broken, reason="disputing")
        assert answer.status_code == 403
        assert "security token is missing or wrong" in page_problem(answer.text)
    without = {k: v for k, v in form.fields.items() if k != "csrf_token"}
    answer = logged_in.post(form.action, data=without, follow_redirects=False)
    assert answer.status_code == 403
    assert not _paused(console_rt, "cus_stuck")
    assert _actions(console_rt) == 0


def test_another_sessions_tokens_do_not_work(console_rt: Runtime, logged_in: ConsoleClient) -> None:
    with ConsoleClient(create_app(console_rt)) as other:
        other.login(name="Bob")
        theirs = other.form("/console/customers/cus_stuck", "/console/do/pause")
    answer = logged_in.submit(theirs, reason="x")  # our cookie, their form
    assert answer.status_code == 403
    ours = logged_in.form("/console/customers/cus_stuck", "/console/do/pause")
    answer = logged_in.submit(ours, form_nonce=theirs.fields["form_nonce"])
    assert answer.status_code == 403
    assert "one-time token" in page_problem(answer.text)
    assert _actions(console_rt) == 0


def test_a_replayed_form_applies_once(logged_in: ConsoleClient, console_rt: Runtime) -> None:
    pause = logged_in.form("/console/customers/cus_stuck", "/console/do/pause")
    first = logged_in.submit(pause, reason="disputing")
    assert first.status_code == 303
    assert _paused(console_rt, "cus_stuck")
    resume = logged_in.form("/console/customers/cus_stuck", "/console/do/resume")
    assert logged_in.submit(resume).status_code == 303
    assert not _paused(console_rt, "cus_stuck")

    again = logged_in.submit(pause, reason="disputing")  # the same pause form, posted again
    assert again.status_code == 409
    assert "already submitted" in page_problem(again.text)
    assert not _paused(console_rt, "cus_stuck")
    assert logged_in.submit(resume).status_code == 409
    assert _actions(console_rt) == 2


def test_a_replayed_retry_re_queues_once(logged_in: ConsoleClient, console_rt: Runtime) -> None:
    retry = logged_in.form("/console/actions", "/console/do/retry")
    assert logged_in.submit(retry).status_code == 303
    assert logged_in.submit(retry).status_code == 409
    with read_session(console_rt.engine) as session:
        rows = session.scalars(select(OperatorAction)).all()
    assert [(row.action, row.intent_id) for row in rows] == [
        ("retry", int(retry.fields["intent_id"]))
    ]


def test_logout_needs_its_token_and_ends_the_session(logged_in: ConsoleClient) -> None:
    assert logged_in.post("/console/logout", follow_redirects=False).status_code == 403
    form = logged_in.form("/console/", "/console/logout")
    assert logged_in.submit(form).status_code == 303
    assert logged_in.get("/console/", follow_redirects=False).status_code == 303


def test_pages_carry_strict_security_headers(logged_in: ConsoleClient) -> None:
    for path in PAGES:
        headers = logged_in.get(path).headers
        assert headers["cache-control"] == "no-store", path
        assert "default-src 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY", path
