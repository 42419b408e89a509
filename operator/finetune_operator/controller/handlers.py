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
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic
from kubernetes.client.exceptions import ApiException

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.controller.kube import Kube
from finetune_operator.observe.status import Observation, Verdict, derive_status, timestamp, ttl_deadline, verdict
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


class State:
    """What the operator process remembers: none of it is needed for correctness after a restart."""

    def __init__(self) -> None:
        self.kube: Kube | None = None
        self.locks: dict[str, asyncio.Lock] = {}
        self.ttl_timers: dict[str, asyncio.TimerHandle] = {}
        self.written: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}
        self.tasks: set[asyncio.Future[None]] = set()
        self.retries: dict[str, asyncio.TimerHandle] = {}

    def backoff(self, uid: str) -> float:
        self.failures[uid] = self.failures.get(uid, 0) + 1
        return float(min(2 ** self.failures[uid], 60))

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        self.locks.pop(uid, None)
        self.written.pop(uid, None)
        self.failures.pop(uid, None)
        for timers in (self.ttl_timers, self.retries):
            timer = timers.pop(uid, None)
            if timer is not None:
                timer.cancel()


STATE = State()


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
    if STATE.kube is None:
        STATE.kube = Kube.from_environment()


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
    event: dict[str, Any], body: kopf.Body, jobs_by_owner: kopf.Index[Any, Any], **_: Any
) -> None:
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
    owner = _single(finetunejobs_by_name, {**body["metadata"], "name": body["metadata"]["labels"][LABEL_NAME]})
    if owner is None or not _owns(owner, body):
        return
    job = None if event.get("type") == "DELETED" else copy.deepcopy(dict(body))
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
        try:
            await _reconcile_locked(body, job)
        except Exception as error:  # kopf does not retry event handlers: requeue ourselves
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
            STATE.failures.pop(uid, None)


async def _reconcile_locked(body: dict[str, Any], job: dict[str, Any] | None) -> None:
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    current = FineTuneJobStatus.model_validate(body.get("status") or {}, strict=False)
    if job is not None and not _owns(body, job):
        job = None
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

    observation = Observation(
        generation=metadata.get("generation") or 0,
        status=current,
        job=job,
        job_name=name,
        now=datetime.now(UTC),
        invalid=invalid if job is None else None,
    )
    desired = derive_status(observation)
    await _write_status(body, current, desired, verdict(observation))
    if ftj is not None:
        await _schedule_ttl(body, desired, ftj.spec.ttl_seconds_after_finished, ftj.spec.ttl_policy)
    logger.debug("reconciled %s/%s: %s", namespace, name, desired.phase)


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
        if manifest["kind"] == "Job":
            created_job = created
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
    STATE.written[uid] = wanted
    if desired.phase != current.phase:
        kind = "Normal" if desired.phase in NORMAL_PHASES else "Warning"
        kopf.event(body, type=kind, reason=why.reason, message=f"{why.phase}: {why.message}")


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


def _spawn_reconcile_latest(namespace: str, name: str) -> None:
    task = asyncio.ensure_future(_reconcile_latest(namespace, name))
    STATE.tasks.add(task)
    task.add_done_callback(STATE.tasks.discard)


async def _reconcile_latest(namespace: str, name: str) -> None:
    """A timer fired (TTL or retry): reconcile with the latest body and the Job as it is now."""
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
