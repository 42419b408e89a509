"""Prometheus metrics of the operator, made when it starts (never at import) on a registry given to it.

Reconcile metrics use controller-runtime's names and labels, so dashboards and alerts written for
Go operators (e.g. `rate(controller_runtime_reconcile_errors_total[5m])`) work unchanged. Gauges
of FineTuneJobs are computed at scrape time from what the operator already holds in memory: a
scrape never calls the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from finetune_operator.api.status import PHASES, TrainerStatus

CONTROLLER = "finetunejob"
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Trainings = Callable[[], Mapping[tuple[str, str], TrainerStatus]]


class Metrics:
    """The operator's metrics, on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.api_requests = prometheus_client.Counter(
            "finetune_operator_api_requests_total",
            "Kubernetes API requests the operator made, by operation.",
            ["operation"],
            registry=registry,
        )
        self.reconcile_total = prometheus_client.Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller.",
            ["controller", "result"],
            registry=registry,
        )
        self.reconcile_errors = prometheus_client.Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller.",
            ["controller"],
            registry=registry,
        )
        self.reconcile_time = prometheus_client.Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller.",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.leader = prometheus_client.Gauge(
            "leader_election_master_status",
            "1 while this replica is the active one (kopf peering), 0 while it stands by.",
            ["name"],
            registry=registry,
        )

    def count_request(self, operation: str) -> None:
        self.api_requests.labels(operation=operation).inc()

    def record_reconcile(self, seconds: float, failed: bool) -> None:
        self.reconcile_total.labels(controller=CONTROLLER, result="error" if failed else "success").inc()
        if failed:
            self.reconcile_errors.labels(controller=CONTROLLER).inc()
        self.reconcile_time.labels(controller=CONTROLLER).observe(seconds)

    def reconciles(self) -> float:
        """Reconcile passes so far (tests wait on it instead of sleeping)."""
        return sum(
            sample.value
            for metric in self.registry.collect()
            if metric.name == "controller_runtime_reconcile"
            for sample in metric.samples
            if sample.name == "controller_runtime_reconcile_total"
        )

    def add_finetunejob_gauges(self, phases: Callable[[], Mapping[str, str]], trainings: Trainings) -> None:
        self.registry.register(FineTuneJobCollector(phases, trainings))


def _metric_values(status: TrainerStatus) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, text in status.metric_values().items():
        try:
            values[name] = float(text)
        except ValueError:
            continue
    return values


class FineTuneJobCollector(Collector):
    """FineTuneJobs by phase, and the progress of each running training.

    `phases` and `trainings` are read from the scrape thread: they return copies, never live views.
    """

    def __init__(self, phases: Callable[[], Mapping[str, str]], trainings: Trainings) -> None:
        self.phases = phases
        self.trainings = trainings

    def collect(self) -> Iterator[Any]:
        by_phase = GaugeMetricFamily(
            "finetune_operator_finetunejobs", "FineTuneJobs known to the operator, by phase.", labels=["phase"]
        )
        counted = dict.fromkeys(PHASES, 0)
        for phase in self.phases().values():
            if phase in counted:
                counted[phase] += 1
        for phase, count in counted.items():
            by_phase.add_metric([phase], count)
        yield by_phase

        labels = ["namespace", "name"]
        progress = GaugeMetricFamily(
            "finetune_operator_training_progress_percent", "Completed training steps in percent.", labels=labels
        )
        loss = GaugeMetricFamily("finetune_operator_training_loss", "Latest training loss in the log.", labels=labels)
        tokens = GaugeMetricFamily(
            "finetune_operator_training_tokens_per_second", "Latest training throughput in the log.", labels=labels
        )
        remaining = GaugeMetricFamily(
            "finetune_operator_training_remaining_seconds", "Estimated seconds to the end of training.", labels=labels
        )
        for (namespace, name), status in sorted(self.trainings().items()):
            values = _metric_values(status)
            if status.progress_percentage is not None:
                progress.add_metric([namespace, name], status.progress_percentage)
            if "loss" in values:
                loss.add_metric([namespace, name], values["loss"])
            if "tokensPerSecond" in values:
                tokens.add_metric([namespace, name], values["tokensPerSecond"])
            if status.estimated_remaining_seconds is not None:
                remaining.add_metric([namespace, name], status.estimated_remaining_seconds)
        yield from (progress, loss, tokens, remaining)
