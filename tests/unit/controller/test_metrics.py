"""The operator's Prometheus metrics: controller-runtime names, phases and per-training gauges."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry

from finetune_operator.api.status import Metric, TrainerStatus
from finetune_operator.controller import metrics


def _exposition(registry: CollectorRegistry) -> set[str]:
    lines = prometheus_client.generate_latest(registry).decode().splitlines()
    return {line for line in lines if not line.startswith("#")}


def test_phases_are_all_reported_with_zero_for_none() -> None:
    registry = CollectorRegistry()
    phases = {"a": "Running", "b": "Running", "c": "Succeeded"}
    registry.register(metrics.FineTuneJobCollector(lambda: phases, dict))
    lines = _exposition(registry)
    assert {
        'finetune_operator_finetunejobs{phase="Pending"} 0.0',
        'finetune_operator_finetunejobs{phase="Running"} 2.0',
        'finetune_operator_finetunejobs{phase="Suspended"} 0.0',
        'finetune_operator_finetunejobs{phase="Succeeded"} 1.0',
        'finetune_operator_finetunejobs{phase="Failed"} 0.0',
    } <= lines


def test_each_running_training_reports_progress_loss_throughput_and_eta() -> None:
    registry = CollectorRegistry()
    status = TrainerStatus(
        progress_percentage=42,
        estimated_remaining_seconds=90,
        metrics=[Metric(name="loss", value="1.25"), Metric(name="tokensPerSecond", value="310.5")],
    )
    partial = TrainerStatus(progress_percentage=0, metrics=[Metric(name="loss", value="nan?")])
    registry.register(metrics.FineTuneJobCollector(dict, lambda: {("ns", "ft1"): status, ("ns", "ft2"): partial}))
    lines = _exposition(registry)
    assert {
        'finetune_operator_training_progress_percent{name="ft1",namespace="ns"} 42.0',
        'finetune_operator_training_loss{name="ft1",namespace="ns"} 1.25',
        'finetune_operator_training_tokens_per_second{name="ft1",namespace="ns"} 310.5',
        'finetune_operator_training_remaining_seconds{name="ft1",namespace="ns"} 90.0',
        'finetune_operator_training_progress_percent{name="ft2",namespace="ns"} 0.0',
    } <= lines
    # A value the log did not give as a number is left out, not reported as 0.
    assert not any(line.startswith("finetune_operator_training_loss") and "ft2" in line for line in lines)


def test_reconcile_metrics_use_controller_runtime_names() -> None:
    registry = CollectorRegistry()
    made = metrics.Metrics(registry)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    made.record_reconcile(0.02, failed=False)
    made.record_reconcile(0.5, failed=True)
    made.count_request("create_job")
    assert sample("controller_runtime_reconcile_total", controller="finetunejob", result="success") == 1
    assert sample("controller_runtime_reconcile_total", controller="finetunejob", result="error") == 1
    assert sample("controller_runtime_reconcile_errors_total", controller="finetunejob") == 1
    assert sample("controller_runtime_reconcile_time_seconds_count", controller="finetunejob") == 2
    assert sample("controller_runtime_reconcile_time_seconds_bucket", controller="finetunejob", le="0.025") == 1
    assert sample("finetune_operator_api_requests_total", operation="create_job") == 1
    assert made.reconciles() == 2


def test_importing_the_operator_registers_no_metric() -> None:
    """Metrics are made when the operator starts, on the registry it is given."""
    import importlib

    for module in ("finetune_operator.controller.run", "finetune_operator.controller.adapters"):
        importlib.import_module(module)
    names = {metric.name for metric in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith(("controller_runtime", "finetune_operator")) for name in names)
