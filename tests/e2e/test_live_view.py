"""`dunning run` on a terminal: a real process in a real pseudo-terminal, the sandbox on a
free port, the data dir in tmp. The live panel replaces the log stream (logs go to a file),
its figures match the ledger, commands from a second terminal agree with the running
instance, and Ctrl-C from the terminal stops everything."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from tests.e2e.terminal import Terminal
from tests.fixtures.sandbox import free_port
from tests.tasks.support import DUNNING, REPO_ROOT, child_env, run_dunning, write_policy
from worker.services.report import next_run_at
from worker.store.db import make_engine, read_session
from worker.store.models import DecisionRow, PaymentRequestIntent, SweepRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Beat would sweep again at 00:00 on January 1st only: the initial sweep is the only one.
ONCE_A_YEAR = "0 0 1 1 *"
RUN_LINE = re.compile(
    r"^#(?P<run>\d+)\s+(?P<time>\d\d:\d\d:\d\d)\s+(?P<status>\w+)\s+(?P<invoices>\d+)\s+"
    r"(?P<groups>\d+)\s+(?P<sent>\d+)\s+(?P<rescheduled>\d+)\s+(?P<refused>\d+)\s+"
    r"(?P<in_flight>\d+)\s+(?P<skips>.*)$"
)


def _ledger(db_url: str) -> dict[str, object]:
    """The figures, read here with plain queries (not through the read models)."""
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            (run,) = session.scalars(select(SweepRun)).all()
            statuses = Counter(
                session.scalars(
                    select(PaymentRequestIntent.status).where(PaymentRequestIntent.run_id == run.id)
                )
            )
            rescheduled = session.scalar(
                select(func.count()).where(
                    PaymentRequestIntent.run_id == run.id,
                    PaymentRequestIntent.status == "pending",
                    PaymentRequestIntent.tries > 0,
                )
            )
            skips = dict(
                session.execute(
                    select(DecisionRow.reason, func.count())
                    .where(DecisionRow.run_id == run.id, DecisionRow.reason != "eligible")
                    .group_by(DecisionRow.reason)
                ).all()
            )
            return {
                "run": run.id,
                "status": run.status,
                "invoices": run.invoices_seen,
                "groups": run.groups,
                "sent": statuses["sent"] + statuses["adopted"],
                "rescheduled": rescheduled,
                "refused": statuses["refused"],
                "needs_review": statuses["needs_review"],
                "open": statuses["sending"] + statuses["pending"] - (rescheduled or 0),
                "skips": skips,
            }
    finally:
        engine.dispose()


def _settled(db_url: str) -> bool:
    if not Path(db_url.removeprefix("sqlite:///")).exists():
        return False  # `dunning run` has not made its ledger yet
    engine = make_engine(db_url)
    try:
        with read_session(engine) as session:
            run = session.scalars(select(SweepRun)).first()
            unsent = session.scalar(
                select(func.count()).where(
                    (PaymentRequestIntent.status == "sending")
                    | (
                        (PaymentRequestIntent.status == "pending")
                        & (PaymentRequestIntent.tries == 0)
                    )
                )
            )
            total = session.scalar(select(func.count()).select_from(PaymentRequestIntent))
            return run is not None and run.finished_at is not None and bool(total) and unsent == 0
    except Exception:  # the tables may not exist yet
        return False
    finally:
        engine.dispose()


def _run_line(panel: list[str]) -> dict[str, str]:
    lines = [line.strip() for line in panel]
    start = next(i for i, line in enumerate(lines) if RUN_LINE.match(line))
    match = RUN_LINE.match(lines[start])
    assert match is not None
    values = match.groupdict()
    # reasons wrap onto the next lines of the Skips column
    for line in lines[start + 1 :]:
        if not line or line.startswith(("#", "Sends", "Paid", "Next")):
            break
        values["skips"] += " " + line
    return values


def _skips(text: str) -> dict[str, int]:
    if text.strip() == "-":
        return {}
    return {
        reason: int(count)
        for reason, count in (
            item.strip().rsplit(" ", 1) for item in text.split(",") if item.strip()
        )
    }


def test_the_live_view_shows_what_the_ledger_says(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    db_url = f"sqlite:///{data_dir / 'dunning.sqlite3'}"
    env = child_env(
        DUNNING_DATA_DIR=str(data_dir),
        DUNNING_POLICY_FILE=str(write_policy(tmp_path, cron=ONCE_A_YEAR)),
    )
    port = free_port()
    terminal = Terminal(
        [DUNNING, "run", "--sandbox-port", str(port), "--sandbox-customers", "20",
         "--sandbox-pay-rate", "0"],
        env=env,
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        terminal.wait_for(lambda: _settled(db_url), timeout=180, what="the first sweep's sends")
        expected = _ledger(db_url)
        assert expected["sent"]

        def panel_agrees() -> bool:
            panels = terminal.panels()
            return (
                bool(panels)
                and any(RUN_LINE.match(line.strip()) for line in panels[-1])
                and (
                    _run_line(panels[-1])["sent"] == str(expected["sent"])
                    and "Sends in flight 0" in "\n".join(panels[-1])
                )
            )

        terminal.wait_for(panel_agrees, timeout=30, what="the panel to show the sends")
        panel = terminal.panels()[-1]
        text = "\n".join(panel)
        shown = _run_line(panel)
        assert shown["run"] == str(expected["run"])
        assert shown["status"] == expected["status"] == "succeeded"
        assert int(shown["invoices"]) == expected["invoices"]
        assert int(shown["groups"]) == expected["groups"]
        assert int(shown["sent"]) == expected["sent"]
        assert int(shown["rescheduled"]) == expected["rescheduled"]
        assert int(shown["refused"]) == expected["refused"]
        assert int(shown["in_flight"]) == expected["open"] == 0
        assert _skips(shown["skips"]) == expected["skips"]
        assert f"needs review {expected['needs_review']}" in text
        assert f"http://127.0.0.1:{port}" in text  # the sandbox kept the port it was given
        next_tick = next_run_at(ONCE_A_YEAR, datetime.now(UTC))
        assert f"Next sweep {next_tick:%Y-%m-%d %H:%M:%S} UTC" in text
        log_file = data_dir / "logs" / "dunning.log"
        assert str(log_file) in text
        # the logs went to the file, as JSON lines; none reached the terminal
        lines = log_file.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) > len(lines) - 3  # the sandbox's start line is plain text
        assert any(record["event"] == "sweep.sends_finished" for record in records)
        screen = terminal.text()
        assert '"event"' not in screen
        assert "celery@" not in screen
        assert "SecurityWarning" not in screen

        _second_terminal_agrees(data_dir, tmp_path, expected, port)

        children = psutil.Process(terminal.process.pid).children(recursive=True)
        terminal.press_ctrl_c()
        assert terminal.process.wait(timeout=90) == 130, terminal.text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert "stopping" in terminal.text().split("╭")[-1]
        assert not (data_dir / "instance.json").exists()
    finally:
        terminal.close()


def _second_terminal_agrees(
    data_dir: Path, tmp_path: Path, expected: dict[str, object], port: int
) -> None:
    """Commands with only the data dir set use what the running instance runs, and say so."""
    env = child_env(DUNNING_DATA_DIR=str(data_dir))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_dunning(env, *args)

    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert "using the running `dunning run`" in status.stderr
    (line,) = json.loads(status.stdout)["last_sweeps"]
    assert line["sends"]["sent"] == expected["sent"]
    assert line["sends"]["rescheduled"] == expected["rescheduled"]

    plan = run("plan", "--json")
    assert plan.returncode == 0, plan.stderr  # no LAGO_API_URL here: the instance's sandbox
    assert f"Lago http://127.0.0.1:{port} (sandbox)" in plan.stderr
    assert f"policy {tmp_path / 'policies.yaml'}" in plan.stderr
    assert {group["policy"] for group in json.loads(plan.stdout)["groups"]} == {"everyone"}

    check = run("policy", "check")
    assert check.returncode == 0, check.stderr
    assert "everyone" in check.stdout  # the worker's policy file, not config/policies.yaml

    enqueue = run("enqueue", "reconcile")
    assert enqueue.returncode == 0, enqueue.stderr
    assert "warning" not in enqueue.stderr  # the worker answered the ping
