"""A webhook whose handling crashes answers 500 and `dunning serve` logs the traceback, in
every log format, without frame locals: the customer's email in the body and the settings'
secrets stay out of the logs. (The console format used to print them in "locals" panels.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.logged_process import assert_no_secret, logged_process
from tests.fixtures.sandbox import free_port
from tests.tasks.support import REPO_ROOT, child_env
from tests.web.crash_server import CRASH_MESSAGE
from tests.web.keys import lago_hmac
from worker.store.migrate import upgrade

API_KEY = "sk-log-test-Wb42-api-key"
HMAC_KEY = "hmac-log-test-Kd19"
DB_PASSWORD = "Tq7-db-log-secret"
EMAIL = "jane.doe@example.com"
SECRETS = (API_KEY, HMAC_KEY, DB_PASSWORD, EMAIL, "jane.doe")
FORMATS = [("console", False), ("json", False), ("auto", False), ("auto", True)]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("log_format", "terminal"), FORMATS, ids=["console", "json", "auto-pipe", "auto-terminal"]
)
def test_a_crashing_webhook_is_a_500_logged_without_locals_or_secrets(
    postgres_url: str, tmp_path: Path, log_format: str, terminal: bool
) -> None:
    upgrade(postgres_url)
    port = free_port()
    env = child_env(
        # The server trusts local connections: the password is only there to be kept secret.
        DUNNING_DATABASE_URL=postgres_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@"),
        DUNNING_DATA_DIR=str(tmp_path),
        LAGO_API_URL="http://127.0.0.1:1",  # never called: HMAC-signed webhooks need no key
        LAGO_API_KEY=API_KEY,
        DUNNING_WEBHOOK_HMAC_KEY=HMAC_KEY,
        DUNNING_LOG_FORMAT=log_format,
        PYTHONPATH=str(REPO_ROOT),
    )
    command = [sys.executable, "-m", "tests.web.crash_server", "serve", "--port", str(port)]
    body = json.dumps(
        {
            "webhook_type": "invoice.payment_status_updated",
            "invoice": {"lago_id": "inv-1", "customer": {"external_id": "c1", "email": EMAIL}},
        }
    ).encode()
    with logged_process(command, env=env, cwd=REPO_ROOT, terminal=terminal) as output:
        output.wait_for("serving", timeout=60)
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/lago",
            content=body,
            headers={
                "X-Lago-Signature-Algorithm": "hmac",
                "X-Lago-Signature": lago_hmac(body, HMAC_KEY),
                "X-Lago-Unique-Key": "evt-crash",
            },
            timeout=30,
        )
        output.wait_for(CRASH_MESSAGE, timeout=30)
    assert response.status_code == 500
    assert EMAIL not in response.text
    text = output.text()
    assert "Exception in ASGI application" in text
    assert "crash_server.py" in text  # the traceback was logged
    assert_no_secret(text, SECRETS)
