"""A whole worker stack as child processes: Celery workers and beat against a sandbox, on the
embedded shape (SQLite + `filesystem://` broker) or the production shape (a fresh PostgreSQL
database + a Redis broker), with helpers to enqueue tasks and read the ledger."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text

from bench.procs import Child, Children, HarnessError, base_env, free_port, python_command
from bench.verify import IntentRow
from config import Settings, load_settings
from worker.store.db import make_engine
from worker.store.migrate import upgrade
from worker.store.models import ChannelStep, PaymentRequestIntent

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StackConfig:
    """Where state lives and how the worker processes are tuned for a harness run."""

    name: str  # "embedded" or "prod"
    data_dir: Path
    policy_file: Path
    lago_url: str
    database_url: str | None = None  # None: SQLite under data_dir
    broker_url: str | None = None  # None: filesystem broker under data_dir
    env: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        values = {
            "LAGO_API_URL": self.lago_url,
            "LAGO_API_KEY": "sandbox-key",
            "DUNNING_DATA_DIR": str(self.data_dir),
            "DUNNING_POLICY_FILE": str(self.policy_file),
            "DUNNING_LOG_FORMAT": "json",
            **self.env,
        }
        if self.database_url:
            values["DUNNING_DATABASE_URL"] = self.database_url
        if self.broker_url:
            values["DUNNING_BROKER_URL"] = self.broker_url
        return base_env(values, cwd=REPO_ROOT)

    def settings(self) -> Settings:
        overrides: dict[str, object] = {
            "lago_api_url": self.lago_url,
            "data_dir": self.data_dir,
            "policy_file": self.policy_file,
        }
        if self.database_url:
            overrides["database_url"] = self.database_url
        if self.broker_url:
            overrides["broker_url"] = self.broker_url
        return load_settings(**overrides)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new database with a unique name on the shared server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise HarnessError(f"cannot create a PostgreSQL database: {exc}") from None
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with contextlib.suppress(Exception), admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_server(children: Children, *, log_dir: Path, work_dir: Path) -> tuple[Child, int]:
    """Our own throwaway `redis-server` on a free loopback port (nothing persisted)."""
    if shutil.which("redis-server") is None:
        raise HarnessError("redis-server is not installed: the production-like stack needs it")
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    child = children.add(
        Child(
            name="redis",
            command=[
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(work_dir),
            ],
            env=base_env({}),
            log_path=log_dir / "redis.log",
        )
    )
    child.start()
    return child, port


def wait_redis(port: int, timeout: float = 15.0) -> None:
    import time

    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
        finally:
            client.close()
    raise HarnessError(f"redis on port {port} did not answer within {timeout:.0f} s")


def worker_child(
    config: StackConfig, index: int, *, log_dir: Path, concurrency: int = 2, loglevel: str = "INFO"
) -> Child:
    command = python_command(
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--hostname",
        f"{config.name}-{index}@%h",
        "--without-gossip",
        "--without-mingle",
    )
    return Child(
        name=f"worker-{index}",
        command=command,
        env=config.environment(),
        log_path=log_dir / f"{config.name}-worker-{index}.log",
    )


def beat_child(config: StackConfig, *, log_dir: Path) -> Child:
    command = python_command("-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO")
    if config.broker_url is None:
        command += ["--schedule", str(config.data_dir / "celerybeat-schedule")]
    return Child(
        name="beat",
        command=command,
        env=config.environment(),
        log_path=log_dir / f"{config.name}-beat.log",
    )


class TaskSender:
    """Enqueue tasks by name, as beat or the CLI would; broker hiccups are counted, not fatal."""

    def __init__(self, settings: Settings) -> None:
        from worker.celery import create_app

        self.app = create_app(settings, cron=None, set_as_current=False)
        self.failures = 0

    def send(self, name: str, **kwargs: Any) -> bool:
        try:
            self.app.send_task(name, kwargs=kwargs, retry=False)
        except Exception:
            self.failures += 1
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


class Ledger:
    """Read-only views of the ledger for the harness."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def migrate(self) -> None:
        upgrade(self.url)

    def intents(self) -> list[IntentRow]:
        i = PaymentRequestIntent
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    i.id,
                    i.external_customer_id,
                    i.currency,
                    i.billing_entity_code,
                    i.attempt_number,
                    i.status,
                    i.lago_payment_request_id,
                    i.last_error_code,
                    i.last_error,
                )
            ).all()
        return [
            IntentRow(
                id=row.id,
                group=(row.external_customer_id, row.currency, row.billing_entity_code),
                attempt_number=row.attempt_number,
                status=row.status,
                lago_payment_request_id=row.lago_payment_request_id,
                last_error_code=row.last_error_code,
                last_error=row.last_error,
            )
            for row in rows
        ]

    def channel_steps(self) -> list[tuple[int, str, str, str | None]]:
        """(intent id, kind, status, Message-ID) of every retry-and-email step."""
        step = ChannelStep
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(step.intent_id, step.kind, step.status, step.message_id)
            ).all()
        return [(row.intent_id, row.kind, row.status, row.message_id) for row in rows]

    def close(self) -> None:
        self.engine.dispose()
