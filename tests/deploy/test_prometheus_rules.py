"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`) and behaving as
its unit tests say (`promtool test rules`). CI installs promtool (Debian's `prometheus`
package) and sets DUNNING_REQUIRE_PROMTOOL=1, so there these tests fail instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
REQUIRED_ALERTS = {
    "DunningNoSuccessfulSweep",
    "DunningNeedsReviewGrowing",
    "DunningLagoRateLimited",
    "DunningLagoUnauthorized",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("DUNNING_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed")
    return found


def run(promtool: str, *args: str, cwd: Path = RULES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_for_prometheus(promtool: str) -> None:
    checked = run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_a_broken_rule_is_caught(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = RULES.read_text().replace("> 0.05", "> > 0.05", 1)
    assert text != RULES.read_text()
    broken.write_text(text)
    checked = run(promtool, "check", "rules", str(broken))
    assert checked.returncode != 0


def test_the_alerts_behave_as_their_unit_tests_say(promtool: str) -> None:
    tested = run(promtool, "test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_issue_s_alerts_are_there_and_unit_tested() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names >= REQUIRED_ALERTS
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing >= REQUIRED_ALERTS
    assert all(rule.get("annotations", {}).get("summary") for rule in rules())


def test_the_compose_prometheus_config_is_valid_and_loads_the_alerts(
    promtool: str, tmp_path: Path
) -> None:
    config = (RULES.parent / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config  # where docker-compose.yml mounts it
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/alerts.yml", str(RULES))
    )
    checked = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
