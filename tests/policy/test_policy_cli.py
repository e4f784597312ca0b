"""`dunning policy check`: a summary for a good file, one line on stderr and exit 2 otherwise."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from worker.cli.policy_cmd import register

GOOD = """\
version: 1
schedule: {cron: "5 * * * *"}
policies:
  - name: enterprise
    match: {metadata: {segment: enterprise}}
    min_overdue_cents: {USD: 5000}
    grace_days: 4
    days_between_attempts: 6
    max_attempts: 3
    send_window: {start_hour: 9, end_hour: 17, weekdays: [mon, tue, wed, thu, fri]}
    on_exhausted: {action: stop}
"""


def run(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        """Test root so `policy` stays a sub-command."""

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_check_prints_summary_and_cron(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)

    code, out, _ = run("policy", "check", str(path))

    assert code == 0
    for expected in ("enterprise", "metadata.segment=enterprise", "USD 5000", "4d", ">6d",
                     "09-17h mon-fri", "stop", "5 * * * *", "1 policies OK"):  # fmt: skip
        assert expected in out


def test_check_reports_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace("5000", "-1"))

    code, out, err = run("policy", "check", str(path))

    assert code == 2
    assert out == ""
    assert err.strip() == f"{path}: policies[0].min_overdue_cents.USD: must be >= 0 (got -1)"


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run("policy", "check", str(tmp_path / "missing.yaml"))

    assert code == 2
    assert "missing.yaml: file not found" in err
    assert "Traceback" not in err


STEPPED = """\
version: 1
holdout_salt: q4
policies:
  - name: stepped
    version: 7
    min_overdue_cents: {EUR: 1000}
    email: {metadata_key: finance_email}
    contact_cap: {max_requests: 1, per_days: 3}
    holdout_percent: 5
    send_window: {start_hour: 9, end_hour: 17, skip_holidays: true}
    steps:
      - {after_days: 0}
      - {after_days: 7, email: cfo@buyer.example}
"""


def test_check_shows_steps_calendars_caps_holdouts_and_version(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(STEPPED)

    code, out, _ = run("policy", "check", str(path))

    assert code == 0, out
    expected = ["day 0", "day 7 to cfo@buyer.example", "no holidays (customer country)",
                "metadata.finance_email", "version 7", "cap 1 per 3d", "holdout 5%"]  # fmt: skip
    for text in expected:
        assert text in out
