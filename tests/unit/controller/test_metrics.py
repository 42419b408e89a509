"""The operator's Prometheus metrics: controller-runtime names, phases and per-training gauges."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry

from finetune_operator.api.status import Checkpoints, Metric, TrainerStatus
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


def test_checkpoints_stall_phase_and_usage_of_each_finetunejob() -> None:
    registry = CollectorRegistry()
    saved = TrainerStatus(checkpoints=Checkpoints(count=3, last_duration_seconds="42.5"))
    saving = TrainerStatus(checkpoints=Checkpoints(count=1))  # its first save not finished
    records = [
        metrics.Record("ns", "ft1", "Running", {"phison.com/ai100": 7200, "otterscale.com/vgpu": 14400}),
        metrics.Record("ns", "ft2", "Failed", {}),
        metrics.Record("ns", "ft3", None, {}),  # seen, no pass yet: no phase to show
    ]
    registry.register(
        metrics.FineTuneJobCollector(
            dict,
            lambda: {("ns", "ft1"): saved, ("ns", "ft2"): saving, ("ns", "ft4"): TrainerStatus()},
            lambda: records,
            lambda: {("ns", "ft1"): True, ("ns", "ft2"): False},
        )
    )
    lines = {line for line in _exposition(registry) if "finetunejob_phase" in line or "training_" in line}
    assert lines == {
        'finetune_operator_training_checkpoints{name="ft1",namespace="ns"} 3.0',
        'finetune_operator_training_checkpoints{name="ft2",namespace="ns"} 1.0',
        'finetune_operator_training_last_checkpoint_duration_seconds{name="ft1",namespace="ns"} 42.5',
        'finetune_operator_training_stalled{name="ft1",namespace="ns"} 1.0',
        'finetune_operator_training_stalled{name="ft2",namespace="ns"} 0.0',
        'finetune_operator_finetunejob_phase{name="ft1",namespace="ns",phase="Running"} 1.0',
        'finetune_operator_finetunejob_phase{name="ft2",namespace="ns",phase="Failed"} 1.0',
        'finetune_operator_training_accelerator_seconds{name="ft1",namespace="ns",resource="otterscale.com/vgpu"} '
        "14400.0",
        'finetune_operator_training_accelerator_seconds{name="ft1",namespace="ns",resource="phison.com/ai100"} 7200.0',
    }


def test_a_record_reads_the_usage_of_a_status_as_written_and_nothing_else() -> None:
    status = {
        "phase": "Running",
        "usage": {
            "acceleratorSeconds": [
                {"resource": "phison.com/ai100", "seconds": 60},
                {"resource": "odd", "seconds": "60"},
                "not a mapping",
            ],
            "countedUntil": "2026-12-05T12:00:00Z",
        },
    }
    assert metrics.record_of("ns", "ft", "Running", status) == metrics.Record(
        "ns", "ft", "Running", {"phison.com/ai100": 60}
    )
    assert metrics.record_of("ns", "ft", None, {"usage": "x"}).usage == {}
    assert metrics.record_of("ns", "ft", None, {"usage": {"acceleratorSeconds": {}}}).usage == {}


def test_written_usage_failures_and_queue_waits_are_counted() -> None:
    registry = CollectorRegistry()
    made = metrics.Metrics(registry)
    made.record_written("ns", {"phison.com/ai100": 60}, None, None)
    made.record_written("ns", {"phison.com/ai100": 30, "otterscale.com/vgpu": 5}, "TrainerExitCode", 42.0)
    made.record_written("ns", {}, None, 700.0)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("finetune_operator_accelerator_seconds_total", namespace="ns", resource="phison.com/ai100") == 90
    assert sample("finetune_operator_accelerator_seconds_total", namespace="ns", resource="otterscale.com/vgpu") == 5
    assert sample("finetune_operator_failures_total", namespace="ns", reason="TrainerExitCode") == 1
    assert sample("finetune_operator_queue_wait_seconds_count", namespace="ns") == 2
    assert sample("finetune_operator_queue_wait_seconds_sum", namespace="ns") == 742.0
    assert sample("finetune_operator_queue_wait_seconds_bucket", namespace="ns", le="60.0") == 1
    assert sample("finetune_operator_queue_wait_seconds_bucket", namespace="ns", le="600.0") == 1
    assert sample("finetune_operator_queue_wait_seconds_bucket", namespace="ns", le="1800.0") == 2
