"""The ASGI application: Lago API routes behind a front door that counts requests,
injects faults, checks the Bearer key and rate-limits, plus the `/_sandbox` control plane."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api import LagoApi, json_response
from sandbox.control import ControlError, ControlPlane, control_error_response
from sandbox.errors import (
    ApiError,
    internal_error,
    route_not_found,
    too_many_requests,
    unauthorized,
)
from sandbox.state import SandboxState

API_PREFIX = "/api/"
UNMATCHED = "<unmatched>"


def build_app(state: SandboxState) -> ASGIApp:
    api = LagoApi(state)
    control = ControlPlane(state)
    starlette = Starlette(
        routes=[*api.routes(), *control.routes()],
        exception_handlers={
            ApiError: _api_error,
            ControlError: _control_error,
            HTTPException: _http_exception,
        },
    )
    return FrontDoor(starlette, state, api.routes())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.body, exc.status)


async def _control_error(request: Request, exc: Exception) -> Response:
    return control_error_response(str(exc))


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Rails answers any unrouted method/path with a plain JSON 404.
    return json_response(route_not_found().body, 404)


class FrontDoor:
    """Pure ASGI middleware for `/api/*`: stats, latency, random 500s, auth, rate limit."""

    def __init__(self, app: ASGIApp, state: SandboxState, api_routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.api_routes = api_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        endpoint = f"{scope['method']} {self._template(scope)}"
        extra_headers: list[tuple[bytes, bytes]] = []
        generation = self.state.stats_generation

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if generation == self.state.stats_generation:
                    self.state.stats[(endpoint, message["status"])] += 1
                if extra_headers:
                    message = {**message, "headers": [*message["headers"], *extra_headers]}
            await send(message)

        early = await self._gatekeeper(scope, endpoint, extra_headers)
        if early is not None:
            await early(scope, receive, counting_send)
            return
        await self.app(scope, receive, counting_send)

    async def _gatekeeper(
        self, scope: Scope, endpoint: str, extra_headers: list[tuple[bytes, bytes]]
    ) -> Response | None:
        injector = self.state.injector
        delay = injector.latency_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        if endpoint.endswith(UNMATCHED):
            return json_response(route_not_found().body, 404)
        if injector.should_fail():
            return json_response(internal_error().body, 500)
        if not self._authorized(scope):
            return json_response(unauthorized().body, 401)
        decision = injector.rate_limit()
        if decision is not None:
            extra_headers.extend(
                (name.lower().encode(), value.encode())
                for name, value in decision.headers().items()
            )
            if not decision.allowed:
                return json_response(too_many_requests().body, 429)
        return None

    def _template(self, scope: Scope) -> str:
        for route in self.api_routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", scope["path"]))
        return UNMATCHED

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        parts = header.decode("latin-1").split()
        token = parts[1] if len(parts) >= 2 else ""
        return hmac.compare_digest(token.encode(), self.state.options.api_key.encode())
