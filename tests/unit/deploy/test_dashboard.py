"""The Grafana dashboard: generated from scripts/dashboard.py, shipped by the chart as a sidecar ConfigMap, and
every query of it and of the alert rules parses and names only metrics the operator exports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from finetune_operator.controller.metrics import Metrics
from tests.monitoring import (
    DASHBOARD_FILE,
    PROMETHEUS_OWN,
    RULES_FILE,
    as_prometheus_sees_it,
    dashboard_queries,
    declared_names,
    metric_names,
    rule_queries,
)
from tests.toolchain import run_tool

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "finetune-operator"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "scripts" / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _exported() -> set[str]:
    """The sample names the operator's /metrics declares, made in-process as `finetune-operator run` makes them."""
    registry = CollectorRegistry()
    Metrics(registry).add_finetunejob_gauges(dict, dict)
    return declared_names(generate_latest(registry).decode())


def _configmaps(*settings: str) -> list[dict[str, Any]]:
    args = [arg for setting in settings for arg in ("--set", setting)]
    text = run_tool("helm", "template", "fto", str(CHART), "--namespace", "ops", *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc and doc["kind"] == "ConfigMap"]


def test_the_dashboard_and_the_charts_copy_are_generated() -> None:
    for path, text in _generator().generated().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `make monitoring`"


def test_the_panels_answer_the_questions() -> None:
    board = json.loads(DASHBOARD_FILE.read_text())
    rows: dict[str, list[str]] = {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            rows[panel["title"]] = []
        else:
            list(rows.values())[-1].append(panel["title"])
    assert rows == {
        "Trainings": ["Trainings by phase", "FineTuneJobs", "Failures by reason", "Queue wait"],
        "Training progress": [
            "Progress",
            "Loss",
            "Tokens per second",
            "ETA",
            "Stalled trainings",
            "Checkpoints",
            "Last checkpoint save",
        ],
        "GPU-hours": ["GPU-hours by namespace", "Accelerators in use", "GPU-hours per training"],
        "Operator": ["Reconciles", "Reconcile errors", "Reconcile latency", "Leader", "Kubernetes API requests"],
    }
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for t in panel["targets"])
            # The grid is 24 wide: no panel overlaps another or leaves the grid.
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in board["panels"]
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_the_chart_ships_the_dashboard_to_grafanas_sidecar_when_asked() -> None:
    assert _configmaps() == []
    (made,) = _configmaps(
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.namespace=monitoring",
        "metrics.grafanaDashboard.annotations.grafana_folder=FineTune",
    )
    assert made["metadata"]["name"] == "fto-finetune-operator-dashboard"
    assert made["metadata"]["namespace"] == "monitoring"
    assert made["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert made["metadata"]["annotations"] == {"grafana_folder": "FineTune"}
    assert made["data"] == {"finetune-operator-dashboard.json": DASHBOARD_FILE.read_text().rstrip("\n")}
    (default_namespace,) = _configmaps("metrics.grafanaDashboard.enabled=true")
    assert default_namespace["metadata"]["namespace"] == "ops"


QUERIES = {**{f"rule {name}": expr for name, expr in rule_queries().items()}, **dashboard_queries()}


@pytest.mark.parametrize("query", QUERIES.values(), ids=list(QUERIES))
def test_each_query_parses_and_names_only_metrics_the_operator_exports(query: str) -> None:
    names = metric_names(query)
    assert names, query
    assert names - PROMETHEUS_OWN <= _exported(), sorted(names - PROMETHEUS_OWN - _exported())


def test_the_dashboard_queries_every_metric_of_a_training() -> None:
    used = {name for query in dashboard_queries().values() for name in metric_names(query)}
    training = {name for name in _exported() if name.startswith("finetune_operator_training_")}
    assert training <= used, sorted(training - used)


def test_a_metric_the_operator_does_not_export_is_caught() -> None:
    assert metric_names('rate(finetune_operator_gpu_hours{namespace=~"$namespace"}[$__rate_interval])') == {
        "finetune_operator_gpu_hours"
    }
    assert "finetune_operator_gpu_hours" not in _exported()
    with pytest.raises(ValueError):
        metric_names("sum by (namespace (finetune_operator_training_loss)")


def test_a_counter_series_new_in_the_time_range_counts_with_all_it_holds(tmp_path: Path) -> None:
    """The failures panel, by promtool: a namespace's first failures make a new series at 1, which
    `increase()` alone would read as 0; an older series counts by its increase only."""
    query = as_prometheus_sees_it(dashboard_queries()["Failures by reason A"], namespace=".*", **{"__range": "1h"})
    first_failures = 'finetune_operator_failures_total{namespace="team-a",reason="TrainerReportedFailure"}'
    old_failures = 'finetune_operator_failures_total{namespace="team-b",reason="OOMKilled"}'
    unit_test = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # team-a fails for the first time at 40m, again at 50m.
                    {"series": first_failures, "values": "_x40 1x9 2x60"},
                    # team-b failed 3 times before the hour up to 90m, never in it.
                    {"series": old_failures, "values": "3x120"},
                ],
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "90m",
                        "exp_samples": [
                            {"labels": '{namespace="team-a",reason="TrainerReportedFailure"}', "value": 2},
                            {"labels": '{namespace="team-b",reason="OOMKilled"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "failures.yaml"
    path.write_text(yaml.safe_dump(unit_test))
    assert run_tool("promtool", "test", "rules", str(path)).stdout.count("SUCCESS") == 1
