"""`dunning backtest` on a generated sandbox history, read through the real Lago client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from config.policies import parse_policies
from tests.fixtures.sandbox import SandboxHandle
from worker.cli.errors import CliError, describe
from worker.lago.client import LagoClient
from worker.services.backtest import run_backtest
from worker.services.backtest_history import cache_path, load_history

GAP = b"""version: 1
schedule: {cron: "0 */6 * * *"}
policies:
  - name: gap
    min_overdue_cents: {USD: 1000, EUR: 1000, GBP: 1000, AUD: 1000, SGD: 1000, INR: 1000}
    grace_days: 3
    days_between_attempts: 3
    max_attempts: 3
"""
STEPS = GAP.replace(
    b"    days_between_attempts: 3\n    max_attempts: 3\n",
    b"    contact_cap: {max_requests: 1, per_days: 7}\n"
    b"    steps: [{after_days: 3}, {after_days: 14}]\n",
)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _client(sandbox: SandboxHandle) -> LagoClient:
    return LagoClient(sandbox.url, SecretStr(sandbox.api_key), timeout_s=30, max_retries=0)


def test_history_is_fetched_once_then_read_from_the_cache(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(customers=120, seed=11, history_days=150)
    with _client(sandbox) as client:
        first = load_history(client, data_dir=tmp_path, base_url=sandbox.url, now=NOW)
        assert first.source == "Lago"
        assert first.api_calls > 3
        assert cache_path(tmp_path, sandbox.url).exists()
        sandbox.reset_stats()
        again = load_history(client, data_dir=tmp_path, base_url=sandbox.url, now=NOW)
    assert sandbox.stats()["total"] == 0
    assert again.api_calls == 0
    assert again.invoices == first.invoices
    assert len(first.invoices) == 120 * 5 or len(first.invoices) >= 120 * 4
    paid = [i for i in first.invoices.values() if i.paid_at is not None]
    assert paid
    assert all(i.paid_at is not None and i.paid_at >= i.issued_at for i in paid)
    assert first.recorded  # the past payment requests
    assert all(t.invoice_ids for t in first.recorded)


def test_two_policies_are_compared_over_the_same_history(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.reset(customers=150, seed=4, history_days=150)
    with _client(sandbox) as client:
        history = load_history(client, data_dir=tmp_path, base_url=sandbox.url, now=NOW)
    start, end = datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    result = run_backtest(
        history,
        [("gap", parse_policies(GAP)), ("steps", parse_policies(STEPS))],
        start=start,
        end=end,
    )
    gap, steps = (run.figures for run in result.runs)
    assert gap.touches > steps.touches > 0  # two steps per cycle against three attempts
    assert set(gap.by_attempt) == {1, 2, 3}
    assert set(steps.by_attempt) == {1, 2}
    assert 0 < gap.paid_within[7] <= gap.paid_within[14] <= gap.paid_within[30] <= 1
    payload = result.to_json()
    assert payload["difference"]["touches"] == steps.touches - gap.touches  # type: ignore[index]
    assert "cannot tell a payment a touch caused" in " ".join(payload["caveats"])  # type: ignore[arg-type]
    assert result.recorded.touches == sum(1 for t in history.recorded if start <= t.at <= end)


def test_the_command_prints_json_and_fails_in_one_line_on_a_bad_date(
    sandbox: SandboxHandle, tmp_path: Path, monkeypatch
) -> None:
    from worker.cli import app

    sandbox.reset(customers=30, seed=2, history_days=90)
    policy = tmp_path / "gap.yaml"
    policy.write_bytes(GAP)
    for name, value in {
        "LAGO_API_URL": sandbox.url,
        "LAGO_API_KEY": sandbox.api_key,
        "DUNNING_DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    ok = runner.invoke(
        app, ["backtest", "--policy", str(policy), "--from", "2026-10-01", "--to", "2026-11-01",
              "--json"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    figures = json.loads(ok.stdout)["policies"][0]
    assert figures["file"] == str(policy)
    assert figures["touches"] > 0
    bad = runner.invoke(
        app, ["backtest", "--policy", str(policy), "--from", "October", "--to", "2026-11-01"]
    )
    # run_cli (the console script) turns this into one line on stderr and exit 2.
    assert isinstance(bad.exception, CliError)
    assert describe(bad.exception) == (
        "invalid --from 'October': use a date like 2026-06-01",
        2,
    )
