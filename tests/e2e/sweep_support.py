"""Helpers shared by the sweep tests: policy files, data files, runtimes, row counts and a
tiny HTTP receiver for `on_exhausted` webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select

from config import Settings, load_settings
from config.policies import load_policies
from tests.fixtures.sandbox import SandboxHandle
from worker.lago.client import LagoClient, Observer
from worker.services.runtime import Runtime
from worker.store.db import make_engine, read_session
from worker.store.models import (
    DecisionRow,
    GroupStateRow,
    PaymentRequestIntent,
    SweepRun,
)

DATA_DIR = Path(__file__).resolve().parent / "data"

# The standard test policy: customers tagged tier=standard, USD and EUR, no grace, no window.
STANDARD_POLICY = """\
version: 1
policies:
  - name: standard
    match:
      metadata: {{tier: standard}}
    exclude:
      external_customer_ids: [cus_excluded_id]
      metadata: {{dunning: "off"}}
    min_overdue_cents: {{USD: 1000, EUR: 1000}}
    grace_days: {grace_days}
    days_between_attempts: 3
    max_attempts: {max_attempts}
{send_window}    on_exhausted: {on_exhausted}
"""

# For generated sandbox data: every customer, every currency the generator uses.
GENERATED_POLICY = """\
version: 1
policies:
  - name: everyone
    min_overdue_cents: {USD: 1, EUR: 1, GBP: 1, AUD: 1, SGD: 1, INR: 1}
    grace_days: 0
    days_between_attempts: 3
    max_attempts: 3
    on_exhausted: {action: stop}
"""


def write_policy(
    directory: Path,
    *,
    grace_days: int = 0,
    max_attempts: int = 2,
    send_window: str | None = None,
    hook_url: str | None = None,
    text: str | None = None,
) -> Path:
    """Write a policy file into `directory` and return its path."""
    if text is None:
        on_exhausted = f'{{action: webhook, url: "{hook_url}"}}' if hook_url else "{action: stop}"
        window = f"    send_window: {send_window}\n" if send_window else ""
        text = STANDARD_POLICY.format(
            grace_days=grace_days,
            max_attempts=max_attempts,
            send_window=window,
            on_exhausted=on_exhausted,
        )
    path = directory / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    load_policies(path)  # fail here, with the loader's message, if the file is wrong
    return path


def data_file(name: str) -> Path:
    return DATA_DIR / f"{name}.json"


def load_data(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data_file(name).read_text(encoding="utf-8"))
    return document


def test_settings(db_url: str, sandbox: SandboxHandle, policy: Path, **extra: Any) -> Settings:
    """Settings for a sweep against the sandbox: short timeouts, no retries, no settle wait."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "lago_api_url": sandbox.url,
        "lago_api_key": sandbox.api_key,
        "policy_file": policy,
        "lago_timeout_s": 10.0,
        "lago_max_retries": 0,
        "rate_limit_rps": 0,
        "http_concurrency": 4,
    }
    values.update(extra)
    return load_settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


class Clock:
    """Real time plus an offset a test moves forward (the sandbox stamps real time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, *, days: float = 0, seconds: float = 0) -> None:
        self.offset += timedelta(days=days, seconds=seconds)


@contextmanager
def sweep_runtime(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    observer: Observer | None = None,
    client: LagoClient | None = None,
) -> Iterator[Runtime]:
    """A `Runtime` on the settings' database, policy file and Lago URL; closed afterwards."""
    assert settings.lago_api_url is not None
    built_client = client or LagoClient(
        settings.lago_api_url,
        SecretStr(settings.lago_api_key.get_secret_value()),
        timeout_s=settings.lago_timeout_s,
        max_retries=settings.lago_max_retries,
        concurrency=settings.http_concurrency,
        observer=observer,
    )
    runtime = Runtime(
        settings=settings,
        engine=make_engine(settings.resolved_database_url),
        client=built_client,
        policies=load_policies(settings.policy_file),
        clock=clock or Clock(),
    )
    try:
        yield runtime
    finally:
        runtime.close()


def count_rows(db_url: str) -> dict[str, int]:
    """Rows in every ledger table the sweep writes."""
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (SweepRun, PaymentRequestIntent, DecisionRow, GroupStateRow)
            }
    finally:
        engine.dispose()


def decisions_by_customer(db_url: str) -> dict[tuple[str, str], list[str]]:
    """(customer, currency) -> reasons recorded, oldest first."""
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(select(DecisionRow).order_by(DecisionRow.id)).all()
            found: dict[tuple[str, str], list[str]] = {}
            for row in rows:
                found.setdefault((row.external_customer_id, row.currency), []).append(row.reason)
            return found
    finally:
        engine.dispose()


def requests_by_customer(sandbox: SandboxHandle) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for request in sandbox.payment_requests():
        found.setdefault(request["customer"]["external_id"], []).append(request)
    return found


def invoice_ids_of(request: dict[str, Any]) -> set[str]:
    return {invoice["lago_id"] for invoice in request["invoices"]}


@dataclass
class HookReceiver:
    """Records the JSON bodies POSTed to it (answers 204)."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def hook_receiver() -> Iterator[HookReceiver]:
    """A webhook receiver on a free loopback port, in a background thread."""
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            with lock:
                received.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HookReceiver(f"http://127.0.0.1:{server.server_port}/hooks/exhausted", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
