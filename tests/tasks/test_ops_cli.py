"""Manual triggers, run as the real `dunning` command: each does what the README says, and bad
input gets one line and a non-zero exit."""

from __future__ import annotations

import base64
import getpass
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from sqlalchemy import select

from config import Settings, load_settings
from tests.fixtures.sandbox import SandboxHandle
from tests.tasks.support import child_env, claimed_redis_db, intent_statuses, write_policy
from worker.cli import main
from worker.cli.ops_cmd import enqueue_sweep
from worker.services.runtime import Runtime, open_runtime
from worker.services.sweep import run_sweep
from worker.store import controls, intents
from worker.store.db import make_engine, read_session, write_tx
from worker.store.migrate import upgrade
from worker.store.models import OperatorAction

pytestmark = pytest.mark.timeout(120)

DUNNING = str(Path(sys.executable).with_name("dunning"))


@pytest.fixture
def db(sqlite_url: str) -> str:
    upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def env(tmp_path: Path, sandbox: SandboxHandle, db: str) -> dict[str, str]:
    return child_env(
        DUNNING_DATA_DIR=str(tmp_path / "data"),
        DUNNING_DATABASE_URL=db,
        DUNNING_POLICY_FILE=str(write_policy(tmp_path)),
        LAGO_API_URL=sandbox.url,
        LAGO_API_KEY=sandbox.api_key,
        DUNNING_RATE_LIMIT_RPS="0",
        DUNNING_SETTLE_SECONDS="0",
        DUNNING_LOG_FORMAT="json",
    )


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(
        data_dir=Path(env["DUNNING_DATA_DIR"]),
        database_url=env["DUNNING_DATABASE_URL"],
        policy_file=Path(env["DUNNING_POLICY_FILE"]),
        lago_api_url=env["LAGO_API_URL"],
        lago_api_key=env["LAGO_API_KEY"],
        rate_limit_rps=0,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = open_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def dunning(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `dunning ARGS` through its real entry point, in this process (fast)."""

    def invoke(env: dict[str, str], *args: str) -> Result:
        with monkeypatch.context() as patch:
            for key in list(os.environ):
                if key.startswith(("DUNNING_", "LAGO_")):
                    patch.delenv(key)
            for key, value in env.items():
                if key.startswith(("DUNNING_", "LAGO_")):
                    patch.setenv(key, value)
            patch.setattr(sys, "argv", ["dunning", *args])
            capsys.readouterr()
            with pytest.raises(SystemExit) as exited:
                main()
            captured = capsys.readouterr()
        return Result(int(exited.value.code or 0), captured.out, captured.err)

    return invoke


def dunning_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `dunning` script in a child process."""
    return subprocess.run(
        [DUNNING, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_line_error(
    result: Result | subprocess.CompletedProcess[str], code: int, text: str
) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert text in lines[0]


def queued_messages(settings: Settings) -> list[dict[str, Any]]:
    """Messages waiting in the filesystem broker: task name, id, args, kwargs."""
    found = []
    for path in sorted((settings.broker_folder / "queue").glob("*.msg")):
        raw = json.loads(path.read_text())
        body = raw["body"]
        if raw["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args, kwargs, _ = json.loads(body)
        found.append(
            {
                "task": raw["headers"]["task"],
                "id": raw["headers"]["id"],
                "args": args,
                "kwargs": kwargs,
            }
        )
    return found


def make_intent(runtime: Runtime, customer: str = "cus_00001") -> int:
    summary = run_sweep(runtime, trigger="cli", customer=customer, send_inline=False)
    (intent_id,) = summary.intent_ids
    return intent_id


def park(runtime: Runtime, intent_id: int, status: str) -> None:
    """Claim the intent and record `status` the way the send service would."""
    now = datetime.now(UTC)
    intents.claim_intents(
        runtime.engine, owner="t", now=now, lease_seconds=60, limit=1, intent_ids=[intent_id]
    )
    with write_tx(runtime.engine) as session:
        record = intents.record_needs_review if status == "needs_review" else intents.record_refused
        kwargs = {"reason": "x"} if status == "needs_review" else {"error": "x"}
        assert record(session, intent_id=intent_id, owner="t", now=now, error_code="t", **kwargs)


def test_enqueue_sweep_puts_one_named_message_on_the_broker(
    dunning: Any, env: dict[str, str], settings: Settings
) -> None:
    result = dunning(env, "enqueue", "sweep", "--customer", "cus_00001", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert queued_messages(settings) == [
        {
            "task": "dunning.sweep",
            "id": printed["task_id"],
            "args": [],
            "kwargs": {"trigger": "celery", "customer": "cus_00001"},
        }
    ]


def test_enqueue_reconcile(dunning: Any, env: dict[str, str], settings: Settings) -> None:
    result = dunning(env, "enqueue", "reconcile")
    assert result.returncode == 0, result.stderr
    (message,) = queued_messages(settings)
    assert message["task"] == "dunning.reconcile"
    assert message["id"] in result.stdout


@pytest.mark.redis
def test_enqueue_uses_the_redis_key_prefix(settings: Settings) -> None:
    with claimed_redis_db() as url:
        task_id = enqueue_sweep(load_settings(broker_url=url, data_dir=settings.data_dir))
        client = redis.Redis.from_url(url)
        try:
            (raw,) = client.lrange("dunning:celery", 0, -1)
        finally:
            client.close()
    assert json.loads(raw)["headers"]["id"] == task_id


def test_unreachable_broker_is_one_line(dunning: Any, env: dict[str, str]) -> None:
    result = dunning({**env, "DUNNING_BROKER_URL": "redis://:pw@127.0.0.1:1/0"}, "enqueue", "sweep")
    assert_one_line_error(result, 1, "cannot reach the broker redis://:***@127.0.0.1:1/0")
    assert "pw" not in result.stderr


@pytest.mark.parametrize("password", ["Tq7/mZ9-vault", "Tq7#mZ9-vault", "Tq7?mZ9-vault"])
def test_a_broker_password_that_cuts_the_url_is_one_line_exit_2(
    dunning: Any, env: dict[str, str], settings: Settings, password: str
) -> None:
    broker = f"redis://:{password}@127.0.0.1:6379/0"
    result = dunning({**env, "DUNNING_BROKER_URL": broker}, "enqueue", "sweep")
    assert_one_line_error(result, 2, "invalid DUNNING_BROKER_URL: cannot be read as redis://")
    assert "percent-encode" in result.stderr
    assert "mZ9-vault" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert queued_messages(settings) == []


@pytest.mark.redis
def test_a_percent_encoded_broker_password_reaches_redis_decoded(
    dunning: Any, env: dict[str, str]
) -> None:
    password = "Tq7/mZ9@v:a#u?l%t"
    user = f"dunning-test-{uuid.uuid4().hex[:12]}"
    admin = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    try:
        with claimed_redis_db() as url:
            broker = url.replace("redis://", f"redis://{user}:{quote(password, safe='')}@")
            result = dunning({**env, "DUNNING_BROKER_URL": broker}, "enqueue", "sweep", "--json")
            assert result.returncode == 0, result.stderr
            assert "mZ9" not in result.stdout + result.stderr
            client = redis.Redis.from_url(url)
            try:
                assert client.llen("dunning:celery") == 1
            finally:
                client.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.parametrize(
    ("argument", "code", "text"),
    [
        ("abc", 2, "intent id must be a whole number, got 'abc'"),
        ("0", 2, "intent id must be positive"),
        ("999", 2, "no intent #999"),
        ("1" * 23, 2, "intent id must be at most 9223372036854775807, got a 23-digit number"),
        ("9" * 5000, 2, "intent id must be at most 9223372036854775807, got a 5000-digit number"),
        ("x" * 500, 2, "intent id must be a whole number, got 'xxxxxxxxxx"),
    ],
)
def test_retry_rejects_bad_ids(
    dunning: Any, env: dict[str, str], argument: str, code: int, text: str
) -> None:
    assert_one_line_error(dunning(env, "retry", argument), code, text)


def test_retry_sends_a_needs_review_intent_now(
    dunning: Any, env: dict[str, str], runtime: Runtime, sandbox: SandboxHandle, db: str
) -> None:
    intent_id = make_intent(runtime)
    park(runtime, intent_id, "needs_review")

    result = dunning(env, "retry", str(intent_id), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["previous_status"] == "needs_review"
    assert printed["status"] == "sent"
    assert intent_statuses(db) == {intent_id: "sent"}
    assert sandbox.request_count("POST /api/v1/payment_requests", 200) == 1

    again = dunning(env, "retry", str(intent_id))
    assert_one_line_error(again, 2, f"intent #{intent_id} is sent: only")
    assert sandbox.request_count("POST /api/v1/payment_requests") == 1


def test_retry_enqueue_hands_the_intent_to_the_workers(
    dunning: Any,
    env: dict[str, str],
    settings: Settings,
    runtime: Runtime,
    sandbox: SandboxHandle,
    db: str,
) -> None:
    intent_id = make_intent(runtime)
    park(runtime, intent_id, "refused")

    result = dunning({**env, "LAGO_API_URL": ""}, "retry", str(intent_id), "--enqueue")
    assert result.returncode == 0, result.stderr
    assert intent_statuses(db) == {intent_id: "pending"}
    (message,) = queued_messages(settings)
    assert message["task"] == "dunning.send_payment_request"
    assert message["args"] == [intent_id]
    assert sandbox.request_count("POST /api/v1/payment_requests") == 0


def test_retry_without_lago_url_asks_for_it_or_enqueue(
    dunning: Any, env: dict[str, str], runtime: Runtime
) -> None:
    intent_id = make_intent(runtime)
    result = dunning({**env, "LAGO_API_URL": ""}, "retry", str(intent_id))
    assert_one_line_error(result, 2, "LAGO_API_URL is not set")


def test_pause_stops_dunning_a_customer_and_resume_restores_it(
    dunning: Any, env: dict[str, str], runtime: Runtime
) -> None:
    result = dunning(env, "pause", "cus_00001", "--reason", "disputed invoice")
    assert result.returncode == 0, result.stderr
    assert "paused cus_00001" in result.stdout
    with read_session(runtime.engine) as session:
        control = controls.get_control(session, external_customer_id="cus_00001")
        assert control is not None
        assert control.paused
        assert control.reason == "disputed invoice"
    paused = run_sweep(runtime, trigger="cli", customer="cus_00001", send_inline=False)
    assert paused.intent_ids == []

    assert dunning(env, "resume", "cus_00001").returncode == 0
    resumed = run_sweep(runtime, trigger="cli", customer="cus_00001", send_inline=False)
    assert len(resumed.intent_ids) == 1


def test_pause_until_a_date_is_a_hold_shown_in_plan_and_status(
    dunning: Any, env: dict[str, str], runtime: Runtime
) -> None:
    result = dunning(
        env, "pause", "cus_00001", "--until", "2099-12-15", "--reason", "promise to pay", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["until"] == "2099-12-16T00:00:00+00:00"
    held = run_sweep(runtime, trigger="cli", customer="cus_00001", dry_run=True)
    assert {row.reason for row in held.plan} == {"on_hold_until"}
    status = dunning(env, "status", "--json")
    (paused,) = json.loads(status.stdout)["paused_customers"]
    assert (paused["external_customer_id"], paused["until"]) == (
        "cus_00001",
        "2099-12-16T00:00:00+00:00",
    )
    later = run_sweep(
        runtime, trigger="cli", customer="cus_00001", dry_run=True,
        now=datetime(2099, 12, 16, 12, tzinfo=UTC),
    )  # fmt: skip
    assert "on_hold_until" not in {row.reason for row in later.plan}


def test_pause_until_refuses_a_past_or_bad_date(dunning: Any, env: dict[str, str]) -> None:
    assert_one_line_error(
        dunning(env, "pause", "cus_00001", "--until", "2001-01-01"), 2, "already past"
    )
    assert_one_line_error(
        dunning(env, "pause", "cus_00001", "--until", "soon"), 2, "invalid --until 'soon'"
    )


def test_pause_needs_a_customer_id(dunning: Any, env: dict[str, str]) -> None:
    assert_one_line_error(dunning(env, "pause", "  "), 2, "customer id must not be empty")


def _controls(url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from worker.store.models import CustomerControl

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(CustomerControl)).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["pause", "c" * 5000], "customer id must be at most 255 characters"),
        (["pause", "cus\x00tomer"], "customer id must not contain control characters"),
        (["pause", "cus_00001", "--reason", "bad\x00reason"], "reason must not contain control"),
        (["resume", "c" * 256], "customer id must be at most 255 characters"),
        (["enqueue", "sweep", "--customer", "cus\ttab"], "must not contain control characters"),
    ],
)
def test_a_customer_id_or_reason_the_ledger_cannot_hold_is_one_line_and_writes_nothing(
    dunning: Any, env: dict[str, str], db_url: str, args: list[str], text: str
) -> None:
    result = dunning({**env, "DUNNING_DATABASE_URL": db_url}, *args)
    assert_one_line_error(result, 2, text)
    assert "Traceback" not in result.stderr
    assert _controls(db_url) == 0


@pytest.mark.slow
def test_the_installed_command_works_end_to_end(env: dict[str, str], settings: Settings) -> None:
    sent = dunning_process(env, "enqueue", "sweep")
    assert sent.returncode == 0, sent.stderr
    assert [m["task"] for m in queued_messages(settings)] == ["dunning.sweep"]
    assert_one_line_error(dunning_process(env, "retry", "x1"), 2, "must be a whole number")


def test_resume_of_a_customer_never_paused_says_so(
    dunning: Any, env: dict[str, str], runtime: Runtime
) -> None:
    result = dunning(env, "resume", "cus_never_paused")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "cus_never_paused is not paused: nothing to resume (`dunning status` lists who is)"
    )
    as_json = json.loads(dunning(env, "resume", "cus_never_paused", "--json").stdout)
    assert as_json["was_paused"] is False
    with read_session(runtime.engine) as session:  # and nothing was written for it
        assert controls.get_control(session, external_customer_id="cus_never_paused") is None

    dunning(env, "pause", "cus_00001")
    resumed = dunning(env, "resume", "cus_00001", "--json")
    assert json.loads(resumed.stdout)["was_paused"] is True


def test_enqueue_warns_when_no_worker_answers(dunning: Any, env: dict[str, str]) -> None:
    result = dunning(env, "enqueue", "sweep")
    assert result.returncode == 0
    assert result.stdout.startswith("enqueued dunning.sweep")
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: no worker answered a ping on filesystem:// within")
    assert "the task waits in the queue" in warning


def test_pause_resume_and_retry_from_the_cli_are_recorded_with_who(
    dunning: Any, env: dict[str, str], settings: Settings
) -> None:
    assert dunning(env, "pause", "cus_00001", "--reason", "disputed").returncode == 0
    assert dunning(env, "resume", "cus_00001").returncode == 0
    assert dunning(env, "retry", "424242", "--enqueue").returncode == 2  # no such intent
    engine = make_engine(settings.resolved_database_url)
    try:
        with read_session(engine) as session:
            rows = session.scalars(select(OperatorAction).order_by(OperatorAction.id)).all()
    finally:
        engine.dispose()
    assert [(r.action, r.actor, r.source, r.reason) for r in rows] == [
        ("pause", getpass.getuser(), "cli", "disputed"),
        ("resume", getpass.getuser(), "cli", None),
    ]
