"""What every service needs, built once per process from the settings and passed in.

`open_runtime(settings)` validates the policy file, checks the database schema, and builds the
one pooled Lago client (with the shared rate limiter). Entry points (CLI, Celery worker, web
server) call it; services receive the `Runtime` and never read the environment themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from config import Settings
from config.policies import PolicySet, load_policies
from worker import metrics
from worker.lago import LagoClient
from worker.lago.ratelimit import limiter_from_settings
from worker.malloc_arenas import cap_malloc_arenas
from worker.store.db import engine_for
from worker.store.migrate import ensure_schema_current


class RuntimeSetupError(Exception):
    """The runtime cannot be built from these settings. One-line `str()`."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    client: LagoClient
    policies: PolicySet
    clock: Callable[[], datetime] = utc_now

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


def open_runtime(
    settings: Settings,
    *,
    lago_url: str | None = None,
    check_schema: bool = True,
    clock: Callable[[], datetime] = utc_now,
) -> Runtime:
    """Build the runtime. `lago_url` overrides the settings (the CLI passes the sandbox URL).
    Also caps the C allocator's arenas for the threads to come (`worker.malloc_arenas`)."""
    cap_malloc_arenas()
    policies = load_policies(settings.policy_file)
    engine = engine_for(settings)
    if check_schema:
        ensure_schema_current(engine)
    base_url = lago_url or settings.lago_api_url
    if base_url is None:
        raise RuntimeSetupError("LAGO_API_URL is not set: point it at your Lago API")
    client = LagoClient.from_settings(
        settings,
        base_url=base_url,
        rate_limiter=limiter_from_settings(settings, on_wait=metrics.observe_limiter_wait),
        observer=metrics.observe_lago_call,
    )
    return Runtime(settings=settings, engine=engine, client=client, policies=policies, clock=clock)
