"""`dunning serve`: receive Lago webhooks and expose /metrics and /healthz.

Point a Lago webhook endpoint at `http://HOST:PORT/webhooks/lago`. JWT-signed webhooks are
checked with the key from Lago (`GET /api/v1/webhooks/json_public_key`, cached); HMAC-signed
ones need `DUNNING_WEBHOOK_HMAC_KEY` (Lago's "HMAC Signature Token", not the API key).
"""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.common import cli_runtime, cli_settings
from worker.cli.errors import EXIT_USAGE, fail


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8080,
) -> None:
    """Serve Lago webhooks (POST /webhooks/lago), Prometheus /metrics and /healthz."""
    import uvicorn

    from worker.logging import get_logger
    from worker.web.app import WEBHOOK_PATH, create_app

    if not 0 < port < 65536:
        fail(f"invalid --port {port}: use 1-65535", exit_code=EXIT_USAGE)
    settings = cli_settings()
    rt = cli_runtime(settings)
    log = get_logger(__name__)
    try:
        app = create_app(rt)
        log.info(
            "serving",
            url=f"http://{host}:{port}{WEBHOOK_PATH}",
            hmac_key_set=settings.webhook_hmac_key is not None,
        )
        try:
            uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    finally:
        rt.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
