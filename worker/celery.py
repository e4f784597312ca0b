"""The Celery app: one bootstrap file for the worker and beat (`celery -A worker worker|beat`).

Configuration comes from `load_settings()`; the beat cadence is the policy file's cron.
Delivery is at-least-once by design (late acks, requeue on a lost worker); the ledger in the
database makes every redelivery harmless, so the settings below only make duplicates rarer
and recovery faster. Messages carry ids only and never use ETA/countdown: delays live in the
ledger (`next_attempt_at`), not in the broker.

Two broker shapes, same code path:
- Redis (`DUNNING_BROKER_URL=redis://...`): RedBeat scheduler with a Redis lock (one active
  beat), events on for Flower, the shared outbound rate limiter in Redis.
- Embedded (`filesystem://`, the default): message folders under `<data_dir>/broker` (one
  filesystem, so moves are atomic), `worker -B -s <data_dir>/celerybeat-schedule`.

Metrics: with `DUNNING_METRICS_PORT` set, the bootstrap turns on prometheus_client's
multiprocess mode for the whole process tree and the main worker process (or a standalone
beat) serves the port (worker/metrics_signals.py, worker/metrics_server.py).
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from celery import Celery, signals
from celery.exceptions import SecurityWarning
from celery.schedules import crontab

from config import Settings, SettingsError, load_settings
from config.cron import CronError, parse_cron
from config.policies import PolicyFileError, load_policies
from worker.metrics_files import MetricsSetupError, enable_multiprocess
from worker.metrics_signals import connect_metric_signals

SWEEP_TASK = "dunning.sweep"
SEND_TASK = "dunning.send_payment_request"
SEND_BATCH_TASK = "dunning.send_payment_requests"
RECONCILE_TASK = "dunning.reconcile"

#: How often beat asks for a reconcile pass (expired leases, due ambiguous intents).
RECONCILE_EVERY = timedelta(minutes=5)

#: Time limits per task (soft, hard) in seconds. The send limit stays below the default lease
#: (300 s) so a running send never outlives its claim.
SEND_TIME_LIMITS = (120, 150)
#: A batch of sends shares the rate limit with the other workers' batches; like a single send
#: it must end inside the lease of the intents it claimed (DUNNING_LEASE_SECONDS, 300 s).
SEND_BATCH_TIME_LIMITS = (240, 270)
SWEEP_TIME_LIMITS = (540, 600)
RECONCILE_TIME_LIMITS = (240, 300)
DEFAULT_TIME_LIMITS = (240, 300)

#: Redis: a message unacked for longer than this is redelivered, even if still running, so it
#: must exceed the longest hard time limit (3x margin).
VISIBILITY_TIMEOUT_S = 1800

#: Beat wakes at least this often; the RedBeat lock lives 5x longer (see redbeat#129, #230).
BEAT_MAX_LOOP_INTERVAL_S = 30
REDBEAT_LOCK_TIMEOUT_S = 5 * BEAT_MAX_LOOP_INTERVAL_S

#: A beat sweep message nobody picked up within this long is dropped (the next tick re-derives).
SWEEP_MESSAGE_EXPIRES_S = 900

#: How often the embedded `filesystem://` broker looks for new messages.
FILESYSTEM_POLL_INTERVAL_S = 0.1

#: Libraries whose lines say nothing to an operator of this worker. kombu warns "No hostname
#: was supplied" for every `filesystem://` connection (a URL without a host is how that
#: transport is named).
QUIET_LOGGERS = {"alembic.runtime.migration": logging.WARNING, "kombu.connection": logging.ERROR}

REDIS_KEY_PREFIX = "dunning:"
REDBEAT_KEY_PREFIX = "dunning:redbeat:"  # RedBeat appends ":lock", ":schedule", entry names


class ScheduleError(ValueError):
    """The policy file's cron cannot be expressed as a Celery crontab. One-line `str()`."""


def crontab_from_cron(expression: str) -> crontab:
    """The policy file's cron as a Celery crontab (evaluated in UTC).

    Parsed by `config.cron`, the parser the policy loader and the tick slot use, and handed
    to Celery in canonical form (`*` or explicit value lists): beat runs exactly the minutes
    the loader accepted.
    """
    try:
        cron = parse_cron(expression)
    except CronError as exc:
        raise ScheduleError(
            f"cron {expression!r} cannot be scheduled by Celery beat: {exc}"
        ) from None
    minute, hour, day_of_month, month_of_year, day_of_week = cron.fields()
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
    )


def broker_folders(settings: Settings) -> dict[str, Path]:
    """The `filesystem://` transport folders, all under one directory (atomic moves)."""
    root = settings.broker_folder
    return {
        "data_folder_in": root / "queue",
        "data_folder_out": root / "queue",
        "processed_folder": root / "processed",
        "control_folder": root / "control",
    }


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_is_redis:
        return {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 6,
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
            "socket_keepalive": True,
            "health_check_interval": 25,
            "retry_on_timeout": True,
            "global_keyprefix": REDIS_KEY_PREFIX,
            "max_retries": 3,
        }
    if settings.resolved_broker_url.startswith("filesystem://"):
        folders = broker_folders(settings)
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {
            **{name: str(path) for name, path in folders.items()},
            "store_processed": False,
            # kombu polls the folder once a second by default: a fan-out of sends would then
            # trickle at one message per second per consumer.
            "polling_interval": FILESYSTEM_POLL_INTERVAL_S,
        }
    return {}


