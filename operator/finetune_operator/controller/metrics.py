"""Prometheus metrics of the operator, made when it starts (never at import) on a registry given to it.

Reconcile metrics use controller-runtime's names and labels, so dashboards and alerts written for
Go operators (e.g. `rate(controller_runtime_reconcile_errors_total[5m])`) work unchanged. Gauges
of FineTuneJobs are computed at scrape time from what the operator already holds in memory: a
scrape never calls the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from finetune_operator.api.status import PHASES, TrainerStatus

CONTROLLER = "finetunejob"
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From an idle cluster's seconds to a busy queue's day.
QUEUE_WAIT_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)

Key = tuple[str, str]
Trainings = Callable[[], Mapping[Key, TrainerStatus]]


@dataclass(frozen=True)
class Record:
    """A FineTuneJob not yet cleaned up, as its status stands in memory."""

    namespace: str
    name: str
    phase: str | None
    usage: Mapping[str, int]  # accelerator-seconds by resource (status.usage)


def record_of(namespace: str, name: str, phase: str | None, status: Mapping[str, Any]) -> Record:
    """The record of a status as written (a dict: the scrape reads what the passes keep, never validates)."""
    usage = status.get("usage")
    found = usage.get("acceleratorSeconds") if isinstance(usage, dict) else None
    seconds = {
        str(item.get("resource")): item.get("seconds")
        for item in (found if isinstance(found, list) else [])
        if isinstance(item, dict)
    }
    return Record(namespace, name, phase, {k: v for k, v in seconds.items() if isinstance(v, int)})


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

        # Counted by the status write that records them (observe/usage.py, decide/decision.py): a restart
        # starts the counters at 0 (Prometheus reads that as a reset) and counts only what it writes from
        # then on, beyond what the status already held; so no second is counted twice, whatever dies when.
        self.accelerator_seconds = prometheus_client.Counter(
            "finetune_operator_accelerator_seconds",
            "Accelerator-seconds the trainings' pods held, by extended resource (as written to status.usage).",
            ["namespace", "resource"],
            registry=registry,
        )
        self.failures = prometheus_client.Counter(
            "finetune_operator_failures",
            "FineTuneJobs that went Failed, by reason (counted by the status write that records it).",
            ["namespace", "reason"],
            registry=registry,
        )
        self.queue_wait = prometheus_client.Histogram(
            "finetune_operator_queue_wait_seconds",
            "Seconds from a FineTuneJob's creation, or its last eviction by its queue, to Running.",
            ["namespace"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )

    def record_written(
        self, namespace: str, accrued: Mapping[str, int], failed: str | None, queue_wait: float | None
    ) -> None:
        for resource, seconds in accrued.items():
            self.accelerator_seconds.labels(namespace=namespace, resource=resource).inc(seconds)
        if failed is not None:
            self.failures.labels(namespace=namespace, reason=failed).inc()
        if queue_wait is not None:
            self.queue_wait.labels(namespace=namespace).observe(queue_wait)

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

    def add_finetunejob_gauges(
        self,
        phases: Callable[[], Mapping[str, str]],
        trainings: Trainings,
        records: Callable[[], Iterable[Record]] = list,
        stalled: Callable[[], Mapping[Key, bool]] = dict,
    ) -> None:
        self.registry.register(FineTuneJobCollector(phases, trainings, records, stalled))


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

    def __init__(
        self,
        phases: Callable[[], Mapping[str, str]],
        trainings: Trainings,
        records: Callable[[], Iterable[Record]] = list,
        stalled: Callable[[], Mapping[Key, bool]] = dict,
    ) -> None:
        self.phases = phases
        self.trainings = trainings
        self.records = records
        self.stalled = stalled

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
        yield from self._checkpoints()
        yield from self._records()

    def _checkpoints(self) -> Iterator[Any]:
        labels = ["namespace", "name"]
        saves = GaugeMetricFamily(
            "finetune_operator_training_checkpoints", "Model checkpoint saves the trainer logged.", labels=labels
        )
        last = GaugeMetricFamily(
            "finetune_operator_training_last_checkpoint_duration_seconds",
            "How long the trainer's last finished checkpoint save took.",
            labels=labels,
        )
        stalled = GaugeMetricFamily(
            "finetune_operator_training_stalled",
            "1 while a running training's log shows no new progress (condition Progressing=False), else 0.",
            labels=labels,
        )
        for (namespace, name), status in sorted(self.trainings().items()):
            saved = status.checkpoints
            if saved is None:
                continue
            saves.add_metric([namespace, name], saved.count)
            seconds = _number(saved.last_duration_seconds)
            if seconds is not None:
                last.add_metric([namespace, name], seconds)
        for (namespace, name), stall in sorted(self.stalled().items()):
            stalled.add_metric([namespace, name], 1 if stall else 0)
        yield from (saves, last, stalled)

    def _records(self) -> Iterator[Any]:
        phase = GaugeMetricFamily(
            "finetune_operator_finetunejob_phase",
            "1 for the phase of each FineTuneJob not yet cleaned up.",
            labels=["namespace", "name", "phase"],
        )
        usage = GaugeMetricFamily(
            "finetune_operator_training_accelerator_seconds",
            "Accelerator-seconds a FineTuneJob's pods held so far, by extended resource (its status.usage).",
            labels=["namespace", "name", "resource"],
        )
        for record in sorted(self.records(), key=lambda r: (r.namespace, r.name)):
            if record.phase is not None:
                phase.add_metric([record.namespace, record.name, record.phase], 1)
            for resource, seconds in sorted(record.usage.items()):
                usage.add_metric([record.namespace, record.name, resource], seconds)
        yield from (phase, usage)


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
