"""Grafana dashboards and Prometheus alerts query only metrics (and labels) the code emits."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import metrics
from common.settings import FUNCTION_NAMES

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DASHBOARDS = sorted((CONFIG / "grafana" / "dashboards").glob("*.json"))
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# The functions' own metrics, and the process and Python runtime metrics on the same registry.
METRIC_REFERENCE = re.compile(r"\b(?:victor|process|python)_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b((?:victor|process|python)_[a-z0-9_]+)\{([^}]*)\}")
# Labels the scrape adds to every series of a target (prometheus.yml's `service`, Prometheus's own).
TARGET_LABELS = ("service", "instance", "job")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def function_metric_modules() -> dict[str, Any]:
    """Every functions.<name>.metrics module that exists, imported (they register on common's registry)."""
    modules = {}
    for name in FUNCTION_NAMES:
        module_name = f"functions.{name}.metrics"
        if importlib.util.find_spec(f"functions.{name}") and importlib.util.find_spec(module_name):
            modules[name] = importlib.import_module(module_name)
    return modules


def emitted_series() -> dict[str, tuple[str, ...]]:
    """Each series name the registry can expose, with the labels it carries."""
    function_metric_modules()
    importlib.import_module("eventing.broker.dispatch")  # the local broker's delivery metrics
    importlib.import_module("eventing.dead_letters")  # the dead-letter sink's count
    series: dict[str, tuple[str, ...]] = {}
    collectors: list[Any] = list(metrics.REGISTRY._collector_to_names)  # no public listing exists
    for collector in collectors:
        labels = tuple(getattr(collector, "_labelnames", ()))
        # The process and GC collectors have no describe(); their collect() gives samples with labels.
        families = collector.describe() if hasattr(collector, "describe") else collector.collect()
        for family in families:
            sampled = tuple(dict.fromkeys(k for sample in family.samples for k in sample.labels))
            for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
                extra = ("le",) if suffix == "_bucket" else ()
                series[family.name + suffix] = (labels or sampled) + extra
    return series


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((CONFIG / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]


def unknown_references(expression: str, series: dict[str, tuple[str, ...]]) -> list[str]:
    """Metric names and label names in `expression` that nothing emits."""
    problems = [f"metric {name}" for name in METRIC_REFERENCE.findall(expression) if name not in series]
    used = [name for name in METRIC_REFERENCE.findall(expression) if name in series]
    for name, matchers in SELECTOR.findall(expression):
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
            if name in series and label not in (*series[name], *TARGET_LABELS):
                problems.append(f"label {label} on {name}")
    available = {label for name in used for label in series[name]} | set(TARGET_LABELS)
    for grouping in GROUPING.findall(expression):
        for label in (part.strip() for part in grouping.split(",")):
            if label and label not in available:
                problems.append(f"label {label} in by/without")
    return problems


def test_the_registry_holds_the_architecture_metric_names() -> None:
    series = emitted_series()
    for name in (
        "victor_api_requests_total",
        "victor_api_duration_seconds_bucket",
        "victor_api_errors_total",
        "victor_cache_hit_ratio",
        "victor_events_total",
    ):
        assert name in series


@pytest.mark.parametrize(("where", "expression"), all_queries(), ids=[q[0] for q in all_queries()])
def test_every_query_uses_only_emitted_metrics_and_labels(where: str, expression: str) -> None:
    assert METRIC_REFERENCE.search(expression), f"{where} queries no metric the functions emit"
    assert unknown_references(expression, emitted_series()) == []
    assert expression.count("(") == expression.count(")")


def test_the_checker_catches_an_unknown_metric_and_label() -> None:
    series = emitted_series()
    assert unknown_references(
        'sum by (route) (rate(victor_api_requestz_total{status="500"}[5m]))', series
    ) == [
        "metric victor_api_requestz_total",
        "label route in by/without",
    ]
    assert unknown_references('rate(victor_events_total{tool="x"}[1m])', series) == [
        "label tool on victor_events_total"
    ]


def test_each_function_metrics_module_has_a_dashboard_panel() -> None:
    queried = " ".join(expression for _, expression in dashboard_queries())
    modules = function_metric_modules()
    assert modules, "no functions.<name>.metrics module found"
    for name, module in modules.items():
        family_names = {
            family.name
            for value in vars(module).values()
            if hasattr(value, "describe") and hasattr(value, "_labelnames")
            for family in value.describe()
        }
        assert family_names, f"functions.{name}.metrics defines no metric"
        assert any(family in queried for family in family_names), f"no panel queries functions.{name}.metrics"


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["alert"].startswith("Victor")
        assert rule["labels"]["severity"] in ("page", "ticket", "info")
        assert rule["annotations"]["summary"]


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    datasources = yaml.safe_load(
        (CONFIG / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (CONFIG / "grafana" / "provisioning" / "dashboards" / "victor.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARDS
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids = {p["datasource"]["uid"] for p in dashboard["panels"] if p["type"] != "row"}
        assert uids == {prometheus["uid"]}
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))


def test_prometheus_scrapes_every_compose_service_and_loads_the_alerts() -> None:
    config = yaml.safe_load((CONFIG / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]
    }
    assert targets == {f"{name}:8080" for name in (*FUNCTION_NAMES, "broker")}
