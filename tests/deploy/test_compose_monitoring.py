"""The compose `monitoring` profile: Prometheus scrapes every dunning process where compose
runs it and loads the alerts; Grafana gets that Prometheus and the dashboard. Checked
against docker-compose.yml as `.env.example` resolves it (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT
from tests.deploy.test_compose_readme import dotenv, resolved

PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"


@pytest.fixture(scope="module")
def stack(compose: dict[str, Any]) -> dict[str, Any]:
    env = dotenv((ROOT / ".env.example").read_text())
    result: dict[str, Any] = resolved(compose["services"], env)
    return result


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts of repository files: target in the container -> file here."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def scrape_targets() -> dict[str, list[str]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], []).extend(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            port = dns["port"]
            targets.setdefault(job["job_name"], []).extend(f"{n}:{port}" for n in dns["names"])
    return targets


def test_worker_and_beat_serve_metrics_on_the_network(stack: dict[str, Any]) -> None:
    for name in ("worker", "beat"):
        env = stack[name]["environment"]
        assert env["DUNNING_METRICS_PORT"] == "9100"
        assert env["DUNNING_METRICS_ADDR"] == "0.0.0.0"  # reachable from the prometheus service
        assert not stack[name].get("ports")  # ... and not published on the host


def test_prometheus_scrapes_serve_worker_and_beat_where_they_listen(
    stack: dict[str, Any],
) -> None:
    port = stack["worker"]["environment"]["DUNNING_METRICS_PORT"]
    serve_port = stack["serve"]["command"][stack["serve"]["command"].index("--port") + 1]
    assert scrape_targets() == {
        "dunning-serve": [f"serve:{serve_port}"],
        "dunning-worker": [f"worker:{port}"],
        "dunning-beat": [f"beat:{port}"],
    }


def test_prometheus_loads_the_alerts_file_it_is_given(stack: dict[str, Any]) -> None:
    prometheus = stack["prometheus"]
    files = mounts(prometheus)
    config_path = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    assert files[config_path.split("=", 1)[1]] == PROMETHEUS
    rule_files = yaml.safe_load(PROMETHEUS.read_text())["rule_files"]
    assert [files[path] for path in rule_files] == [ROOT / "deploy" / "prometheus" / "alerts.yml"]


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboard(
    stack: dict[str, Any],
) -> None:
    grafana = stack["grafana"]
    files = mounts(grafana)
    assert files["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dunning.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert files[dashboards] == GRAFANA / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()
    assert home.startswith(dashboards)
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    published = stack["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{published}"
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]  # from .env, required
