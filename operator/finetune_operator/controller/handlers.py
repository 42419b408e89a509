"""kopf handlers: level-based reconciliation of FineTuneJobs and the Jobs they own.

Only low-level handlers (`on.event`, `index`) are used: kopf then keeps no diff-base or progress
annotations on the user's object and adds no finalizer, so GitOps tools see no drift and a delete
never hangs while the operator is down. TTL deadlines are asyncio timers recomputed from
`status.completionTime` whenever an object is seen, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic
from kubernetes.client.exceptions import ApiException

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.status import TERMINAL_PHASES, FineTuneJobStatus
from finetune_operator.controller import metrics
from finetune_operator.controller.kube import COMPONENT, Kube
from finetune_operator.controller.peering import is_active
from finetune_operator.controller.progress import (
    LIMIT_BYTES,
    TAIL_LINES,
    Followed,
    ProgressState,
    fold,
    gather_bounded,
    readable_again,
    termination_message,
    training_pod,
    unreadable_condition,
)
from finetune_operator.observe.progress import format_duration
from finetune_operator.observe.status import (
    Observation,
    TrainerVerdict,
    Verdict,
    derive_status,
    job_verdict,
    parse_timestamp,
    timestamp,
    trainer_verdict_from_termination,
    ttl_deadline,
    verdict,
)
from finetune_operator.render.entrypoint import CONTAINER_NAME
from finetune_operator.render.manifests import (
    ANNOTATION_REQUESTED_SUSPEND,
    LABEL_NAME,
    config_map_name,
    render,
    suspend_text,
)

logger = logging.getLogger("finetune_operator")

FTJ = (GROUP, VERSION, PLURAL)
NORMAL_PHASES = {"Pending", "Running", "Suspended", "Succeeded"}


@dataclass(frozen=True)
class Peering:
    """This replica in kopf peering: the peering object(s) and its own entry there."""

    name: str
    namespaces: tuple[str, ...]  # empty: cluster-wide (ClusterKopfPeering)
    identity: str
    priority: int
    lifetime: int  # seconds without a keep-alive before peers presume this replica dead


class State:
    """What the operator process remembers: none of it is needed for correctness after a restart."""

    def __init__(self) -> None:
        self.kube: Kube | None = None
        self.locks: dict[str, asyncio.Lock] = {}
        self.ttl_timers: dict[str, asyncio.TimerHandle] = {}
        self.written: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}
        self.tasks: set[asyncio.Future[None]] = set()
        self.progress = ProgressState()
        self.pods: kopf.Index[Any, Any] | None = None
        self.ftjs: kopf.Index[Any, Any] | None = None
        self.loop_task: asyncio.Task[None] | None = None
        self.retries: dict[str, asyncio.TimerHandle] = {}
        self.phases: dict[str, str] = {}
        # Jobs this process created that its Job watch may not have delivered yet (two watches,
        # no ordering between them): without it, the next FineTuneJob event would create again (409).
        self.created_jobs: dict[str, dict[str, Any]] = {}
        self.peering: Peering | None = None
        self.active = True

    def backoff(self, uid: str) -> float:
        self.failures[uid] = self.failures.get(uid, 0) + 1
        return float(min(2 ** self.failures[uid], 60))

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        self.progress.followed.pop(uid, None)
        self.locks.pop(uid, None)
        self.written.pop(uid, None)
        self.failures.pop(uid, None)
        self.phases.pop(uid, None)
        self.created_jobs.pop(uid, None)
        for timers in (self.ttl_timers, self.retries):
            timer = timers.pop(uid, None)
            if timer is not None:
                timer.cancel()


STATE = State()


def _phases() -> dict[str, str]:
    return dict(STATE.phases) if STATE.active else {}


def _trainings() -> dict[tuple[str, str], Any]:
    if not STATE.active:
        return {}
    followed = list(STATE.progress.followed.values())
    return {(f.namespace, f.name): f.written for f in followed if f.written is not None}


metrics.register_finetunejob_gauges(_phases, _trainings)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler bookkeeping, should any ever be needed, goes to status, never to annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    # A watch that the network silently drops is re-established instead of waiting forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.INFO
    # One name in the "From" column of `kubectl describe`, for kopf's events and the operator's own.
    settings.posting.reporting_component = COMPONENT
    # The CRD is checked (or installed) before kopf starts; watching CRDs for new resources would
    # need a cluster-wide read permission that the operator's RBAC deliberately does not grant.
    settings.scanning.disabled = True
    if STATE.peering is not None:
        settings.posting.reporting_instance = STATE.peering.identity
        settings.peering.lifetime = STATE.peering.lifetime
    if STATE.kube is None:
        STATE.kube = Kube.from_environment()
    await _check_active()
    STATE.loop_task = asyncio.create_task(_progress_loop())


@kopf.on.cleanup()
async def stop_progress_loop(**_: Any) -> None:
    if STATE.loop_task is not None:
        STATE.loop_task.cancel()


@kopf.index("", "v1", "pods", labels={LABEL_NAME: kopf.PRESENT})
async def pods_by_owner(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Training pods by (namespace, FineTuneJob name), slimmed to what progress reading needs."""
    slim = {
        "metadata": {k: body["metadata"].get(k) for k in ("name", "creationTimestamp", "uid")},
        "status": {k: body.get("status", {}).get(k) for k in ("phase", "containerStatuses")},
    }
    return {(namespace, body["metadata"]["labels"][LABEL_NAME]): slim}


