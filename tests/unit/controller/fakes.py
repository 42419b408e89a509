"""Test doubles of the controller's own ports (not of the API server): an in-memory `KubePort`, a
clock the test moves, and timers the test fires. The e2e suite proves the real ones."""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from finetune_operator.api.base import LABEL_NAME
from finetune_operator.controller.context import Settings, Views
from finetune_operator.controller.controller import Controller, Peering
from finetune_operator.controller.following import read_progress
from finetune_operator.controller.kube import Conflict
from finetune_operator.observe.attempts import attempt_of
from finetune_operator.observe.following import LogTail, log_tail
from finetune_operator.observe.times import timestamp

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
_uids = itertools.count(1)
T = TypeVar("T")


def new_uid() -> str:
    return f"{next(_uids):08d}-0000-4000-8000-000000000000"


class FakeKube:
    """Objects by (kind, namespace, name); every call counted; failures injected per operation."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.call_order: list[str] = []
        self.events: list[tuple[str, str, str, str]] = []  # (object name, type, reason, message)
        self.event_times: list[datetime] = []
        self.statuses: list[dict[str, Any]] = []  # the stored status after each patch
        self.patches: list[dict[str, Any]] = []
        self.stored_status: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str | bytes | Exception] = {}
        self.job_events: list[dict[str, Any]] = []
        # Kueue's, with their kueue.x-k8s.io/job-uid label; None: Kueue is not installed.
        self.workloads: list[dict[str, Any]] | None = []
        self.failures: dict[str, list[Exception]] = collections.defaultdict(list)
        self.lost_answers: dict[str, list[Exception]] = collections.defaultdict(list)
        self.event_names: list[str] = []
        self.stored_bodies: dict[tuple[str, str], dict[str, Any]] = {}  # FineTuneJobs as stored (read_finetunejob)
        self.peers: dict[str, Any] = {}

    def fail_next(self, operation: str, error: Exception) -> None:
        self.failures[operation].append(error)

    def lose_next_answer(self, operation: str, error: Exception) -> None:
        """The next call of this operation takes effect, then raises (the API server died before answering)."""
        self.lost_answers[operation].append(error)

    def _answer_lost(self, operation: str) -> None:
        if self.lost_answers[operation]:
            raise self.lost_answers[operation].pop(0)

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        self.call_order.append(operation)
        if self.failures[operation]:
            raise self.failures[operation].pop(0)

    def _create(self, kind: str, manifest: dict[str, Any]) -> dict[str, Any]:
        metadata = manifest["metadata"]
        key = (kind, metadata["namespace"], metadata["name"])
        if key in self.objects:
            raise Conflict(f'{kind.lower()}s "{metadata["name"]}" already exists')
        stored = copy.deepcopy(manifest)
        stored["metadata"].update(uid=new_uid(), creationTimestamp=timestamp(self.clock.now()))
        stored.setdefault("status", {})
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    async def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._call("create_job")
        return self._create("Job", manifest)

    async def create_config_map(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._call("create_configmap")
        return self._create("ConfigMap", manifest)

    async def create_service(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._call("create_service")
        return self._create("Service", manifest)

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("read_service")
        return copy.deepcopy(self.get("Service", namespace, name))

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("read_job")
        return copy.deepcopy(self.get("Job", namespace, name))

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("read_configmap")
        return copy.deepcopy(self.get("ConfigMap", namespace, name))

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        self._call("delete_job")
        job = self.get("Job", namespace, name)
        if job is None or job["metadata"]["uid"] != uid:
            return False
        del self.objects[("Job", namespace, name)]
        # The garbage collector: what the Job owns goes with it.
        for key, obj in list(self.objects.items()):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                del self.objects[key]
        return True

    async def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self._call("patch_job")
        job = self.objects[("Job", namespace, name)]
        job["spec"]["suspend"] = suspend

    async def set_job_requested_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self._call("patch_job")
        job = self.objects[("Job", namespace, name)]
        job["metadata"].setdefault("annotations", {})["finetune.aidaptiv.io/requested-suspend"] = str(suspend).lower()

    async def set_workload_active(self, namespace: str, name: str, active: bool) -> None:
        self._call("patch_workload")
        for workload in self.workloads:
            if workload["metadata"]["name"] == name:
                workload["spec"]["active"] = active

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Applied as the API server applies a JSON merge patch to the stored status."""
        self._call("patch_status")
        self.patches.append(copy.deepcopy(status))
        stored = _merged(self.stored_status.get((namespace, name), {}), status)
        self.stored_status[(namespace, name)] = stored
        self.statuses.append(copy.deepcopy(stored))
        self._answer_lost("patch_status")

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int) -> LogTail:
        """The log's bytes as the API server sends them (a str log is its UTF-8), decoded as Kube does."""
        self._call("read_pod_log")
        text = self.logs.get((namespace, pod), "")
        if isinstance(text, Exception):
            raise text
        data = text if isinstance(text, bytes) else text.encode()
        return log_tail(b"\n".join(data.split(b"\n")[-tail_lines - 1 :])[:limit_bytes], limit_bytes)

    async def post_event(
        self,
        owner: dict[str, Any],
        kind: str,
        reason: str,
        message: str,
        when: datetime | None = None,
        name: str | None = None,
    ) -> None:
        """As the API server and `Kube` do: a named Event stored already is not stored again; a lost
        answer (`lose_next_answer`) is an Event stored, then an error."""
        self._call("create_event")
        if name is not None and name in self.event_names:
            return
        self.events.append((owner["metadata"]["name"], kind, reason, message))
        self.event_times.append(when or self.clock.now())
        if name is not None:
            self.event_names.append(name)
        self._answer_lost("create_event")

    async def list_events(self, namespace: str, involved_uid: str, reason: str) -> list[dict[str, Any]]:
        self._call("list_events")
        return [e for e in self.job_events if e["involvedObject"]["uid"] == involved_uid and e["reason"] == reason]

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]] | None:
        self._call("list_workloads")
        if self.workloads is None:
            return None  # no Kueue in this cluster
        return [
            copy.deepcopy(w) for w in self.workloads if w["metadata"]["labels"]["kueue.x-k8s.io/job-uid"] == job_uid
        ]

    async def read_peers(self, peering: str, namespace: str | None) -> dict[str, Any]:
        self._call("read_peering")
        return copy.deepcopy(self.peers)

    async def delete_finetunejob(self, namespace: str, name: str, uid: str) -> None:
        self._call("delete_finetunejob")
        self.objects.pop(("FineTuneJob", namespace, name), None)

    async def read_finetunejob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The FineTuneJob as stored: the body the test registered (`stored_bodies`) with its status."""
        self._call("read_finetunejob")
        body = self.stored_bodies.get((namespace, name))
        if body is None:
            return None
        return {**copy.deepcopy(body), "status": copy.deepcopy(self.stored_status.get((namespace, name), {}))}

    async def list_labelled(
        self, kind: str, namespace: str | None, label: str, entry: Callable[[dict[str, Any]], T]
    ) -> list[T]:
        """Jobs or pods stored with the label (pods are those a test put in `objects` as kind Pod)."""
        self._call(f"list_{kind}")
        wanted = {"jobs": "Job", "pods": "Pod"}[kind]
        return [
            entry(copy.deepcopy(obj))
            for (stored_kind, ns, _), obj in sorted(self.objects.items())
            if stored_kind == wanted and namespace in (None, ns) and label in (obj["metadata"].get("labels") or {})
        ]

    def writes(self) -> dict[str, int]:
        return {k: v for k, v in self.calls.items() if k.startswith(("create_", "patch_", "delete_"))}

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.events]


class FakeClock:
    def __init__(self) -> None:
        self.moment = T0
        self.ticks = 0.0

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
        self.ticks += seconds


class FakeTimers:
    """Records what would fire, and when; the test fires it."""

    def __init__(self) -> None:
        self.pending: dict[Hashable, tuple[float, Callable[[], Awaitable[None]]]] = {}

    def schedule(self, key: Hashable, delay: float, callback: Callable[[], Awaitable[None]]) -> None:
        self.pending[key] = (delay, callback)

    def cancel(self, key: Hashable) -> None:
        self.pending.pop(key, None)

    def spawn(self, work: Awaitable[None]) -> None:
        raise AssertionError("the fake timers spawn nothing: drive the controller through on_finetunejob")

    def cancel_all(self, uid: str) -> None:
        for key in [k for k in self.pending if isinstance(k, tuple) and k[0] == uid]:
            del self.pending[key]

    def delay_of(self, key: Hashable) -> float | None:
        found = self.pending.get(key)
        return None if found is None else found[0]

    async def fire(self, key: Hashable) -> None:
        _, callback = self.pending.pop(key)
        await callback()


class World:
    """A controller wired to fakes, and the watch's view of the objects (what kopf's indices hold)."""

    def __init__(self, settings: Settings | None = None, peering: Peering | None = None) -> None:
        self.clock = FakeClock()
        self.kube = FakeKube(self.clock)
        self.timers = FakeTimers()
        self.jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.controller = Controller(
            self.kube,
            settings=settings or Settings(log_interval=1.0),
            clock=self.clock,  # type: ignore[arg-type]
            timers=self.timers,  # type: ignore[arg-type]
            peering=peering,
        )
        self.controller.views = Views(self.jobs, self.pods)

    def add(self, spec: dict[str, Any] | None = None, name: str = "run", namespace: str = "ns") -> dict[str, Any]:
        body = {
            "apiVersion": "finetune.aidaptiv.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": namespace, "uid": new_uid(), "generation": 1, "labels": {}},
            "spec": copy.deepcopy(spec if spec is not None else {}),
        }
        self.controller.memory.remember_body(body)  # as the watch delivers it
        self.kube.stored_bodies[(namespace, name)] = copy.deepcopy(body)
        return body

    def stored(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body with the status the operator last wrote, as the next watch event brings it."""
        latest = copy.deepcopy(body)
        if self.kube.statuses:
            latest["status"] = copy.deepcopy(self.kube.statuses[-1])
        self.controller.memory.remember_body(latest)
        return latest

    def edit(self, body: dict[str, Any], **spec: Any) -> dict[str, Any]:
        """The body as the watch brings it after a user's edit of the spec: the API server stored it
        with the next generation."""
        edited = self.stored(body)
        key = (edited["metadata"]["namespace"], edited["metadata"]["name"])
        latest = self.kube.stored_bodies.get(key, edited)
        edited["spec"] = {**copy.deepcopy(latest.get("spec") or {}), **copy.deepcopy(spec)}
        edited["metadata"]["generation"] = (latest["metadata"].get("generation") or 0) + 1
        self.kube.stored_bodies[key] = {k: copy.deepcopy(v) for k, v in edited.items() if k != "status"}
        self.controller.memory.remember_body(edited)
        return edited

    def newest_job(self, namespace: str = "ns", name: str = "run") -> dict[str, Any] | None:
        """The stored Job of the FineTuneJob's latest attempt (a failed attempt's Job stays beside it)."""
        found = [
            obj
            for (kind, ns, _), obj in self.kube.objects.items()
            if kind == "Job"
            and ns == namespace
            and name in (obj["metadata"].get("name"), obj["metadata"].get("labels", {}).get(LABEL_NAME))
        ]
        return max(found, key=attempt_of) if found else None

    def deliver_job(self, namespace: str = "ns", name: str = "run", **status: Any) -> dict[str, Any]:
        """The Job of the latest attempt as the watch delivers it, with this status (the index keeps the
        FineTuneJob's other Jobs it holds)."""
        stored = self.newest_job(namespace, name)
        assert stored is not None, "no Job was created"
        job = copy.deepcopy(stored)
        job["status"] = {**job.get("status", {}), **status}
        stored["status"] = copy.deepcopy(job["status"])
        others = [j for j in self.jobs.get((namespace, name), []) if j["metadata"]["uid"] != job["metadata"]["uid"]]
        self.jobs[(namespace, name)] = [*others, job]
        return job

    def deliver_pods(
        self, pods: list[dict[str, Any]], namespace: str = "ns", name: str = "run", job: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Pods as the Job controller makes them (controlled by the Job, by default the one created last)
        and the pod watch delivers them."""
        owner = job if job is not None else self.newest_job(namespace, name)
        assert owner is not None, "no Job to own the pods"
        ref = {"kind": "Job", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True}
        for pod in pods:
            pod.setdefault("metadata", {})["ownerReferences"] = [dict(ref)]
        self.pods[(namespace, name)] = pods
        return pods

    def read_log_once(self) -> None:
        """What one turn of the log loop does for the one training followed."""
        (followed,) = self.controller.memory.followed()

        async def turn() -> None:
            if await read_progress(self.controller, followed, final=False):
                await self.controller.reconcile_from_views(followed.namespace, followed.name)

        self.run(turn())

    def run(self, coroutine: Awaitable[None]) -> None:
        asyncio.run(_wrap(coroutine))

    def event(self, body: dict[str, Any]) -> None:
        self.run(self.controller.on_finetunejob("MODIFIED", body))

    def last_status(self) -> dict[str, Any]:
        return self.kube.statuses[-1]

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.last_status()["conditions"] if c["type"] == kind)


def _merged(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, written here from the RFC's pseudocode: null removes, objects merge, the rest replaces."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = _merged(result.get(key) if isinstance(result.get(key), dict) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


async def _wrap(coroutine: Awaitable[None]) -> None:
    await coroutine
