"""A task that crashes with the settings' secrets and a customer's email in local variables,
for the log tests (`celery -A worker worker --include tests.tasks.crash_tasks`).

The crash is logged twice: by the task itself (`log.exception`, real frames: what a service
logging an error does) and by Celery (a task raising an unexpected exception). None of the
secrets is written in this file, so a traceback's source lines cannot show them either.
"""

from __future__ import annotations

import os

from celery import shared_task

from config import load_settings
from worker.logging import get_logger

CRASH_TASK = "tests.crash_with_secrets_in_scope"
CRASH_MESSAGE = "crash for the log test"
#: The environment variable holding the customer's email the task keeps in a local.
EMAIL_VARIABLE = "LOG_TEST_CUSTOMER_EMAIL"

log = get_logger(__name__)


@shared_task(name=CRASH_TASK)
def crash_with_secrets_in_scope() -> None:
    settings = load_settings()
    database_url = settings.resolved_database_url
    api_key = settings.lago_api_key.get_secret_value()
    customer = {"external_id": "cus_1", "email": os.environ[EMAIL_VARIABLE]}
    try:
        _fail(len(database_url) + len(api_key) + len(customer))
    except RuntimeError:
        log.exception("crash_logged_by_the_task", customer_id=customer["external_id"])
        raise


def _fail(size: int) -> None:
    raise RuntimeError(f"{CRASH_MESSAGE} ({size})")
