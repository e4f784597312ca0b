"""`dunning sweep --once` and `dunning plan` against the sandbox: the real entry point run in
this process (fast), and a few real subprocesses (`python -m worker.cli`) for the contracts a
shell script relies on: stdout holds exactly the JSON object, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import select

from tests.e2e.sweep_support import (
    count_rows,
    load_data,
    requests_by_customer,
    write_policy,
)
from tests.fixtures.sandbox import REPO_ROOT, SandboxHandle
from worker.cli import main
from worker.store.db import make_engine, read_session
from worker.store.migrate import upgrade
from worker.store.models import PaymentRequestIntent

POST = "POST /api/v1/payment_requests"
LIST = "GET /api/v1/invoices"
# Every variable the CLI reads that a developer's shell might have set.
_ENV_NAMES = (
    "LAGO_API_URL",
    "LAGO_API_KEY",
    "LAGO_TIMEOUT_S",
    "LAGO_MAX_RETRIES",
    "DUNNING_DATA_DIR",
    "DUNNING_DATABASE_URL",
    "DUNNING_BROKER_URL",
    "DUNNING_POLICY_FILE",
    "DUNNING_RATE_LIMIT_RPS",
    "DUNNING_HTTP_CONCURRENCY",
    "DUNNING_SEND_PROCESSES",
    "DUNNING_SETTLE_SECONDS",
    "DUNNING_LOG_LEVEL",
    "DUNNING_LOG_FORMAT",
)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """stderr lines that are not JSON log records."""
        return [line for line in self.stderr.splitlines() if line and not line.startswith("{")]


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, sandbox: SandboxHandle) -> dict[str, str]:
    """Environment for a CLI run: migrated SQLite file, the sandbox, a test policy file."""
    upgrade(sqlite_url)
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    return {
        "LAGO_API_URL": sandbox.url,
        "LAGO_API_KEY": sandbox.api_key,
        "LAGO_TIMEOUT_S": "10",
        "LAGO_MAX_RETRIES": "0",
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
        "DUNNING_DATABASE_URL": sqlite_url,
        "DUNNING_POLICY_FILE": str(write_policy(policy_dir)),
        "DUNNING_RATE_LIMIT_RPS": "0",
        "DUNNING_HTTP_CONCURRENCY": "4",
        "DUNNING_LOG_FORMAT": "json",
    }


class Dunning(Protocol):
    def __call__(self, *args: str, env: dict[str, str]) -> Result: ...


@pytest.fixture
def dunning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Dunning:
    """Run `dunning ARGS` in this process through the console-script entry point."""

    def run(*args: str, env: dict[str, str]) -> Result:
        with monkeypatch.context() as patch:
            for name in _ENV_NAMES:
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            patch.chdir(tmp_path)  # no stray .env file
            patch.setattr(sys, "argv", ["dunning", *args])
            capsys.readouterr()
            with pytest.raises(SystemExit) as exited:
                main()
        captured = capsys.readouterr()
        code = exited.value.code
        return Result(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict[str, str], cwd: Path) -> Result:
    """`python -m worker.cli ARGS` as a real process (cwd outside the repository)."""
    child = {k: v for k, v in os.environ.items() if k not in _ENV_NAMES}
    child.update(env)
    child["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=child,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


# ---------------------------------------------------------------------------------------------
# In-process runs of the entry point


def test_sweep_once_json_reports_the_run_and_matches_the_sandbox(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    sandbox.reset_stats()

    result = dunning("sweep", "--once", "--json", env=env)

    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    assert report["payment_requests_created"] == 7
    assert report["intents_created"] == 7
    assert report["groups"] == 11
    assert report["decisions_by_reason"] == {
        "below_threshold": 1,
        "eligible": 7,
        "excluded": 2,
        "no_policy_matched": 1,
    }
    assert report["api_calls"] == sandbox.stats()["total"]
    # One page of pending payment requests (already_requested), one page of invoices, one
    # POST per group.
    assert report["api_calls"] == 1 + 1 + 7
    assert sum(report["invoices_by_reason"].values()) == report["invoices_seen"]
    assert len(sandbox.payment_requests()) == 7
    assert '"sweep.finished"' in result.stderr  # logs go to stderr


def test_a_second_sweep_once_creates_nothing_new(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    first = dunning("sweep", "--once", "--json", env=env)
    intents_after_first = count_rows(env["DUNNING_DATABASE_URL"])["payment_request_intents"]

    second = dunning("sweep", "--once", "--json", env=env)

    assert json.loads(first.stdout)["payment_requests_created"] == 7
    report = json.loads(second.stdout)
    assert report["payment_requests_created"] == 0
    assert report["intents_created"] == 0
    assert report["decisions_by_reason"]["too_soon"] == 7
    assert len(sandbox.payment_requests()) == 7
    rows = count_rows(env["DUNNING_DATABASE_URL"])
    assert rows["payment_request_intents"] == intents_after_first


def test_sweep_once_prints_a_summary_table(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("one_customer"))

    result = dunning("sweep", "--once", env=env)

    assert result.code == 0, result.stderr
    assert "dunning sweep" in result.stdout
    assert "payment requests created" in result.stdout
    assert "decision: eligible" in result.stdout
    assert len(sandbox.payment_requests()) == 2


def test_dry_run_writes_nothing(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    before = count_rows(env["DUNNING_DATABASE_URL"])

    result = dunning("sweep", "--once", "--dry-run", "--json", env=env)

    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["run_id"] is None
    assert report["decisions_by_reason"]["eligible"] == 7
    assert report["payment_requests_created"] == 0
    assert count_rows(env["DUNNING_DATABASE_URL"]) == before
    assert sandbox.payment_requests() == []
    assert sandbox.request_count(POST) == 0


def test_now_moves_the_decisions(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    policy_dir = Path(env["DUNNING_POLICY_FILE"]).parent
    write_policy(policy_dir, grace_days=5)

    early = dunning("plan", "--json", "--now", "2025-03-06T22:00:00Z", env=env)
    later = dunning("plan", "--json", "--now", "2025-03-06T23:00:00+00:00", env=env)
    naive = dunning("plan", "--json", "--now", "2025-03-06T22:00:00", env=env)

    def recent(result: Result) -> dict[str, object]:
        groups = json.loads(result.stdout)["groups"]
        return next(g for g in groups if g["external_customer_id"] == "cus_recent")

    assert recent(early)["reason"] == "in_grace_period"
    assert recent(early)["next_eligible_at"] == "2025-03-06T23:00:00+00:00"
    assert recent(later)["reason"] == "eligible"
    assert recent(naive)["reason"] == "in_grace_period"  # no offset: read as UTC


def test_bad_now_is_one_line_and_exit_2(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    result = dunning("sweep", "--once", "--now", "next tuesday", env=env)

    assert result.code == 2
    assert result.error_lines == [
        "error: invalid --now 'next tuesday': use ISO 8601, e.g. 2026-11-22T09:30:00Z"
    ]
    assert result.stdout == ""
    assert sandbox.stats()["total"] == 0


def test_customer_option_limits_the_listing(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    # 60 generated customers: the full overdue listing takes several pages of 100.
    sandbox.reset(customers=60, invoices_per_customer=4, seed=11)
    sandbox.reset_stats()
    full = dunning("plan", "--json", env=env)
    full_pages = sandbox.request_count(LIST)
    sandbox.reset_stats()

    result = dunning("sweep", "--once", "--json", "--customer", "cus_00001", env=env)

    assert full.code == 0
    assert result.code == 0, result.stderr
    assert full_pages >= 2
    assert sandbox.request_count(LIST) == 1
    report = json.loads(result.stdout)
    assert report["invoices_seen"] == 4
    assert report["groups"] == 1
    assert set(requests_by_customer(sandbox)) <= {"cus_00001"}
    assert report["api_calls"] == sandbox.stats()["total"]


def test_plan_prints_the_table_and_changes_nothing(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    before = count_rows(env["DUNNING_DATABASE_URL"])

    result = dunning("plan", env=env)

    assert result.code == 0, result.stderr
    assert "dunning plan: 11 group(s)" in result.stdout
    for expected in ("cus_small", "below_threshold", "cus_nomatch", "no_policy_matched"):
        assert expected in result.stdout
    assert "300.00 USD" in result.stdout  # cus_two_entities' acme_eu invoice
    assert count_rows(env["DUNNING_DATABASE_URL"]) == before
    assert sandbox.payment_requests() == []


def test_plan_shows_a_customer_id_that_looks_like_markup_as_it_is(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    # External ids are whatever the Lago user chose: rich markup and emoji codes included.
    odd = "cus[/solo]:x:"
    data = json.loads(json.dumps(load_data("one_customer")).replace("cus_solo", odd))
    sandbox.reset(data=data)

    result = dunning("plan", env=env)

    assert result.code == 0, result.stderr
    assert odd in result.stdout


def test_plan_json_lists_the_groups(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))

    result = dunning("plan", "--json", env=env)

    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    groups = {
        (g["external_customer_id"], g["currency"], g["billing_entity_code"]): g
        for g in plan["groups"]
    }
    assert len(groups) == 11
    assert ("cus_two_entities", "USD", "acme_us") in groups
    assert ("cus_two_entities", "USD", "acme_eu") in groups
    assert groups[("cus_multi_currency", "EUR", "default")]["amount_cents"] == 20000
    assert groups[("cus_multi_currency", "EUR", "default")]["invoice_count"] == 2
    small = groups[("cus_small", "USD", "default")]
    assert (small["decision"], small["reason"]) == ("skip", "below_threshold")
    assert "below the 1000 minimum" in small["detail"]
    assert plan["decisions_by_reason"]["excluded"] == 2
    assert plan["malformed"] == 0


def test_plan_diff_shows_what_a_candidate_would_change_and_writes_nothing(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    current = Path(env["DUNNING_POLICY_FILE"]).read_text(encoding="utf-8")
    candidate = tmp_path / "candidate.yaml"
    # Raise the USD minimum: some USD groups stop being dunned.
    candidate.write_text(current.replace("USD: 1000", "USD: 25000"), encoding="utf-8")
    before = count_rows(env["DUNNING_DATABASE_URL"])
    sandbox.reset_stats()

    text = dunning("plan", "--diff", str(candidate), env=env)
    result = dunning("plan", "--diff", str(candidate), "--json", env=env)

    assert text.code == 0, text.stderr
    assert "Totals" in text.stdout
    assert "nothing written" in text.stdout
    assert result.code == 0, result.stderr
    diff = json.loads(result.stdout)
    assert diff["changes"]["stop"] > 0
    assert diff["changes"]["start"] == 0
    stopped = {row["external_customer_id"] for row in diff["rows"] if row["change"] == "stop"}
    assert stopped == {"cus_multi_currency", "cus_tokyo", "cus_two_entities"}
    assert {row["currency"] for row in diff["rows"]} == {"USD"}
    assert all(row["candidate"]["reason"] == "below_threshold" for row in diff["rows"])
    assert count_rows(env["DUNNING_DATABASE_URL"]) == before
    assert sandbox.payment_requests() == []
    # One invoice listing and one pending-requests listing per run (text, then JSON).
    assert sandbox.stats()["requests"] == {
        "GET /api/v1/invoices": {"200": 2},
        "GET /api/v1/payment_requests": {"200": 2},
    }
    bad = dunning("plan", "--diff", str(tmp_path / "missing.yaml"), env=env)
    assert bad.code == 2
    assert "candidate" in bad.stderr
    assert "file not found" in bad.stderr


def test_missing_licence_stops_with_one_line_and_keeps_the_ledger(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    sandbox.set_faults(premium=False)

    result = dunning("sweep", "--once", "--json", env=env)

    assert result.code == 1
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith("error: ")
    assert "feature_unavailable" in result.error_lines[0] or "licen" in result.error_lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    rows = count_rows(env["DUNNING_DATABASE_URL"])
    assert rows["payment_request_intents"] == 2
    assert rows["decisions"] == 2
    assert sandbox.payment_requests() == []


def test_malformed_invoice_is_reported_and_the_rest_is_sent(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    sandbox.patch_invoice("5e1f0000-0000-4000-8000-000000000003", payment_due_date="soon")

    result = dunning("sweep", "--once", "--json", env=env)

    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["malformed"] == 1
    assert report["decisions_by_reason"]["malformed_record"] >= 1
    assert report["invoices_by_reason"]["malformed_record"] == 1
    solo = requests_by_customer(sandbox)["cus_solo"]
    assert len(solo) == 1
    assert {i["lago_id"] for i in solo[0]["invoices"]} == {
        "5e1f0000-0000-4000-8000-000000000001",
        "5e1f0000-0000-4000-8000-000000000002",
    }


def test_unmigrated_database_says_run_db_upgrade(
    dunning: Dunning, env: dict[str, str], tmp_path: Path, sandbox: SandboxHandle
) -> None:
    env = {**env, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}

    result = dunning("sweep", "--once", env=env)

    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "dunning db upgrade" in result.error_lines[0]
    assert sandbox.stats()["total"] == 0


def test_missing_lago_url_is_one_line_and_exit_2(dunning: Dunning, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "LAGO_API_URL"}

    result = dunning("sweep", "--once", env=env)

    assert result.code == 2
    assert len(result.error_lines) == 1
    assert "LAGO_API_URL is not set" in result.error_lines[0]


def test_an_api_key_pasted_with_a_line_break_still_works(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("one_customer"))

    result = dunning(
        "sweep", "--once", "--json", env={**env, "LAGO_API_KEY": env["LAGO_API_KEY"] + "\r\n"}
    )

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["payment_requests_created"] == 2
    rows = count_rows(env["DUNNING_DATABASE_URL"])
    assert rows["sweep_runs"] == 1


def test_an_api_key_that_cannot_be_a_header_is_one_line_exit_2_and_nothing_is_written(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    sandbox.reset_stats()
    before = count_rows(env["DUNNING_DATABASE_URL"])

    result = dunning("sweep", "--once", env={**env, "LAGO_API_KEY": "sandbox Zx9-secret"})

    assert result.code == 2
    assert result.error_lines == [
        "error: configuration error: invalid LAGO_API_KEY: contains spaces, control characters "
        "(such as a line break) or non-ASCII characters; copy the key again exactly as Lago "
        "shows it"
    ]
    assert "Zx9-secret" not in result.stdout + result.stderr
    assert count_rows(env["DUNNING_DATABASE_URL"]) == before
    assert sandbox.stats()["total"] == 0


@pytest.mark.postgres
def test_sweep_once_twice_on_postgresql(
    dunning: Dunning, env: dict[str, str], postgres_url: str, sandbox: SandboxHandle
) -> None:
    upgrade(postgres_url)
    env = {**env, "DUNNING_DATABASE_URL": postgres_url}
    sandbox.reset(data=load_data("scenarios"))
    sandbox.reset_stats()

    first = dunning("sweep", "--once", "--json", env=env)
    second = dunning("sweep", "--once", "--json", env=env)

    assert first.code == 0, first.stderr
    assert second.code == 0, second.stderr
    reports = [json.loads(first.stdout), json.loads(second.stdout)]
    assert [r["payment_requests_created"] for r in reports] == [7, 0]
    assert sum(r["api_calls"] for r in reports) == sandbox.stats()["total"]
    rows = count_rows(postgres_url)
    assert (rows["sweep_runs"], rows["payment_request_intents"], rows["decisions"]) == (2, 7, 22)
    assert len(sandbox.payment_requests()) == 7


# ---------------------------------------------------------------------------------------------
# Real subprocesses (slow to start: keep them few)


@pytest.mark.slow
def test_subprocess_json_stdout_is_exactly_one_object(
    env: dict[str, str], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    sandbox.reset_stats()

    result = run_subprocess("sweep", "--once", "--json", env=env, cwd=tmp_path)

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert report["payment_requests_created"] == 7
    assert report["api_calls"] == sandbox.stats()["total"]
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(record.get("event") == "sweep.finished" for record in logged)


def test_subprocess_sweep_from_three_processes_is_one_object_and_every_send(
    env: dict[str, str], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    sandbox.reset_stats()

    result = run_subprocess(
        "sweep", "--once", "--json", env={**env, "DUNNING_SEND_PROCESSES": "3"}, cwd=tmp_path
    )

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # the helpers write nothing on stdout
    report = json.loads(lines[0])
    assert report["payment_requests_created"] == 7
    assert report["outcomes"] == {"sent": 7}
    assert report["api_calls"] == sandbox.stats()["total"]
    assert len(sandbox.payment_requests()) == 7
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    started = [record for record in logged if record.get("event") == "sweep.send_helpers_started"]
    assert len(started) == 1
    assert len(started[0]["pids"]) == 2


def test_missing_licence_stops_every_send_process_and_leaves_nothing_claimed(
    dunning: Dunning, env: dict[str, str], sandbox: SandboxHandle
) -> None:
    sandbox.reset(data=load_data("scenarios"))
    sandbox.set_faults(premium=False)

    result = dunning("sweep", "--once", "--json", env={**env, "DUNNING_SEND_PROCESSES": "2"})

    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "licen" in result.error_lines[0] or "feature_unavailable" in result.error_lines[0]
    assert sandbox.payment_requests() == []
    engine = make_engine(env["DUNNING_DATABASE_URL"])
    try:
        with read_session(engine) as session:
            statuses = Counter(session.scalars(select(PaymentRequestIntent.status)))
    finally:
        engine.dispose()
    assert statuses.total() == 7
    assert statuses["sending"] == 0
    assert statuses["blocked"] >= 1


@pytest.mark.slow
def test_subprocess_errors_are_one_line_with_exit_codes(
    env: dict[str, str], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(data=load_data("one_customer"))
    sandbox.set_faults(premium=False)
    unmigrated = {**env, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}

    blocked = run_subprocess("sweep", "--once", env=env, cwd=tmp_path)
    no_schema = run_subprocess("plan", "--now", "2025-03-06", env=unmigrated, cwd=tmp_path)

    for result, code in ((blocked, 1), (no_schema, 1)):
        assert result.code == code, result.stderr
        assert len(result.error_lines) == 1, result.stderr
        assert result.error_lines[0].startswith("error: ")
        assert "Traceback" not in result.stderr
    assert "dunning db upgrade" in no_schema.error_lines[0]
    assert count_rows(env["DUNNING_DATABASE_URL"])["payment_request_intents"] == 2