def beat_schedule(cron: str) -> dict[str, dict[str, Any]]:
    return {
        "dunning-sweep": {
            "task": SWEEP_TASK,
            "schedule": crontab_from_cron(cron),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": SWEEP_MESSAGE_EXPIRES_S},
        },
        "dunning-reconcile": {
            "task": RECONCILE_TASK,
            "schedule": RECONCILE_EVERY,
            "options": {"expires": RECONCILE_EVERY.total_seconds()},
        },
    }


def celery_config(settings: Settings, *, cron: str | None) -> dict[str, Any]:
    """Every Celery setting we rely on, explicit (research/celery-reliability.md §1.6, §2)."""
    redis = settings.broker_is_redis
    soft, hard = DEFAULT_TIME_LIMITS
    conf: dict[str, Any] = {
        "broker_url": settings.resolved_broker_url,
        "broker_transport_options": broker_transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Delivery: at-least-once; the ledger dedupes.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure": True,
        "task_acks_on_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
        # No result backend: state lives in our database.
        "task_ignore_result": True,
        "result_backend": None,
        "result_expires": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Shutdown: SIGTERM lets a running send finish, within a bounded window.
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
        # Logging is ours (structlog, wired through the setup_logging signal below).
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Events feed Flower and `celery events`; the filesystem transport has no consumer for
        # them, so they would only pile up as files there.
        "worker_send_task_events": redis,
        "task_send_sent_event": redis,
        "beat_schedule": beat_schedule(cron) if cron is not None else {},
        "beat_max_loop_interval": BEAT_MAX_LOOP_INTERVAL_S,
    }
    if redis:
        conf.update(
            {
                "visibility_timeout": VISIBILITY_TIMEOUT_S,
                "beat_scheduler": "redbeat.RedBeatScheduler",
                "redbeat_redis_url": settings.resolved_broker_url,
                "redbeat_redis_options": {
                    "socket_connect_timeout": 5,
                    "socket_timeout": 30,
                    "socket_keepalive": True,
                    "health_check_interval": 25,
                    "retry_on_timeout": True,
                },
                "redbeat_key_prefix": REDBEAT_KEY_PREFIX,
                "redbeat_lock_timeout": REDBEAT_LOCK_TIMEOUT_S,
            }
        )
    else:
        conf["beat_schedule_filename"] = str((settings.data_dir / "celerybeat-schedule").resolve())
    return conf


def quiet_libraries() -> None:
    """Silence, at their loggers, library lines that say nothing to an operator of this
    worker; and Celery's warning against running as root, which is about pickle: this app
    accepts JSON only (`accept_content`), so Celery's own refusal never applies."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", category=SecurityWarning)


def create_app(settings: Settings, *, cron: str | None, set_as_current: bool = True) -> Celery:
    """A configured Celery app for `settings`; `cron` is the sweep cadence (None: no beat
    schedule, e.g. an app that only sends tasks by name)."""
    quiet_libraries()
    app = Celery("dunning", include=["tasks.dunning"], set_as_current=set_as_current)
    app.conf.update(celery_config(settings, cron=cron))
    app.conf.task_annotations = {
        SEND_TASK: _limits(SEND_TIME_LIMITS),
        SEND_BATCH_TASK: _limits(SEND_BATCH_TIME_LIMITS),
        SWEEP_TASK: _limits(SWEEP_TIME_LIMITS),
        RECONCILE_TASK: _limits(RECONCILE_TIME_LIMITS),
    }
    return app


def _limits(limits: tuple[int, int]) -> dict[str, int]:
    soft, hard = limits
    return {"soft_time_limit": soft, "time_limit": hard}


def _bootstrap() -> tuple[Settings, Celery]:
    try:
        settings = load_settings()
        _prepare_metric_files(settings)
        policies = load_policies(settings.policy_file)
        return settings, create_app(settings, cron=policies.cron)
    except (SettingsError, PolicyFileError, ScheduleError, MetricsSetupError) as exc:
        raise SystemExit(f"error: {exc}") from None
    except OSError as exc:
        raise SystemExit(
            f"error: cannot prepare the broker folders ({exc.strerror}): "
            "set DUNNING_DATA_DIR to a writable directory"
        ) from None


_booted: tuple[Settings, Celery] | None = None


def _booted_app() -> tuple[Settings, Celery]:
    global _booted  # noqa: PLW0603 - the process's one app, built on first use
    if _booted is None:
        _booted = _bootstrap()
    return _booted


def __getattr__(name: str) -> Any:
    """`worker.celery.app` (what `celery -A worker` loads) is built from the environment on
    first access, so importing this module to build another app has no side effects."""
    if name == "app":
        return _booted_app()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _prepare_metric_files(settings: Settings) -> None:
    """With a metrics port, every process of this tree writes its metrics to files (before
    the task modules, which define the metrics, are imported): see worker/metrics_files.py."""
    directory = settings.resolved_metrics_dir
    if directory is not None:
        enable_multiprocess(directory)


def _configure_logging(**_: Any) -> None:
    from worker.logging import configure_logging

    configure_logging(_booted_app()[0])
    quiet_libraries()


def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


# Connecting to setup_logging also stops Celery from configuring logging itself.
signals.setup_logging.connect(_configure_logging, weak=False)
signals.task_prerun.connect(_bind_task_context, weak=False)
signals.task_postrun.connect(_clear_task_context, weak=False)
connect_metric_signals(lambda: _booted[0] if _booted is not None else None)
