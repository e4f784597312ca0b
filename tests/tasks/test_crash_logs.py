"""A Celery task that crashes logs its traceback, in every log format, without frame locals:
no password, API key or customer email, though all of them are local variables of the frames
that raised. (The console format used to print them in rich "locals" panels.)"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_settings
from tests.fixtures.logged_process import assert_no_secret, logged_process
from tests.tasks.crash_tasks import CRASH_MESSAGE, CRASH_TASK, EMAIL_VARIABLE
from tests.tasks.support import REPO_ROOT, child_env, write_policy
from worker.cli.ops_cmd import send_task_by_name
from worker.logging import configure_logging, get_logger

API_KEY = "sk-log-test-Vq81-api-key"
HMAC_KEY = "hmac-log-test-Zr55"
DB_PASSWORD = "Tq7-db-log-secret"
# Never connected to: the crashing task only reads the settings.
DATABASE_URL = f"postgresql+psycopg://dunning:{DB_PASSWORD}@127.0.0.1:1/nowhere"
EMAIL = "jane.doe@example.com"
SECRETS = (API_KEY, HMAC_KEY, DB_PASSWORD, EMAIL, "jane.doe")

#: (DUNNING_LOG_FORMAT, run on a terminal): `auto` is JSON on a pipe, console on a terminal.
FORMATS = [("console", False), ("json", False), ("auto", False), ("auto", True)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("log_format", "terminal"), FORMATS, ids=["console", "json", "auto-pipe", "auto-terminal"]
)
def test_a_crashing_task_logs_a_traceback_without_locals_or_secrets(
    tmp_path: Path, log_format: str, terminal: bool
) -> None:
    values = {
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
        "DUNNING_DATABASE_URL": DATABASE_URL,
        "DUNNING_POLICY_FILE": str(write_policy(tmp_path)),
        "LAGO_API_URL": "http://127.0.0.1:1",
        "LAGO_API_KEY": API_KEY,
        "DUNNING_WEBHOOK_HMAC_KEY": HMAC_KEY,
    }
    env = child_env(**values, DUNNING_LOG_FORMAT=log_format, PYTHONPATH=str(REPO_ROOT))
    env[EMAIL_VARIABLE] = EMAIL
    settings = load_settings(
        data_dir=tmp_path / "data", database_url=DATABASE_URL, lago_api_key=API_KEY
    )
    command = [
        sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
        "--include", "tests.tasks.crash_tasks", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
    ]  # fmt: skip
    with logged_process(command, env=env, cwd=REPO_ROOT, terminal=terminal) as output:
        send_task_by_name(settings, CRASH_TASK)
        output.wait_for("crash_logged_by_the_task", timeout=90)
        output.wait_for("raised unexpected", timeout=30)
        output.wait_for(CRASH_MESSAGE, timeout=30)
    text = output.text()
    # The crash was logged with its traceback, by the task and by Celery.
    assert "crash_tasks.py" in text
    assert text.count(CRASH_MESSAGE) >= 2
    assert_no_secret(text, SECRETS)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("log_format", ["console", "json"])
def test_secrets_and_emails_in_exception_text_are_scrubbed_in_every_format(
    tmp_path: Path, log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        lago_api_key=API_KEY,
        webhook_hmac_key=HMAC_KEY,
        log_format=log_format,
    )
    configure_logging(settings)
    try:
        # An exception whose own text carries them (a driver echoing a parameter, say).
        raise ValueError(f"row for {EMAIL} on {settings.resolved_database_url} with {API_KEY}")
    except ValueError:
        get_logger("tests.logs").exception("structlog_line", hmac=HMAC_KEY)
        logging.getLogger("tests.stdlib").exception("stdlib line for %s", EMAIL)
    err = capsys.readouterr().err
    assert "structlog_line" in err
    assert "stdlib line for j***@example.com" in err
    assert "row for j***@example.com on postgresql+psycopg://dunning:***@127.0.0.1:1/nowhere" in err
    assert_no_secret(err, SECRETS)
