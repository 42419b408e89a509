"""A real Prometheus scrapes the operator during trainings on the local cluster, with the shipped alert rules.

kwok serves a trainer log the test grows step by step (as in test_progress.py); the test asks Prometheus's
HTTP API what it stored: the progress reaching 100, the loss falling step by step, the GPU-seconds
growing, and the FineTuneJobFailed alert firing for a failing FineTuneJob and for no other. Every metric
the dashboard and the rules query is declared by the operator's real /metrics, and stored by Prometheus
when the operator served samples of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.prometheus import Prometheus

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.monitoring import (
    RULES_FILE,
    as_prometheus_sees_it,
    dashboard_queries,
    declared_names,
    rule_queries,
    used_names,
)
from tests.rule_cases import finetunejob
from tests.toolchain import tool

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
#: The scrape job of the shipped rules' default: the metrics Service's name in the plain manifests.
JOB = "finetune-operator-metrics"
AI100 = "phison.com/ai100"
#: One accelerator, so that GPU-seconds accrue while the training runs.
ON_ONE_AI100 = {**LIGHT, "resources": {"requests": {"cpu": "10m", AI100: "1"}, "limits": {"cpu": "10m", AI100: "1"}}}
#: The loss of each step of two-epochs-capped.log, in order.
LOSSES = [10.5, 9.25, 8.0, 7.75, 6.5, 6.125]


@pytest.fixture
def prometheus(running: OperatorProcess, tmp_path: Path) -> Iterator[Prometheus]:
    tool("prometheus")  # CI fails without it; elsewhere the test skips saying so
    server = Prometheus(tmp_path / "prometheus", {JOB: [f"127.0.0.1:{running.metrics_port}"]}, [RULES_FILE])
    server.start()
    try:
        server.wait_for(lambda: server.query(f'up{{job="{JOB}"}} == 1'), what="scrape of the operator")
        yield server
    finally:
        server.stop()


def _value(prometheus: Prometheus, expr: str) -> float | None:
    found = prometheus.query(expr)
    return float(found[0]["value"][1]) if len(found) == 1 else None


def _wait_value(prometheus: Prometheus, expr: str, expected: float) -> None:
    prometheus.wait_for(lambda: _value(prometheus, expr) == expected or None, what=f"{expr} == {expected}")


def _panel(prometheus: Prometheus, panel: str, namespace: str) -> list[dict[str, Any]]:
    """The answer of a dashboard query ('<panel title> <refId>'), ``namespace`` and the operator's job picked."""
    return prometheus.query(as_prometheus_sees_it(dashboard_queries()[panel], namespace=namespace, job=JOB))


def _steps(text: str) -> list[str]:
    """The log cut after each step's end line (the last part holds the checkpoint and the end)."""
    parts, current = [], []
    for line in text.splitlines(keepends=True):
        current.append(line)
        if "[PHISON END]" in line:
            parts.append("".join(current))
            current = []
    parts[-1] += "".join(current)
    return parts


def _distinct(values: list[list[Any]]) -> list[float]:
    """The values of a range answer, a repeated one kept once."""
    kept: list[float] = []
    for _, value in values:
        if not kept or kept[-1] != float(value):
            kept.append(float(value))
    return kept


