"""The console's routes, mounted at /console in `dunning serve` (only when a password hash is
set: otherwise no route exists and every /console URL is a 404).

    GET  /console/                  overview
    GET  /console/customers?q=...   search; /console/customers/{id}: one customer's timeline
    GET  /console/next-sweep        what the next sweep is expected to ask
    GET  /console/actions           who needs a human, with Retry / Pause / Resume
    GET  /console/policies          the active policy file and whether it loads
    POST /console/do/{pause,resume,retry}
    GET|POST /console/login, POST /console/logout

A page asked for without a session redirects to the login form; a POST without one, or
without the right CSRF token, is a 403 page; a replayed form is a 409 page. Every page is
scrubbed of the configured secrets before it leaves, and is never cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session as DbSession
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from worker.logging import get_logger
from worker.read import reading
from worker.services.report import next_sweep_at
from worker.services.report_format import format_cents, format_money, format_rate, format_time
from worker.services.runtime import Runtime
from worker.store.errors import StoreError
from worker.web.console import auth, operations
from worker.web.console.csrf import ForbiddenError, checked_form, form_tokens
from worker.web.console.pages import actions, customers, next_sweep, overview, policies
from worker.web.console.passwords import check_hash, verify_password
from worker.web.console.sessions import COOKIE_NAME, Session, SessionKeys

log = get_logger(__name__)

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HIDDEN = "[hidden]"

Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """Holds what every request needs: the runtime, the keys, the templates, the throttle."""

    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        assert settings.console_password_hash is not None
        self.password_hash = settings.console_password_hash.get_secret_value()
        check_hash(self.password_hash)  # a damaged hash fails `dunning serve` at start
        secret = settings.console_secret_key
        self.keys = SessionKeys(
            password_hash=self.password_hash,
            secret_key=secret.get_secret_value() if secret is not None else None,
        )
        self.rt = rt
        self.prefix = PREFIX
        self.lifetime = timedelta(hours=settings.console_session_hours)
        self.throttle = auth.LoginThrottle()
        self.secrets = tuple(value for value in settings.secret_values() if len(value) >= 4)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            money=format_money,
            cents=format_cents,
            rate=format_rate,
            time=format_time,
            segment=lambda value: quote(str(value), safe=""),
        )

    # -- sessions and pages ------------------------------------------------------------

    def now(self) -> datetime:
        return self.rt.clock()

    def session_of(self, request: Request) -> Session | None:
        return self.keys.decode(request.cookies.get(COOKIE_NAME), now=self.now())

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        session: Session | None,
        status: int = 200,
    ) -> HTMLResponse:
        def tokens() -> dict[str, str]:  # a fresh nonce for every form drawn
            return form_tokens(self.keys, session) if session is not None else {}

        page = self.templates.get_template(template).render(
            **context,
            prefix=PREFIX,
            user=session.user if session else None,
            form_tokens=tokens,
            current_path=request.url.path,
        )
        for secret in self.secrets:  # defence in depth: nothing configured as secret leaves
            page = page.replace(secret, HIDDEN)
        response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
        if session is not None and request.cookies.get(COOKIE_NAME) is None:
            self.set_cookie(request, response, session)
        return response

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        secure = self.rt.settings.console_secure_cookie
        response.set_cookie(
            COOKIE_NAME,
            self.keys.encode(session),
            max_age=int(self.lifetime.total_seconds()),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https" if secure is None else secure,
        )

    def problem(
        self, request: Request, status: int, message: str, *, session: Session | None
    ) -> HTMLResponse:
        return self.render(
            request,
            "problem.html",
            {"status": status, "message": message},
            session=session,
            status=status,
        )

    async def read(self, build: Callable[[DbSession], dict[str, Any]]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with reading(self.rt.engine) as db:
                return build(db)

        return await run_in_threadpool(run)

    def page(self, template: str, build: Callable[[Request, DbSession], dict[str, Any]]) -> Handler:
        """A read-only page behind the login."""

        async def handler(request: Request) -> Response:
            session = self.session_of(request)
            if session is None or not session.logged_in:
                target = quote(str(request.url.path), safe="/")
                return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
            try:
                context = await self.read(lambda db: build(request, db))
            except StoreError as exc:
                log.error("console page failed", page=template, reason=str(exc))
                return self.problem(
                    request, 503, "the ledger is unavailable right now", session=session
                )
            return self.render(request, template, context, session=session)

        return handler

    # -- login -------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        session = self.session_of(request) or self.keys.new_session(
            user=None, now=self.now(), lifetime=self.lifetime
        )
        response = self.render(
            request,
            "login.html",
            {"next": _safe_next(request.query_params.get("next"))},
            session=session,
        )
        self.set_cookie(request, response, session)
        return response

    async def login(self, request: Request) -> Response:
        session = self.session_of(request)
        client = request.client.host if request.client else "?"
        now = self.now()
        if session is None:
            return self.problem(
                request, 403, "your login form expired: open the login page again", session=None
            )
        try:
            form = await checked_form(request, self.keys, session, needs_nonce=False)
        except ForbiddenError as exc:
            return self.problem(request, 403, str(exc), session=session)
        locked = self.throttle.locked_until(client, now)
        if locked is not None:
            log.warning("console login refused", reason="too many failures", peer=client)
            return self.problem(
                request,
                429,
                f"too many failed logins: try again after {format_time(locked)}",
                session=session,
            )
        name = auth.operator_name(form.text("name"))
        password = form.fields.get("password", "")
        good = await run_in_threadpool(verify_password, password, self.password_hash)
        if not good or name is None:
            self.throttle.failed(client, now)
            log.warning("console login failed", peer=client)
            message = "enter your name" if good else "wrong password"
            return self.render(
                request,
                "login.html",
                {"next": _safe_next(form.text("next")), "error": message},
                session=session,
                status=401,
            )
        self.throttle.succeeded(client)
        fresh = self.keys.new_session(user=name, now=now, lifetime=self.lifetime)
        log.info("console login", user=name, peer=client)
        response = RedirectResponse(_safe_next(form.text("next")), status_code=303)
        self.set_cookie(request, response, fresh)
        return response

    async def logout(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        try:
            await checked_form(request, self.keys, session, needs_nonce=False)
        except ForbiddenError as exc:
            return self.problem(request, 403, str(exc), session=session)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=PREFIX)
        return response

    # -- routes --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        settings = self.rt.settings

        def overview_page(request: Request, db: DbSession) -> dict[str, Any]:
            return overview.overview(db, now=self.now())

        def search_page(request: Request, db: DbSession) -> dict[str, Any]:
            return customers.search(db, query=request.query_params.get("q", "")[:255])

        def customer_page(request: Request, db: DbSession) -> dict[str, Any]:
            customer = str(request.path_params["customer"])
            return customers.timeline(db, customer=customer, now=self.now())

        def next_sweep_page(request: Request, db: DbSession) -> dict[str, Any]:
            now = self.now()
            return next_sweep.planned(db, at=next_sweep_at(settings, now), now=now)

        def actions_page(request: Request, db: DbSession) -> dict[str, Any]:
            return actions.to_do(db, now=self.now())

        def policies_page(request: Request, db: DbSession) -> dict[str, Any]:
            return policies.active_policies(settings.policy_file)

        do = operations.Operations(self)
        return [
            Route("/", self.page("overview.html", overview_page)),
            Route("/customers", self.page("customers.html", search_page)),
            Route("/customers/{customer:path}", self.page("customer.html", customer_page)),
            Route("/next-sweep", self.page("next_sweep.html", next_sweep_page)),
            Route("/actions", self.page("actions.html", actions_page)),
            Route("/policies", self.page("policies.html", policies_page)),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/do/pause", do.pause, methods=["POST"]),
            Route("/do/resume", do.resume, methods=["POST"]),
            Route("/do/retry", do.retry, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="console-static"),
        ]


def _safe_next(target: str | None) -> str:
    """Only paths inside the console (never another site: no scheme, no //host)."""
    inside = bool(target) and str(target).startswith(f"{PREFIX}/")
    if inside and target is not None and "\\" not in target and "//" not in target:
        return target
    return f"{PREFIX}/"


def console_mount(rt: Runtime) -> Mount | None:
    """The /console mount, or None when no password hash is set (the console is off)."""
    if rt.settings.console_password_hash is None:
        return None
    return Mount(PREFIX, routes=Console(rt).routes())
