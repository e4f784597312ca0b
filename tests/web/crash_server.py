"""`dunning serve` whose webhook handling crashes with a customer's email and the settings'
secrets in local variables, for the log tests:

    python -m tests.web.crash_server serve --port PORT

Everything is the real command (settings, logging, uvicorn, the app) except the service the
app calls for a verified webhook, replaced by one that raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from worker.cli import serve_cmd
from worker.cli.errors import run_cli
from worker.services.runtime import Runtime
from worker.web import app as web_app

CRASH_MESSAGE = "crash for the log test"


def crash(rt: Runtime, *, unique_key: str, payload_digest: str, payload: Mapping[str, Any]) -> None:
    customer_email = payload["invoice"]["customer"]["email"]
    database_url = rt.settings.resolved_database_url
    api_key = rt.settings.lago_api_key.get_secret_value()
    raise RuntimeError(f"{CRASH_MESSAGE} ({len(customer_email + database_url + api_key)})")


def main() -> None:
    web_app.apply_webhook = crash  # type: ignore[assignment]
    app = typer.Typer(pretty_exceptions_enable=False)
    serve_cmd.register(app)
    app.command("version", hidden=True)(lambda: None)
    run_cli(app)


if __name__ == "__main__":
    main()