def test_prometheus_sees_the_training_progress_its_loss_fall_and_gpu_seconds_grow(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, prometheus: Prometheus, tmp_path: Path
) -> None:
    started = time.time()
    log = tmp_path / "trainer.log"
    log.write_text("")
    local_cluster.fake_logs(namespace, log)
    local_cluster.hold_namespace(namespace)
    local_cluster.apply(finetunejob(ON_ONE_AI100, name="learns"), namespace=namespace)
    wait_phase(local_cluster, namespace, "learns", "Running", running)
    training = f'{{namespace="{namespace}",name="learns"}}'
    _wait_value(prometheus, f'finetune_operator_finetunejob_phase{{namespace="{namespace}",phase="Running"}}', 1)

    used = f'finetune_operator_accelerator_seconds_total{{namespace="{namespace}",resource="{AI100}"}}'
    gpu_seconds: list[float] = []  # the namespace's counter as each step is seen
    steps = _steps((FIXTURES / "two-epochs-capped.log").read_text())
    assert len(steps) == len(LOSSES)
    for text, loss in zip(steps, LOSSES, strict=True):
        lc.append_log(log, text)
        _wait_value(prometheus, f"finetune_operator_training_loss{training}", loss)
        gpu_seconds.append(_value(prometheus, used) or 0.0)
    _wait_value(prometheus, f"finetune_operator_training_progress_percent{training}", 100)
    _wait_value(prometheus, f"finetune_operator_training_checkpoints{training}", 1)  # the log's one save

    # The loss Prometheus stored, second by second: each step's loss, in the log's order, falling. (The
    # range ends a step past now: its last step then sees the sample the instant query above saw.)
    (series,) = prometheus.query_range(f"finetune_operator_training_loss{training}", started, time.time() + 1)
    assert _distinct(series["values"]) == LOSSES
    progress = f"finetune_operator_training_progress_percent{training}"
    (series,) = prometheus.query_range(progress, started, time.time() + 1)
    assert _distinct(series["values"]) == [16, 33, 50, 66, 83, 100]  # floor(step / 6 steps)
    # GPU-seconds of the namespace (chargeback) grow with the status writes while the training holds
    # its accelerator (the operator counts them with a write that is due anyway: a new log line).
    assert gpu_seconds == sorted(gpu_seconds) and gpu_seconds[-1] > gpu_seconds[0], gpu_seconds

    # Every query of the dashboard runs on the real Prometheus, the namespace and the job picked.
    answers = {panel: _panel(prometheus, panel, namespace) for panel in dashboard_queries()}
    # Empty only where this run has nothing to show: no failure, no save that ended (the log's one save
    # has no end line), no peering, and no reconcile error unless the operator counted one. (It is the
    # session's operator: an earlier test's faults may have made its errors counter, which has no
    # namespace; the first CI rehearsal with this test met that.)
    empty = {panel for panel, answer in answers.items() if not answer}
    assert empty - {"Reconcile errors A"} == {"Failures by reason A", "Last checkpoint save A", "Leader A"}
    if "controller_runtime_reconcile_errors_total{" not in running.metrics():
        assert "Reconcile errors A" in empty
    (loss,) = answers["Loss A"]
    assert (loss["metric"], loss["value"][1]) == ({"namespace": namespace, "name": "learns"}, "6.125")
    # The training's one wait counts although its series is new (increase() alone would read it as 0).
    assert all(math.isfinite(float(answer["value"][1])) for answer in answers["Queue wait A"])
    # The shipped rules loaded and evaluate without error.
    (group,) = prometheus.api("rules")["groups"]
    assert {rule["name"]: rule["health"] for rule in group["rules"]} == dict.fromkeys(rule_queries(), "ok")

    # What the dashboard and the rules query: declared by the real /metrics, and stored by Prometheus
    # wherever the operator served samples of it in this run.
    exposition = running.metrics()
    assert used_names() <= declared_names(exposition), sorted(used_names() - declared_names(exposition))
    served = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and line[0] != "#"}
    stored = prometheus.metric_names(f'{{job="{JOB}"}}', started)
    assert used_names() & served <= stored, sorted(used_names() & served - stored)
    assert {
        "finetune_operator_finetunejob_phase",
        "finetune_operator_training_progress_percent",
        "finetune_operator_training_loss",
        "finetune_operator_training_tokens_per_second",
        "finetune_operator_training_remaining_seconds",
        "finetune_operator_training_checkpoints",
        "finetune_operator_accelerator_seconds_total",
        "finetune_operator_training_accelerator_seconds",
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds_bucket",
    } <= used_names() & stored

    local_cluster.release_namespace(namespace)
    ftj = wait_phase(local_cluster, namespace, "learns", "Succeeded", running)
    _wait_value(prometheus, f'finetune_operator_finetunejob_phase{{namespace="{namespace}",phase="Succeeded"}}', 1)
    # In the end, the counter and the training's gauge are what its status holds: GPU-hours to bill.
    (held,) = ftj["status"]["usage"]["acceleratorSeconds"]
    assert held["resource"] == AI100 and held["seconds"] >= gpu_seconds[-1]
    _wait_value(prometheus, used, held["seconds"])
    _wait_value(
        prometheus,
        f'finetune_operator_training_accelerator_seconds{{namespace="{namespace}",name="learns",resource="{AI100}"}}',
        held["seconds"],
    )
    (hours,) = _panel(prometheus, "GPU-hours by namespace A", namespace)
    assert (hours["metric"], float(hours["value"][1])) == (
        {"namespace": namespace, "resource": AI100},
        held["seconds"] / 3600,
    )
    # A training that succeeded never alerts as failed.
    never = f'ALERTS{{alertname="FineTuneJobFailed",namespace="{namespace}"}}'
    assert prometheus.query_range(never, started, time.time()) == []


def test_the_failed_training_alert_fires_for_the_failing_finetunejob(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, prometheus: Prometheus, tmp_path: Path
) -> None:
    log = tmp_path / "trainer.log"
    lc.append_log(log, (FIXTURES / "crashed.log").read_text())
    local_cluster.fake_logs(namespace, log)
    local_cluster.fail_namespace(namespace)
    local_cluster.apply(finetunejob({**LIGHT, "backoffLimit": 0}, name="crashes"), namespace=namespace)
    wait_phase(local_cluster, namespace, "crashes", "Failed", running)

    def firing() -> list[dict[str, Any]]:
        return [
            alert
            for alert in prometheus.alerts()
            if alert["labels"]["alertname"] == "FineTuneJobFailed"
            and alert["labels"]["namespace"] == namespace
            and alert["state"] == "firing"
        ]

    (alert,) = prometheus.wait_for(firing, what=f"FineTuneJobFailed firing for {namespace}/crashes")
    assert alert["labels"] == {
        "alertname": "FineTuneJobFailed",
        "namespace": namespace,
        "name": "crashes",
        "severity": "warning",
    }
    assert alert["annotations"]["summary"] == f"FineTuneJob {namespace}/crashes failed"
    failures = f'finetune_operator_failures_total{{namespace="{namespace}",reason="TrainerReportedFailure"}}'
    _wait_value(prometheus, failures, 1)
    # The dashboard counts the namespace's first failure (a counter series new in the time range).
    (panel,) = _panel(prometheus, "Failures by reason A", namespace)
    assert (panel["metric"], panel["value"][1]) == ({"namespace": namespace, "reason": "TrainerReportedFailure"}, "1")
