"""What `dunning run` starts: its options, the sandbox's and the worker's command lines, the
settings and environment the children get."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import config
from config import Settings


class Pool(StrEnum):
    PREFORK = "prefork"
    THREADS = "threads"
    SOLO = "solo"


@dataclass(frozen=True, slots=True)
class RunOptions:
    concurrency: int = 2
    pool: Pool = Pool.PREFORK
    sandbox_port: int = 8765
    sandbox_customers: int = 50
    sandbox_seed: int = 1
    sandbox_pay_rate: float = 0.3
    #: Act as a community Lago: payment requests answer 403 feature_unavailable.
    sandbox_no_premium: bool = False
    initial_sweep: bool = True
    live: bool | None = None  # None: when stdout and stderr are a terminal


def sandbox_command(settings: Settings, options: RunOptions, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        str(port),
        "--customers",
        str(options.sandbox_customers),
        "--seed",
        str(options.sandbox_seed),
        "--pay-rate",
        str(options.sandbox_pay_rate),
        "--api-key",
        settings.lago_api_key.get_secret_value(),
        *(["--no-premium"] if options.sandbox_no_premium else []),
    ]


def worker_command(settings: Settings, options: RunOptions) -> list[str]:
    """`celery -A worker --quiet worker -B ...` for this machine (`--quiet`: no banner)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "--quiet",
        "worker",
        "--beat",
        "--pool",
        options.pool.value,
        "--concurrency",
        str(options.concurrency),
        "--loglevel",
        settings.log_level,
        "--hostname",
        "dunning@%h",
    ]
    if not settings.broker_is_redis:
        # One node by construction: no peers to gossip with or sync from, and the filesystem
        # transport would keep their fanout messages as files nobody reads.
        command += ["--without-gossip", "--without-mingle"]
        command += ["--schedule", str((settings.data_dir / "celerybeat-schedule").resolve())]
    return command


#: The policy of the embedded demo (sandbox data, a sweep every minute), used when neither
#: LAGO_API_URL nor DUNNING_POLICY_FILE is set.
DEMO_POLICY_FILE = Path(config.__file__).resolve().parent / "policies.demo.yaml"


def demo_settings(settings: Settings) -> Settings:
    """With the sandbox standing in for Lago and no policy file chosen, use the demo policy."""
    if settings.uses_sandbox and "policy_file" not in settings.model_fields_set:
        return settings.model_copy(update={"policy_file": DEMO_POLICY_FILE})
    return settings


def child_env(settings: Settings, lago_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["DUNNING_DATA_DIR"] = str(settings.data_dir.resolve())
    env["DUNNING_POLICY_FILE"] = str(settings.policy_file)
    if lago_url is not None:
        env["LAGO_API_URL"] = lago_url
    return env
