"""The alert rules: generated from scripts/alert_rules.py, valid for promtool, each alert unit-tested by promtool,
and the chart's PrometheusRule the same rules with its values as thresholds.

promtool is the one `e2e/cluster build` builds (Prometheus v3.16, e2e/toolchain/prometheus); without it
these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.toolchain import run_tool

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "finetune-operator"
RULES_FILE = ROOT / "deploy" / "monitoring" / "finetune-operator-rules.yaml"
UNIT_TESTS = sorted((Path(__file__).parent / "alerts").glob("*.yaml"))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("alert_rules", ROOT / "scripts" / "alert_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}


def _prometheus_rule(*settings: str, release: str = "finetune-operator") -> dict[str, Any] | None:
    args = [arg for setting in settings for arg in ("--set", setting)]
    text = run_tool("helm", "template", release, str(CHART), "--namespace", "ops", *args).stdout
    found = [doc for doc in yaml.safe_load_all(text) if doc and doc["kind"] == "PrometheusRule"]
    assert len(found) <= 1
    return found[0] if found else None


def test_the_rules_file_and_the_chart_template_are_generated() -> None:
    for path, text in _generator().generated().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `make monitoring`"


def test_promtool_checks_the_rules_file() -> None:
    result = run_tool("promtool", "check", "rules", str(RULES_FILE))
    assert f"SUCCESS: {len(_alerts(yaml.safe_load(RULES_FILE.read_text())))} rules found" in result.stdout


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=[path.stem for path in UNIT_TESTS])
def test_promtool_unit_test_of_an_alert(unit_test: Path) -> None:
    result = run_tool("promtool", "test", "rules", str(unit_test))
    assert result.stdout.count("SUCCESS") == 1, result.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_must_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../../../../deploy/monitoring/finetune-operator-rules.yaml"]
        for case in (c for test in spec["tests"] for c in test["alert_rule_test"]):
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    alerts = set(_alerts(yaml.safe_load(RULES_FILE.read_text())))
    assert fires == alerts
    assert silent == alerts


def test_the_chart_ships_no_rule_unless_asked() -> None:
    assert _prometheus_rule() is None
    assert _prometheus_rule("metrics.prometheusRule.enabled=true", "metrics.enabled=false") is None


def test_the_charts_rule_with_its_default_values_is_the_plain_rules_file() -> None:
    made = _prometheus_rule("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps")
    assert made is not None
    assert made["metadata"]["name"] == "finetune-operator"
    assert made["metadata"]["labels"]["release"] == "kps"
    assert made["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_the_charts_thresholds_are_its_values(tmp_path: Path) -> None:
    made = _prometheus_rule(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.pendingFor=1h",
        "metrics.prometheusRule.queuedFor=1d",
        "metrics.prometheusRule.noProgressFor=30m",
        "metrics.prometheusRule.operatorDownFor=1m",
        "metrics.prometheusRule.notLeadingFor=90s",
        "metrics.prometheusRule.reconcileErrors=3",
        "metrics.prometheusRule.reconcileErrorsWindow=30m",
        release="fto",
    )
    assert made is not None
    alerts = _alerts(made["spec"])
    fors = {name: rule.get("for") for name, rule in alerts.items()}
    assert fors == {
        "FineTuneJobFailed": None,
        "FineTuneJobPendingTooLong": "1h",
        "FineTuneJobQueuedTooLong": "1d",
        "FineTuneJobNoProgress": "30m",
        "FineTuneOperatorDown": "1m",
        "FineTuneOperatorNotLeading": "90s",
        "FineTuneOperatorReconcileErrors": None,
    }
    # The job defaults to the metrics Service's name, which a ServiceMonitor gives its targets.
    assert alerts["FineTuneOperatorDown"]["expr"] == 'absent(up{job="fto-finetune-operator-metrics"} == 1)'
    assert alerts["FineTuneOperatorReconcileErrors"]["expr"] == (
        "sum by (controller) (increase(controller_runtime_reconcile_errors_total"
        '{job="fto-finetune-operator-metrics",controller="finetunejob"}[30m])) > 3'
    )
    assert alerts["FineTuneJobPendingTooLong"]["annotations"]["summary"] == (
        "FineTuneJob {{ $labels.namespace }}/{{ $labels.name }} has been Pending for more than 1h"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(made["spec"]))
    assert "SUCCESS: 7 rules found" in run_tool("promtool", "check", "rules", str(rules)).stdout


def test_a_job_label_of_ones_own() -> None:
    made = _prometheus_rule("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.job=finetune")
    assert made is not None
    assert _alerts(made["spec"])["FineTuneOperatorNotLeading"]["expr"] == (
        'max by (name) (leader_election_master_status{job="finetune"}) == 0'
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("metrics.prometheusRule.pendingFor=15min", "at '/metrics/prometheusRule/pendingFor': '15min' does not match"),
        ("metrics.prometheusRule.reconcileErrors=-1", "at '/metrics/prometheusRule/reconcileErrors': minimum"),
        ('metrics.prometheusRule.job=a"b', "at '/metrics/prometheusRule/job': 'a\"b' does not match pattern"),
    ],
)
def test_thresholds_that_are_no_durations_are_refused(setting: str, message: str) -> None:
    result = run_tool("helm", "template", "fto", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert message in result.stderr, result.stderr
