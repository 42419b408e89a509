"""The controller: one object holding the API port, the clock, timers, settings, metrics and what it
remembers of each FineTuneJob. kopf's handlers (adapters.py) only pass events to it.

Every pass over one FineTuneJob runs under that object's lock and ends in at most one status
write: the log loop folds what it reads and asks for a pass, it never writes status itself.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from finetune_operator.api.status import TERMINAL_PHASES
from finetune_operator.controller.context import Key, Settings, Views
from finetune_operator.controller.following import follow_logs
from finetune_operator.controller.kube import NamespaceTerminating
from finetune_operator.controller.lanes import Lanes, is_new_work
from finetune_operator.controller.memory import Memory, Unposted
from finetune_operator.controller.metrics import Metrics, Record, record_of
from finetune_operator.controller.ports import Clock, KubePort, Timers
from finetune_operator.controller.reconciler import reconcile_pass
from finetune_operator.controller.watched import Watched
from finetune_operator.observe.attempts import attempt_of
from finetune_operator.observe.following import stalled
from finetune_operator.observe.owners import owns
from finetune_operator.observe.peering import is_active
from finetune_operator.observe.times import backoff

logger = logging.getLogger("finetune_operator")

MAX_BACKOFF_SECONDS = 60.0
# Passes of watch events at once: enough to keep the API busy; the rest wait holding a slim body only.
PASS_LIMIT = 16


@dataclass(frozen=True)
class Peering:
    """This replica in kopf peering: the peering object(s) and its own entry there."""

    name: str
    namespaces: tuple[str, ...]  # empty: cluster-wide (ClusterKopfPeering)
    identity: str
    priority: int
    lifetime: int  # seconds without a keep-alive before peers presume this replica dead


class Controller:
    def __init__(
        self,
        kube: KubePort,
        *,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        timers: Timers | None = None,
        peering: Peering | None = None,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kube = kube
        self.settings = settings or Settings()
        self.metrics = metrics
        self.clock = clock or Clock()
        self.timers = timers or Timers()
        self.peering = peering
        self.memory = Memory()
        self.namespaces = namespaces  # empty: every namespace
        self.watched = Watched()
        self.views = Views(self.watched.jobs, self.watched.pods)
        self.active = True
        self.loop_task: asyncio.Task[None] | None = None
        self.passes = Lanes(PASS_LIMIT)
        # FineTuneJobs whose pass waits for a slot (True: in the lane of new work): a later event of
        # the same object adds no pass, and a Job's event leaves it to that pass.
        self.due: dict[Key, bool] = {}

    # -- events from kopf ---------------------------------------------------------------------

    async def on_finetunejob(self, event_type: str | None, body: dict[str, Any]) -> None:
        if self._noted(event_type, body):
            await self.reconcile(body, self.views.job(body))

    def dispatch(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A FineTuneJob event from the watch: noted now, its pass run in a task of its own (at most
        `PASS_LIMIT` at once, new work first), so that the watch's copy of the object, of any size, is let
        go at once instead of waiting with every other object's for its turn (thousands at a start)."""
        if not self._noted(event_type, body):
            return
        self._pass_due((body["metadata"]["namespace"], body["metadata"]["name"]), is_new_work(body))

    def _pass_due(self, key: Key, urgent: bool) -> None:
        """A pass for this FineTuneJob, in a task that holds only its key until a slot is free."""
        if key in self.due and (self.due[key] or not urgent):
            return  # its pass waits for a slot: it will read the latest body and Job by then
        self.due[key] = urgent
        self.timers.spawn(self._limited_pass(key, urgent))

    async def _limited_pass(self, key: Key, urgent: bool) -> None:
        async with self.passes.slot(urgent):
            self.due.pop(key, None)
            body = self.memory.body(*key)  # the latest the watch brought, by now
            if body is not None:
                await self.reconcile(body, self.views.job(body))

    def _noted(self, event_type: str | None, body: dict[str, Any]) -> bool:
        """Remember what the watch says of a FineTuneJob; True when it calls for a pass."""
        metadata = body["metadata"]
        uid, key = metadata["uid"], (metadata["namespace"], metadata["name"])
        if event_type == "DELETED":
            self.forget(uid, key)
            return False
        if settled(body):
            # Finished and cleaned up, as the watch shows it back: nothing will ever be done again.
            self.memory.settle(uid, key, body["status"]["phase"])
            self.timers.cancel_all(uid)
            return False
        self.memory.remember_body(body)
        return True

    async def on_job(self, event_type: str | None, job: dict[str, Any], owner_name: str) -> None:
        key = (job["metadata"]["namespace"], owner_name)
        owner = self.memory.body(*key)
        if owner is None or not owns(owner, job):
            return
        current = self.views.job(owner)
        if current is not None and attempt_of(job) < attempt_of(current):
            return  # a failed attempt's Job, kept (or removed at cleanup): the training is the newer one's
        remembered = self.memory.of(owner["metadata"]["uid"])
        if event_type == "DELETED":
            remembered.job_gone()
        elif job == remembered.job.seen:
            return  # nothing the controller reads has changed (kopf also sends other updates)
        else:
            remembered.job.seen = job
        if key in self.due:
            return  # its FineTuneJob's pass waits for a slot, and will see the Job as the watch has it
        # At once, not in a lane: deferred behind a burst's new work, these passes held far more memory
        # (1,000 FineTuneJobs created at once: 240 MB instead of 150).
        await self.reconcile(owner, None if event_type == "DELETED" else job)

    def forget(self, uid: str, key: Key | None = None) -> None:
        self.memory.forget(uid, key)
        self.timers.cancel_all(uid)

    # -- passes ---------------------------------------------------------------------------------

    async def reconcile(self, body: dict[str, Any], job: dict[str, Any] | None) -> None:
        """One pass over one FineTuneJob; a pass that raises is retried with a growing delay."""
        metadata = body["metadata"]
        if metadata.get("deletionTimestamp"):
            return
        uid = metadata["uid"]
        remembered = self.memory.of(uid)
        if job is not None:
            remembered.job.seen = job  # its watch event, when it comes (a start lists every Job), adds no pass
        async with remembered.lock:
            started = self.clock.monotonic()
            try:
                await reconcile_pass(self, body, job)
            except NamespaceTerminating:
                # Its namespace is being deleted (and it with it): nothing more is made, nothing retried.
                self._record(started, failed=False)
                remembered.failures = 0
                logger.info("%s/%s: its namespace is being deleted", metadata["namespace"], metadata["name"])
            except Exception as error:  # kopf does not retry event handlers: requeue ourselves
                self._record(started, failed=True)
                remembered.failures += 1
                delay = backoff(remembered.failures, MAX_BACKOFF_SECONDS)
                logger.warning(
                    "reconcile of %s/%s failed (%s: %s); retrying in %.0fs",
                    metadata["namespace"],
                    metadata["name"],
                    type(error).__name__,
                    error,
                    delay,
                )
                self.requeue(metadata["namespace"], metadata["name"], uid, "retry", delay)
            else:
                self._record(started, failed=False)
                remembered.failures = 0

    def _record(self, started: float, failed: bool) -> None:
        if self.metrics is not None:
            self.metrics.record_reconcile(self.clock.monotonic() - started, failed)

    async def reconcile_from_views(self, namespace: str, name: str) -> None:
        """A pass for a timer or the log loop: the latest body and Job the watches delivered."""
        await self.check_active()
        if not self.active:
            return  # standing by: when this replica resumes, kopf's new watch re-lists every object
        body = self.memory.body(namespace, name)
        if body is None:
            return
        await self.reconcile(body, self.views.job(body))

    def requeue(self, namespace: str, name: str, uid: str, purpose: str, delay: float) -> None:
        self.timers.schedule((uid, purpose), delay, lambda: self.reconcile_from_views(namespace, name))

    async def post(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event on the FineTuneJob. One that cannot be posted now (the API briefly away) is kept
        and posted later with its own time, so that the Events still tell the whole story."""
        remembered = self.memory.of(owner["metadata"]["uid"])
        name = event_name(owner["metadata"]["name"])
        remembered.unposted.append(Unposted(owner, kind, reason, message, self.clock.now(), name))
        await self.post_unposted(owner["metadata"]["uid"])

    async def post_unposted(self, uid: str) -> None:
        remembered = self.memory.get(uid)
        if remembered is None:
            return
        while remembered.unposted:
            event = remembered.unposted[0]
            try:
                await self.kube.post_event(event.owner, event.kind, event.reason, event.message, event.when, event.name)
            except NamespaceTerminating:
                remembered.unposted.clear()  # Events of a namespace being deleted would go with it
                return
            except Exception as error:
                logger.info("could not post event %s on %s: %s", event.reason, event.owner["metadata"]["name"], error)
                remembered.event_failures += 1
                delay = backoff(remembered.event_failures, MAX_BACKOFF_SECONDS)
                self.timers.schedule((uid, "events"), delay, lambda: self.post_unposted(uid))
                return
            remembered.unposted.pop(0)
            remembered.event_failures = 0

    # -- peering --------------------------------------------------------------------------------

    async def check_active(self) -> None:
        """With peering, find whether this replica is the active one (kopf pauses only its own watches)."""
        peering = self.peering
        if peering is None:
            return
        try:
            views = [await self.kube.read_peers(peering.name, ns) for ns in peering.namespaces or (None,)]
        except Exception as error:  # keep the last answer: kopf's own watch decides the pause anyway
            logger.info("could not read peering %s: %s", peering.name, error)
            return
        now = self.clock.now()
        active = all(is_active(peers, peering.identity, peering.priority, now) for peers in views)
        if active != self.active:
            logger.info("this replica is now %s", "active" if active else "standing by")
            if active and not await self._listed_children():
                return  # still standing by: the next check tries again
            if not active:
                # Another replica acts from now on: what this one remembers (its last writes, its
                # timers) will be stale. kopf pauses the watches, and lists every object anew when
                # they resume, which may come before this check notices: so forget now, not then.
                for uid in list(self.memory.objects):
                    self.timers.cancel_all(uid)
                self.memory = Memory()
        self.active = active
        if self.metrics is not None:
            self.metrics.leader.labels(name=peering.name).set(1 if active else 0)

    # -- start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Before kopf's watches start: the children as they are now, so that no pass sees a partial view."""
        await self.check_active()
        if self.active:  # (a standby replica lists them when it becomes the active one)
            await self.watched.list_all(self.kube, self.namespaces)
        self.loop_task = asyncio.create_task(follow_logs(self))

    async def _listed_children(self) -> bool:
        """The children listed anew, for a replica that becomes the active one: those deleted while
        kopf's watches were paused sent no event."""
        try:
            await self.watched.list_all(self.kube, self.namespaces)
        except Exception as error:
            logger.info("could not list the children: %s", error)
            return False
        return True

    async def stop(self) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()

    # -- for /metrics (read from the scrape thread: copies only) ---------------------------------

    def phases(self) -> dict[str, str]:
        return self.memory.phases() if self.active else {}

    def trainings(self) -> dict[Key, Any]:
        if not self.active:
            return {}
        return {(f.namespace, f.name): f.latest for f in self.memory.followed() if f.latest is not None}

    def stalled(self) -> dict[Key, bool]:
        if not self.active:
            return {}
        return {(f.namespace, f.name): stalled(f) for f in self.memory.followed()}

    def records(self) -> list[Record]:
        """The FineTuneJobs not yet cleaned up, with their status as this process last wrote it (else stored)."""
        if not self.active:
            return []
        found = []
        for (namespace, name), body in list(self.memory.bodies.items()):
            remembered = self.memory.get(body["metadata"]["uid"])
            written = remembered.written if remembered is not None else None
            status = written if written is not None else body.get("status")
            status = status if isinstance(status, dict) else {}
            phase = remembered.phase if remembered is not None and remembered.phase else status.get("phase")
            found.append(record_of(namespace, name, phase, status))
        return found


def event_name(owner_name: str) -> str:
    """A new Event's own name (as client-go's recorder makes them: the object's name and a unique suffix)."""
    return f"{owner_name}.{uuid.uuid4().hex[:16]}"


def settled(body: dict[str, Any]) -> bool:
    """Finished and cleaned up: the record of a training, with nothing left to do for it."""
    status = body.get("status")
    return isinstance(status, dict) and status.get("phase") in TERMINAL_PHASES and bool(status.get("cleanupTime"))
