"""The HTTP face of `dunning serve`: Lago webhooks, Prometheus metrics, a health check.

    POST /webhooks/lago   verify the signature, dedupe by X-Lago-Unique-Key and by the digest
                          of the signed body (the key is not signed), apply at once
    GET  /metrics         Prometheus text exposition (ledger gauges read on each scrape)
    GET  /healthz         200 when the state database answers, 503 otherwise
    /console/...          the ops console (worker/web/console), only when
                          DUNNING_CONSOLE_PASSWORD_HASH is set: otherwise a 404

Answers to Lago: 200 processed, duplicate or ignored (unknown type); 400 malformed body;
401 unsigned or forged; 413 too large; 503 when we cannot decide now (public key or database
unavailable), so Lago retries later. Logs never contain the body or the signature.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from config.cron import parse_cron
from worker import metrics
from worker.logging import get_logger
from worker.metrics_ledger import LedgerCollector, single_process_registry
from worker.services.apply_webhook import apply_webhook
from worker.services.runtime import Runtime
from worker.services.webhook_envelope import WebhookPayloadError, parse_envelope
from worker.store.db import read_session
from worker.store.errors import StoreError
from worker.store.webhook_events import payload_digest
from worker.web.console.app import console_mount
from worker.web.signatures import (
    PublicKeyCache,
    PublicKeyUnavailableError,
    SignatureError,
    verify_signature,
)

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/lago"


class BodyTooLargeError(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError
    return bytes(body)


def _answer(status: int, result: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"result": result, **extra}, status_code=status)


def create_app(
    rt: Runtime,
    *,
    issuer: str | None = None,
    public_keys: PublicKeyCache | None = None,
) -> Starlette:
    """Build the app. `issuer` is the JWT `iss` Lago signs with (default: the Lago URL)."""
    settings = rt.settings
    expected_issuer = issuer or rt.client.base_url
    keys = public_keys or PublicKeyCache(rt.client.get_webhook_public_key)
    limit = settings.webhook_max_body_bytes

    async def webhook(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        try:
            body = await read_body(request, limit)
        except BodyTooLargeError:
            log.warning("webhook rejected", reason="body too large", limit=limit, peer=client)
            metrics.record_webhook("unverified", "rejected")
            return _answer(413, "rejected", error="body too large")
        try:
            algorithm = await run_in_threadpool(
                verify_signature,
                body,
                algorithm_header=request.headers.get("x-lago-signature-algorithm"),
                signature_header=request.headers.get("x-lago-signature"),
                hmac_key=settings.webhook_hmac_key,
                public_keys=keys,
                issuer=expected_issuer,
            )
        except SignatureError as exc:
            log.warning("webhook rejected", reason=str(exc), peer=client)
            metrics.record_webhook("unverified", "rejected")
            return _answer(401, "rejected", error="invalid signature")
        except PublicKeyUnavailableError as exc:
            log.error("webhook not verified", reason=str(exc), peer=client)
            return _answer(503, "retry", error="cannot verify the signature now")
        unique_key = request.headers.get("x-lago-unique-key", "").strip()
        try:
            payload = parse_envelope(body)
            if not unique_key:
                raise WebhookPayloadError("missing X-Lago-Unique-Key header")
            outcome = await run_in_threadpool(
                apply_webhook,
                rt,
                unique_key=unique_key,
                payload_digest=payload_digest(body),
                payload=payload,
            )
        except WebhookPayloadError as exc:
            log.warning("webhook rejected", reason=str(exc), unique_key=unique_key or None)
            metrics.record_webhook("unverified", "malformed")
            return _answer(400, "rejected", error=str(exc))
        except StoreError as exc:
            log.error("webhook not applied", reason=str(exc), unique_key=unique_key)
            return _answer(503, "retry", error="the ledger is unavailable")
        metrics.record_webhook(outcome.webhook_type, outcome.result)
        log.info(
            "webhook received",
            unique_key=unique_key,
            webhook_type=outcome.webhook_type,
            algorithm=algorithm.value,
            result=outcome.result,
        )
        return _answer(200, outcome.result)

    ledger = LedgerCollector(lambda: rt.engine, rt.clock, parse_cron(rt.policies.cron))
    exposed = single_process_registry(ledger)

    async def metrics_endpoint(request: Request) -> Response:
        # Collecting reads the ledger: off the event loop.
        payload, content_type = await run_in_threadpool(metrics.render_latest, exposed)
        return Response(payload, media_type=content_type)

    def database_answers() -> None:
        with read_session(rt.engine) as session:
            session.execute(text("SELECT 1"))

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(database_answers)
        except Exception as exc:
            log.warning("health check failed", reason=type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    routes: list[BaseRoute] = [
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    console = console_mount(rt)
    if console is not None:
        routes.append(console)
    return Starlette(routes=routes)