def _kube() -> Kube:
    assert STATE.kube is not None, "the startup handler sets the client"
    return STATE.kube


@kopf.index("batch", "v1", "jobs", labels={LABEL_NAME: kopf.PRESENT})
async def jobs_by_owner(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The Jobs the operator made, by (namespace, FineTuneJob name): read from the watch, never polled."""
    return {(namespace, body["metadata"]["labels"][LABEL_NAME]): copy.deepcopy(dict(body))}


@kopf.index(*FTJ)
async def finetunejobs_by_name(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace, name): copy.deepcopy(dict(body))}


@kopf.on.event(*FTJ)
async def finetunejob_changed(
    event: dict[str, Any],
    body: kopf.Body,
    jobs_by_owner: kopf.Index[Any, Any],
    pods_by_owner: kopf.Index[Any, Any],
    finetunejobs_by_name: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    STATE.pods = pods_by_owner  # a live view: the progress loop reads it between events
    STATE.ftjs = finetunejobs_by_name
    if event.get("type") == "DELETED":
        STATE.forget(body["metadata"]["uid"])
        return
    await reconcile(copy.deepcopy(dict(body)), _single(jobs_by_owner, body["metadata"]))


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_NAME: kopf.PRESENT})
async def job_changed(
    event: dict[str, Any],
    body: kopf.Body,
    jobs_by_owner: kopf.Index[Any, Any],
    finetunejobs_by_name: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    STATE.ftjs = finetunejobs_by_name
    owner = _single(finetunejobs_by_name, {**body["metadata"], "name": body["metadata"]["labels"][LABEL_NAME]})
    if owner is None or not _owns(owner, body):
        return
    job = None if event.get("type") == "DELETED" else copy.deepcopy(dict(body))
    if job is None:
        STATE.created_jobs.pop(owner["metadata"]["uid"], None)
    await reconcile(owner, job)


def _single(index: kopf.Index[Any, Any], metadata: Any) -> dict[str, Any] | None:
    found = list(index.get((metadata["namespace"], metadata["name"]), []))
    return found[-1] if found else None


def _owns(ftj: dict[str, Any], child: dict[str, Any]) -> bool:
    uid = ftj["metadata"]["uid"]
    return any(ref.get("uid") == uid and ref.get("controller") for ref in child["metadata"].get("ownerReferences", []))


async def reconcile(body: dict[str, Any], job: dict[str, Any] | None) -> None:
    """Bring one FineTuneJob's children and status in line with what is observed now."""
    metadata = body["metadata"]
    if metadata.get("deletionTimestamp"):
        return
    uid = metadata["uid"]
    async with STATE.lock(uid):
        started = time.perf_counter()
        try:
            await _reconcile_locked(body, job)
        except Exception as error:  # kopf does not retry event handlers: requeue ourselves
            metrics.record_reconcile(time.perf_counter() - started, failed=True)
            delay = STATE.backoff(uid)
            logger.warning(
                "reconcile of %s/%s failed (%s); retrying in %.0fs",
                metadata["namespace"],
                metadata["name"],
                error,
                delay,
            )
            _requeue(metadata["namespace"], metadata["name"], uid, delay)
        else:
            metrics.record_reconcile(time.perf_counter() - started, failed=False)
            STATE.failures.pop(uid, None)


async def _reconcile_locked(body: dict[str, Any], job: dict[str, Any] | None) -> None:
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    current = FineTuneJobStatus.model_validate(body.get("status") or {}, strict=False)
    written = STATE.written.get(metadata["uid"])
    if written is not None and written.get("phase") in TERMINAL_PHASES and current.phase not in TERMINAL_PHASES:
        # This body predates our own terminal write: the terminal status is the truth.
        current = FineTuneJobStatus.model_validate(written, strict=False)
    if job is not None and not _owns(body, job):
        job = None
    if job is None:
        job = STATE.created_jobs.get(metadata["uid"])  # created by us, not yet seen by the watch
    else:
        STATE.created_jobs.pop(metadata["uid"], None)  # the watch has it: its view is the newer one
    invalid: list[str] | None = None
    ftj = None
    try:
        ftj = load_finetunejob(body)
    except InvalidFineTuneJob as error:
        invalid = error.problems

    terminal = current.phase in ("Succeeded", "Failed")
    if ftj is not None and job is None and not terminal:
        try:
            job = await _create_children(body, ftj)
        except ChildRejected as error:
            invalid = [str(error)]
    elif ftj is not None and job is not None and not terminal:
        await _follow_suspend(body, ftj.spec.suspend, job)

    uid = metadata["uid"]
    followed = STATE.progress.followed.get(uid)
    finished = job is not None and job_verdict(job).phase in TERMINAL_PHASES
    if finished and not terminal and ftj is not None:
        # The last lines, with the trainer's verdict (also for a run too short to be seen Running).
        followed = followed or STATE.progress.followed.setdefault(uid, _new_followed(namespace, name, ftj, current))
        await _read_progress(uid, followed)
    observation = Observation(
        generation=metadata.get("generation") or 0,
        status=current,
        job=job,
        job_name=name,
        now=datetime.now(UTC),
        invalid=invalid if job is None else None,
        extra_conditions=[followed.condition] if followed is not None and followed.condition else [],
        trainer=_trainer_verdict(followed, namespace, name),
    )
    desired = derive_status(observation)
    if followed is not None and followed.written is not None:
        desired = desired.model_copy(update={"trainer_status": followed.written})
    _follow_progress(uid, namespace, name, desired.phase, ftj, current)
    if desired.phase is not None:
        STATE.phases[uid] = desired.phase
    await _write_status(body, current, desired, verdict(observation))
    if ftj is not None:
        await _schedule_ttl(body, desired, ftj.spec.ttl_seconds_after_finished, ftj.spec.ttl_policy)
    logger.debug("reconciled %s/%s: %s", namespace, name, desired.phase)


def _trainer_verdict(followed: Followed | None, namespace: str, name: str) -> TrainerVerdict | None:
    """The trainer's verdict: its log if it was read, else the entrypoint's termination message."""
    if followed is not None and followed.progress is not None and followed.progress.verdict != "running":
        return TrainerVerdict(followed.progress.verdict, followed.progress.evidence)
    pods = list(STATE.pods.get((namespace, name), [])) if STATE.pods is not None else []
    return trainer_verdict_from_termination(termination_message(training_pod(pods)))


def _new_followed(namespace: str, name: str, ftj: Any, current: FineTuneJobStatus) -> Followed:
    """Start following a log; a step already in status was announced before (e.g. before a restart)."""
    followed = Followed(namespace, name, ftj.spec.exp_config.run_settings.max_iter)
    values = current.trainer_status.metric_values() if current.trainer_status else {}
    followed.started_announced = values.get("step", "0") != "0"
    followed.written = current.trainer_status
    return followed


def _follow_progress(
    uid: str, namespace: str, name: str, phase: str | None, ftj: Any, current: FineTuneJobStatus
) -> None:
    """Read the log of Running FineTuneJobs only; a finished or suspended one is never read again."""
    if phase == "Running" and ftj is not None:
        if uid not in STATE.progress.followed:
            STATE.progress.followed[uid] = _new_followed(namespace, name, ftj, current)
    elif phase in TERMINAL_PHASES or phase == "Suspended":
        STATE.progress.followed.pop(uid, None)


async def _progress_loop() -> None:
    while True:
        await asyncio.sleep(STATE.progress.interval)
        await _check_active()
        if not STATE.active:
            continue
        followed = list(STATE.progress.followed.items())
        await gather_bounded([_read_progress(uid, f) for uid, f in followed])


async def _read_progress(uid: str, followed: Followed) -> None:
    pods = list(STATE.pods.get((followed.namespace, followed.name), [])) if STATE.pods is not None else []
    pod = training_pod(pods)
    if pod is None:
        return
    try:
        text = await _kube().read_log(
            followed.namespace, pod["metadata"]["name"], CONTAINER_NAME, TAIL_LINES, LIMIT_BYTES
        )
    except Exception as error:  # pod gone, kubelet unreachable: not the training's fault
        if unreadable_condition(followed, str(error).splitlines()[0][:300], 0) is not None:
            _spawn_reconcile_latest(followed.namespace, followed.name)
        return
    if readable_again(followed, 0) is not None:
        _spawn_reconcile_latest(followed.namespace, followed.name)
    update = fold(followed, text)
    if update is None:
        return
    await _kube().patch_status(
        followed.namespace, followed.name, {"trainerStatus": update.model_dump(by_alias=True, exclude_none=True)}
    )
    first_step = followed.progress is not None and followed.progress.steps > 0 and not followed.started_announced
    followed.written = update
    if first_step:
        followed.started_announced = True
        await _post(followed.namespace, followed.name, "TrainingStarted", "the trainer finished its first step")


async def _post(namespace: str, name: str, reason: str, message: str) -> None:
    owner = _single(STATE.ftjs, {"namespace": namespace, "name": name}) if STATE.ftjs is not None else None
    if owner is not None:
        await _kube().post_event(owner, "Normal", reason, message)


class ChildRejected(Exception):
    """The API server refused a child for good (400/422): retrying cannot help."""


async def _create_children(body: dict[str, Any], ftj: Any) -> dict[str, Any] | None:
    """ConfigMap, then Job: a crash in between leaves a ConfigMap the next pass reuses; a Job the
    API server refuses takes its ConfigMap with it, so no half-made set stays behind."""
    kube = _kube()
    created_job = None
    for manifest in render(ftj):
        try:
            created = await kube.create(manifest)
        except (ApiException, pydantic.ValidationError) as error:
            if isinstance(error, ApiException) and error.status not in (400, 422):
                raise
            await kube.delete("ConfigMap", body["metadata"]["namespace"], config_map_name(ftj))
            raise ChildRejected(f"the {manifest['kind']} is invalid: {_refusal(error)}") from None
        if manifest["kind"] == "Job" and created is not None:
            created_job = STATE.created_jobs[body["metadata"]["uid"]] = created
    return created_job


async def _follow_suspend(body: dict[str, Any], suspend: bool, job: dict[str, Any]) -> None:
    """Pass a *change* of spec.suspend to the Job; a queue controller's own suspend is left alone."""
    annotations = job["metadata"].get("annotations") or {}
    if annotations.get(ANNOTATION_REQUESTED_SUSPEND) == suspend_text(suspend):
        return
    await _kube().set_job_suspend(body["metadata"]["namespace"], job["metadata"]["name"], suspend)
    job.setdefault("spec", {})["suspend"] = suspend
    annotations[ANNOTATION_REQUESTED_SUSPEND] = suspend_text(suspend)
    job["metadata"]["annotations"] = annotations
    kopf.event(
        body,
        type="Normal",
        reason="Suspended" if suspend else "Resumed",
        message=f"spec.suspend is now {suspend_text(suspend)}: passed to Job {job['metadata']['name']}",
    )


def _refusal(error: ApiException | pydantic.ValidationError) -> str:
    """What was wrong with a child, from the API server's answer or the client's own type check."""
    if isinstance(error, pydantic.ValidationError):
        # The client checks the body before sending; locations start with the argument index.
        return "; ".join(
            ".".join(str(part).strip("`") for part in item["loc"][1:]) + f": {item['msg']}"
            for item in error.errors(include_url=False)
        )
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


def _summary(status: FineTuneJobStatus) -> str:
    """Final loss and duration, for the event that announces the end of training."""
    if status.phase not in TERMINAL_PHASES:
        return ""
    parts = []
    values = status.trainer_status.metric_values() if status.trainer_status else {}
    if "loss" in values:
        parts.append(f"final loss {values['loss']} at step {values.get('step', '?')}")
    if status.start_time and status.completion_time:
        seconds = int((parse_timestamp(status.completion_time) - parse_timestamp(status.start_time)).total_seconds())
        parts.append(f"in {format_duration(max(0, seconds))}")
    return f" ({', '.join(parts)})" if parts else ""


def _status_dict(status: FineTuneJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


async def _write_status(
    body: dict[str, Any], current: FineTuneJobStatus, desired: FineTuneJobStatus, why: Verdict
) -> None:
    uid = body["metadata"]["uid"]
    wanted = _status_dict(desired)
    if wanted == _status_dict(current) or STATE.written.get(uid) == wanted:
        return
    await _kube().patch_status(body["metadata"]["namespace"], body["metadata"]["name"], wanted)
    if logger.isEnabledFor(logging.DEBUG):
        reasons = {c["type"]: c["reason"] for c in wanted.get("conditions", []) if c["status"] == "True"}
        logger.debug(
            "status of %s/%s: %s %s", body["metadata"]["namespace"], body["metadata"]["name"], desired.phase, reasons
        )
    STATE.written[uid] = wanted
    if desired.phase != current.phase:
        kind = "Normal" if desired.phase in NORMAL_PHASES else "Warning"
        kopf.event(body, type=kind, reason=why.reason, message=f"{why.phase}: {why.message}{_summary(desired)}")


async def _schedule_ttl(body: dict[str, Any], status: FineTuneJobStatus, ttl: int | None, policy: str) -> None:
    uid = body["metadata"]["uid"]
    if STATE.written.get(uid, {}).get("cleanupTime"):
        return  # cleaned up already; this body predates that status write
    deadline = ttl_deadline(status, ttl)
    timer = STATE.ttl_timers.pop(uid, None)
    if timer is not None:
        timer.cancel()
    if deadline is None:
        return
    delay = (deadline - datetime.now(UTC)).total_seconds()
    if delay <= 0:
        await _clean_up(body, status, policy)
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    STATE.ttl_timers[uid] = asyncio.get_running_loop().call_later(delay, _spawn_reconcile_latest, namespace, name)


def _requeue(namespace: str, name: str, uid: str, delay: float) -> None:
    previous = STATE.retries.pop(uid, None)
    if previous is not None:
        previous.cancel()
    STATE.retries[uid] = asyncio.get_running_loop().call_later(delay, _spawn_reconcile_latest, namespace, name)


async def _check_active() -> None:
    """With peering, find whether this replica is the active one (kopf pauses only its own watches)."""
    peering = STATE.peering
    if peering is None:
        return
    now = datetime.now(UTC)
    try:
        views = [await _kube().read_peers(peering.name, ns) for ns in peering.namespaces or (None,)]
    except Exception as error:  # keep the last answer: kopf's own watch decides the pause anyway
        logger.info("could not read peering %s: %s", peering.name, error)
        return
    active = all(is_active(peers, peering.identity, peering.priority, now) for peers in views)
    if active != STATE.active:
        logger.info("this replica is now %s", "active" if active else "standing by")
    STATE.active = active
    metrics.LEADER.labels(name=peering.name).set(1 if active else 0)


def _spawn_reconcile_latest(namespace: str, name: str) -> None:
    task = asyncio.ensure_future(_reconcile_latest(namespace, name))
    STATE.tasks.add(task)
    task.add_done_callback(STATE.tasks.discard)


async def _reconcile_latest(namespace: str, name: str) -> None:
    """A timer fired (TTL or retry): reconcile with the latest body and the Job as it is now."""
    await _check_active()
    if not STATE.active:
        return  # standing by: when this replica resumes, kopf's new watch re-lists every object
    try:
        raw = await asyncio.to_thread(
            _kube().custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        job = await _kube().read_job(namespace, name)
    except Exception as error:  # gone (nothing to do), or the API is briefly unreachable (the watch resumes)
        logger.info("could not read %s/%s: %s", namespace, name, error)
        return
    await reconcile(raw, job)


async def _clean_up(body: dict[str, Any], status: FineTuneJobStatus, policy: str) -> None:
    """TTL expired: delete the Job (pods with it) and the ConfigMap; keep the record unless told otherwise."""
    kube = _kube()
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    await kube.delete("Job", namespace, name)
    await kube.delete("ConfigMap", namespace, f"{name}-config")
    if policy == "DeleteFineTuneJob":
        kopf.event(body, type="Normal", reason="TTLExpired", message="deleting the FineTuneJob (ttlPolicy)")
        await kube.delete_finetunejob(namespace, name, metadata["uid"])
        return
    now = timestamp(datetime.now(UTC))
    cleaned = _status_dict(status)
    cleaned["cleanupTime"] = now
    cleaned["conditions"] = [c for c in cleaned.get("conditions", []) if c["type"] != "CleanedUp"] + [
        {
            "type": "CleanedUp",
            "status": "True",
            "observedGeneration": metadata.get("generation") or 0,
            "lastTransitionTime": now,
            "reason": "TTLExpired",
            "message": "ttlSecondsAfterFinished passed: deleted the Job, its pods and the ConfigMap",
        }
    ]
    await kube.patch_status(namespace, name, cleaned)
    STATE.written[metadata["uid"]] = cleaned
    kopf.event(body, type="Normal", reason="TTLExpired", message="deleted the Job, its pods and the ConfigMap")
