"""What one pass over a FineTuneJob is given (`PassContext`): the API port, the clock and timers, the
settings, what is remembered of each FineTuneJob, the watches' views of its children, and the few
acts of the controller a pass calls back (post an Event, look again later). The `Controller`
provides it; the pass's modules know this narrow face only, never the Controller itself, so no
module of the controller imports another back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from finetune_operator.controller.memory import Memory
from finetune_operator.controller.metrics import Metrics
from finetune_operator.controller.ports import Clock, KubePort, Timers
from finetune_operator.observe.attempts import attempt_of
from finetune_operator.observe.owners import owns

Key = tuple[str, str]
Index = Mapping[Key, Iterable[dict[str, Any]]]


@dataclass(frozen=True)
class Settings:
    log_interval: float = 15.0
    allow_privileged: bool = False
    allow_any_toleration: bool = False
    # How soon a Job that has no pod yet is looked at again for the Job controller's FailedCreate.
    pod_create_recheck: float = 5.0
    # How often the Workload of a Job its queue holds is read again: Kueue's words change (a quota frees
    # up, a preemption) without anything the operator watches changing.
    queue_recheck: float = 10.0
    # Reads of a running training's log in a row without new progress before Progressing=False (NoProgress).
    stall_intervals: int = 60


class Views:
    """Read-only views of kopf's indices of the children (what the watches delivered), keyed by
    (namespace, FineTuneJob name). The FineTuneJobs' own latest bodies are in Memory."""

    def __init__(self, jobs: Index | None = None, pods: Index | None = None) -> None:
        self._jobs: Index = jobs if jobs is not None else {}
        self._pods: Index = pods if pods is not None else {}

    def job(self, owner: dict[str, Any]) -> dict[str, Any] | None:
        """The FineTuneJob's Job of the latest attempt (a failed attempt's Job is kept beside the next
        one's); only its own Jobs count: anyone who may create Jobs can copy its label and annotations."""
        found = self.jobs(owner)
        return max(found, key=attempt_of) if found else None

    def jobs(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        """Every Job of the FineTuneJob (its controller, by uid)."""
        metadata = owner["metadata"]
        return [job for job in self._jobs.get((metadata["namespace"], metadata["name"]), []) if owns(owner, job)]

    def pods(self, namespace: str, name: str, job: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The pods of this Job (its controller by uid): not every pod with the FineTuneJob's label,
        which anyone who may create pods in the namespace can set."""
        if job is None:
            return []
        return [pod for pod in self._pods.get((namespace, name), []) if owns(job, pod)]


class PassContext(Protocol):
    kube: KubePort
    settings: Settings
    clock: Clock
    timers: Timers
    memory: Memory
    views: Views
    active: bool
    metrics: Metrics | None

    async def check_active(self) -> None: ...
    async def post(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None: ...
    def requeue(self, namespace: str, name: str, uid: str, purpose: str, delay: float) -> None: ...
    async def reconcile_from_views(self, namespace: str, name: str) -> None: ...
