"""The console's three actions, each the same service the CLI calls:

    POST /console/do/pause   customer, reason, until (optional date)  -> pause_customer
    POST /console/do/resume  customer                                  -> resume_customer
    POST /console/do/retry   intent_id, reason                         -> retry_intent

The actor is the name given at login; the form's one-time nonce goes into the ledger with
the action, so a replayed form is refused (409) before it changes anything. A re-queued
intent is sent by the workers' next reconcile pass or sweep (the console sends nothing
itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from worker.logging import get_logger
from worker.services.operator import Actor, customer_id_problem, text_problem
from worker.services.pause_customer import PauseError, parse_hold_end, pause_customer
from worker.services.resume_customer import resume_customer
from worker.services.retry_intent import RetryError, retry_intent
from worker.store.errors import StoreError
from worker.store.operator_actions import ReplayedFormError
from worker.web.console.csrf import CheckedForm, ForbiddenError, checked_form

if TYPE_CHECKING:
    from worker.web.console.app import Console

log = get_logger(__name__)
MAX_REASON_LENGTH = 500
MAX_INTENT_ID = 2**63 - 1


class InvalidInputError(Exception):
    """A field cannot be used (400). `str()` is one line."""


def _customer(form: CheckedForm) -> str:
    customer = form.text("customer")
    problem = customer_id_problem(customer)
    if problem is not None:
        raise InvalidInputError(problem)
    return customer


def _reason(form: CheckedForm) -> str | None:
    reason = form.text("reason")[:MAX_REASON_LENGTH] or None
    problem = None if reason is None else text_problem("reason", reason)
    if problem is not None:
        raise InvalidInputError(problem)
    return reason


def _intent_id(form: CheckedForm) -> int:
    text = form.text("intent_id")
    if not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_INTENT_ID:
        raise InvalidInputError("intent id must be a positive whole number")
    return int(text)


def timeline_url(prefix: str, customer: str) -> str:
    return f"{prefix}/customers/{quote(customer, safe='')}"


class Operations:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def _act(self, request: Request, apply: Callable[[CheckedForm, Actor], str]) -> Response:
        """Check the session and the form, run `apply` (it returns where to go next)."""
        console = self.console
        session = console.session_of(request)
        if session is None or session.user is None:
            return console.problem(request, 403, "log in first", session=session)
        try:
            form = await checked_form(request, console.keys, session, needs_nonce=True)
        except ForbiddenError as exc:
            return console.problem(request, 403, str(exc), session=session)
        actor = Actor(name=session.user, source="console", form_nonce=form.nonce)
        try:
            target = await run_in_threadpool(apply, form, actor)
        except ReplayedFormError:
            return console.problem(
                request,
                409,
                "this form was already submitted once: nothing was done again",
                session=session,
            )
        except (InvalidInputError, PauseError, RetryError) as exc:
            return console.problem(request, 400, str(exc), session=session)
        except StoreError as exc:
            log.error("console action failed", reason=str(exc))
            return console.problem(
                request, 503, "the ledger is unavailable: nothing was changed", session=session
            )
        return RedirectResponse(target, status_code=303)

    async def pause(self, request: Request) -> Response:
        def apply(form: CheckedForm, actor: Actor) -> str:
            customer = _customer(form)
            now = self.console.now()
            until_text = form.text("until")
            until = parse_hold_end(until_text, now) if until_text else None
            pause_customer(
                self.console.rt.engine,
                external_customer_id=customer,
                reason=_reason(form),
                until=until,
                now=now,
                actor=actor,
            )
            log.info("console pause", user=actor.name, customer=customer)
            return timeline_url(self.console.prefix, customer)

        return await self._act(request, apply)

    async def resume(self, request: Request) -> Response:
        def apply(form: CheckedForm, actor: Actor) -> str:
            customer = _customer(form)
            resume_customer(
                self.console.rt.engine,
                external_customer_id=customer,
                now=self.console.now(),
                actor=actor,
            )
            log.info("console resume", user=actor.name, customer=customer)
            return timeline_url(self.console.prefix, customer)

        return await self._act(request, apply)

    async def retry(self, request: Request) -> Response:
        def apply(form: CheckedForm, actor: Actor) -> str:
            requeued = retry_intent(
                self.console.rt.engine,
                intent_id=_intent_id(form),
                now=self.console.now(),
                actor=actor,
                reason=_reason(form),
            )
            log.info("console retry", user=actor.name, intent_id=requeued.intent_id)
            return timeline_url(self.console.prefix, requeued.external_customer_id)

        return await self._act(request, apply)
