"""The Grafana dashboard and the alert rules name only metrics our code exports, and the
dashboard shows every one of them. Names come from the metric objects in worker/metrics.py
and the ledger collector, with the sample suffixes Prometheus stores (_total; _bucket, _sum,
_count)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from tests.deploy.conftest import ROOT
from worker import metrics
from worker.metrics_ledger import metric_families as ledger_families

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "dunning.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
KEYWORDS = {"by", "without", "on", "ignoring", "offset", "bool", "and", "or", "unless"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?")


def _families() -> Iterator[Metric]:
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            yield from value.describe()
    yield from ledger_families().values()


def exported() -> dict[str, str]:
    """Every sample name Prometheus can store from us -> its family."""
    return {
        family.name + suffix: family.name
        for family in _families()
        for suffix in SUFFIXES[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, label names,
    strings, ranges and Grafana variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name not in KEYWORDS:
            names.add(name)
    return names


def dashboard_expressions() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    data = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in panels(data["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def rule_expressions() -> list[str]:
    data = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in data["groups"] for rule in group["rules"]]


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (endpoint, le) (rate(a_bucket{status="429"}'
        "[$__rate_interval]))) / on() max(b offset 1h) > 2 * (max(c) or vector(900))"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert metric_names("time() - max(d)") == {"d"}


@pytest.mark.parametrize(
    ("where", "expressions"),
    [("dashboard", dashboard_expressions()), ("alerts.yml", rule_expressions())],
)
def test_every_expression_names_exported_metrics_only(where: str, expressions: list[str]) -> None:
    assert expressions
    known = exported()
    for expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known.keys()
        assert not unknown, f"{where}: {sorted(unknown)} not exported (in {expr!r})"


def test_the_dashboard_shows_every_exported_metric() -> None:
    shown = {exported()[name] for expr in dashboard_expressions() for name in metric_names(expr)}
    assert shown == set(exported().values())


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    datasource = yaml.safe_load(
        (
            ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
        ).read_text()
    )["datasources"][0]
    data = json.loads(DASHBOARD.read_text())
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_the_readme_lists_every_exported_metric_with_its_type() -> None:
    section = (ROOT / "README.md").read_text().split("## Metrics and alerts", 1)[1]
    section = section.split("\n## ", 1)[0]
    listed = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`dunning_"):
            listed[cells[0].strip("`")] = cells[1].split()[0]
    families = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in _families()
    }
    assert listed == families
