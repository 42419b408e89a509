"""What the operator remembers of each FineTuneJob between events. None of it is needed for
correctness after a restart: it saves API calls and keeps one status writer per object."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from finetune_operator.api.status import Condition
from finetune_operator.decide.decision import Told
from finetune_operator.observe.following import Followed
from finetune_operator.render.plan import Plan


@dataclass(frozen=True)
class Unposted:
    """An Event not posted yet, with the time it happened and its name, chosen once: a retry after an
    answer lost with the API server (the Event may have been stored) is then refused as a duplicate
    instead of telling the user the same thing twice."""

    owner: dict[str, Any]
    kind: str
    reason: str
    message: str
    when: datetime
    name: str


@dataclass
class JobMemory:
    """What is known of the attempt's Job and its children. It lives as long as that Job: it is
    replaced as a whole when the Job is deleted or the next attempt's replaces it."""

    # The Job this process created and its Job watch may not have delivered yet (two watches,
    # no ordering between them): without it, the next FineTuneJob event would create again.
    created: dict[str, Any] | None = None
    config_map_seen: bool = False  # its ConfigMap is known to exist (created, or found)
    # This process made the Job and not yet its ConfigMap: a running pod is then no proof that it exists.
    config_map_due: bool = False
    service_seen: bool = False  # numNodes > 1: the Service of this Job's ranks is known to exist
    seen: dict[str, Any] | None = None  # the Job as the last Job event showed it
    # A Job its queue manages, suspended by its user: its Workload is known to be deactivated.
    workload_inactive: bool = False
    workload_checks: int = 0  # lookups of its Workload that found none yet


@dataclass
class Remembered:
    """One FineTuneJob, by uid, while it is live in this process: dropped whole when it is deleted or
    settled (finished and cleaned up). Within it, each part lives as long as what it describes:
    `job` the attempt's Job, `followed` a Running training, `plan` one generation of the spec."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    written: dict[str, Any] | None = None  # the status this process last wrote
    failures: int = 0  # reconcile passes in a row that raised (for the retry backoff)
    job: JobMemory = field(default_factory=JobMemory)
    followed: Followed | None = None
    phase: str | None = None
    # The phase the Events have told, known from the first pass (the stored status, told before):
    # a phase change is told once, also when the status write that made it lost its answer.
    told_phase: str | None = None
    told_phase_known: bool = False
    untold: Told | None = None  # decided by a pass whose status write raised: told by the next pass
    pod_create_checks: int = 0  # FailedCreate lookups made while the Job had no pod
    pod_create_condition: Condition | None = None
    unposted: list[Unposted] = field(default_factory=list)
    event_failures: int = 0
    plan: Plan | None = None  # the plan of the spec it was made from (its facts only, between passes)
    plan_key: Any = None  # (generation, labels) of that spec: the plan is made again when either changes
    ran: bool | None = None  # Running written since it was made or last queued (None: not known yet)

    def job_gone(self) -> None:
        """The attempt's Job was deleted, or the next attempt's replaces it: nothing known of it stays
        (its Service and ConfigMap go with it, by the garbage collector)."""
        self.job = JobMemory()


Key = tuple[str, str]


class Memory:
    """Per FineTuneJob: what a pass needs (`Remembered`, by uid) and the latest body the watch delivered
    (by namespace and name), for the live ones only. A FineTuneJob that is done (finished and cleaned
    up) leaves nothing behind but its phase, for the metrics: thousands of them cost next to nothing."""

    def __init__(self) -> None:
        self.objects: dict[str, Remembered] = {}
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.done: dict[str, str] = {}  # uid -> final phase of the FineTuneJobs left alone

    def of(self, uid: str) -> Remembered:
        remembered = self.objects.get(uid)
        if remembered is None:
            remembered = self.objects[uid] = Remembered()
        return remembered

    def get(self, uid: str) -> Remembered | None:
        return self.objects.get(uid)

    def forget(self, uid: str, key: Key | None = None) -> None:
        self.objects.pop(uid, None)
        self.done.pop(uid, None)
        if key is not None:
            self.bodies.pop(key, None)

    def remember_body(self, body: dict[str, Any]) -> None:
        metadata = body["metadata"]
        self.bodies[(metadata["namespace"], metadata["name"])] = body

    def body(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bodies.get((namespace, name))

    def settle(self, uid: str, key: Key, phase: str) -> None:
        """Nothing is left to do for this FineTuneJob: keep its phase, drop the rest."""
        self.objects.pop(uid, None)
        self.bodies.pop(key, None)
        self.done[uid] = phase

    def phases(self) -> dict[str, str]:
        live = {uid: r.phase for uid, r in list(self.objects.items()) if r.phase is not None}
        return {**self.done, **live}

    def followed(self) -> list[Followed]:
        return [r.followed for r in list(self.objects.values()) if r.followed is not None]
