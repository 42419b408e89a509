"""Making a FineTuneJob's children, and telling ours from someone else's.

The Job comes first; then, owned by the Job so that the garbage collector removes them with it (the
operator needs no permission to delete them, and a withdrawn Job leaves nothing behind), the headless
Service of a multi-node Job's ranks and last the ConfigMap, without which no pod starts. A crash in
between leaves a Job whose pods wait for their ConfigMap, which the next pass creates. A name that
is taken is never trusted: the object is read, and only one that names this FineTuneJob (or its Job)
as controller is used. A namesake left by a deleted FineTuneJob of the same name, or by an earlier
attempt's Job, is waited for; a foreign one stalls the FineTuneJob with a message until a human
removes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from finetune_operator.api.status import Condition
from finetune_operator.controller.context import PassContext
from finetune_operator.controller.kube import Conflict, Refused
from finetune_operator.controller.memory import Remembered
from finetune_operator.decide.decision import Told
from finetune_operator.observe.attempts import attempt_of
from finetune_operator.observe.owners import controller_of
from finetune_operator.observe.pods import STARTED_PHASES, slim_job
from finetune_operator.observe.status import Verdict, has_pods
from finetune_operator.observe.times import backoff, parse_timestamp, timestamp
from finetune_operator.render import manifests, multinode
from finetune_operator.render.objects import config_map_name
from finetune_operator.render.plan import Facts, Plan

WAIT_FOR_PREVIOUS_SECONDS = 2.0
MAX_RECHECK_SECONDS = 60.0
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Outcome:
    job: dict[str, Any] | None
    blocked: Verdict | None = None  # no Job (yet), and why
    refused: str | None = None  # the API server will never take these children: InvalidSpec


def _waiting(what: str, reason: str = "WaitingForPreviousRun") -> Verdict:
    if reason == "WaitingForPreviousRun":
        return Verdict("Pending", reason, f"{what} of a deleted FineTuneJob of this name is being removed")
    return Verdict("Pending", reason, f"{what} is being removed first")


def _conflict(what: str) -> Verdict:
    return Verdict(
        "Pending",
        "NameConflict",
        f"{what} exists and does not belong to this FineTuneJob: delete or rename it, and the training starts",
        stalled=True,
    )


async def create(ctl: PassContext, body: dict[str, Any], plan: Plan, remembered: Remembered, attempt: int) -> Outcome:
    assert plan.ftj is not None
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    manifest = plan.first_job(attempt)
    if manifest is None:  # a later attempt's
        manifest = await asyncio.to_thread(manifests.job, plan.ftj, attempt)
    job_name = manifest["metadata"]["name"]
    job: dict[str, Any] | None
    try:
        # Kept slim, as the watch's copy will be: the whole rendered Job (23 KB, the entrypoint) would
        # stay in memory until the watch delivers it, a thousand at once in a burst.
        job = slim_job(await ctl.kube.create_job(manifest))
        _tell_created(remembered, job)
    except Refused as error:
        return Outcome(None, refused=f"the Job is invalid: {str(error)[:MESSAGE_LIMIT]}")
    except Conflict:
        found = await ctl.kube.read_job(namespace, job_name)
        kind, owner_name, owner_uid = controller_of(found) if found is not None else (None, None, None)
        if found is None:
            job = None  # gone meanwhile: the next pass creates it
            blocked = _waiting(f"Job {job_name}")
        elif owner_uid == uid and attempt_of(found) == attempt:
            job = slim_job(found)  # ours: made by this operator before a restart
            blocked = None
        elif owner_uid == uid:
            job, blocked = None, _waiting(f"the Job of attempt {attempt_of(found)}", "WaitingForPreviousAttempt")
        elif kind == "FineTuneJob" and owner_name == name:
            job, blocked = None, _waiting(f"Job {job_name}")
        else:
            job, blocked = None, _conflict(f"a Job named {job_name}")
        if job is None:
            stalled = blocked is not None and blocked.stalled
            _recheck(ctl, body, remembered, "children", None if stalled else WAIT_FOR_PREVIOUS_SECONDS)
            return Outcome(None, blocked=blocked)
    remembered.job.created = job
    remembered.job.config_map_due = True
    return await ensure_config_map(ctl, body, plan, job, remembered, attempt)


def _tell_created(remembered: Remembered, job: dict[str, Any]) -> None:
    """The first Job of a FineTuneJob made is told (Pending: created Job) by this pass's status write,
    or by the next pass if something between them fails (the API server died under the ConfigMap's
    create): a training that then starts at once is still told from its beginning."""
    if remembered.told_phase is None and not (job.get("spec") or {}).get("suspend"):
        name = job["metadata"]["name"]
        remembered.untold = Told("Pending", "Normal", "JobCreated", f"Pending: created Job {name}")


async def _ensure_service(
    ctl: PassContext, body: dict[str, Any], plan: Plan, job: dict[str, Any], remembered: Remembered
) -> Outcome | None:
    """The headless Service of this Job's ranks: owned by the Job (it goes with the attempt, and with a
    Job withdrawn) and selecting only the Job's own pods (its controller-uid), so that no other pod
    publishes itself under a rank's name. Made before the ConfigMap, without which no rank starts: a
    rank never looks up a name that is not there yet. None when it is there."""
    assert plan.ftj is not None
    manifest = multinode.service(plan.ftj, job)
    namespace, name = body["metadata"]["namespace"], manifest["metadata"]["name"]
    made = await _create_for_job(ctl, body, job, remembered, ctl.kube.create_service, manifest)
    if isinstance(made, Outcome):
        return made
    if not made:
        found = await ctl.kube.read_service(namespace, name)
        kind, owner_name, owner_uid = controller_of(found) if found is not None else (None, None, None)
        ours = owner_uid in (
            job["metadata"]["uid"],
            body["metadata"]["uid"],
        )  # by an earlier version: the FineTuneJob's
        if not ours and (found is None or (kind in ("Job", "FineTuneJob") and owner_name == name)):
            # Of an attempt before this one, or of a deleted namesake: the garbage collector is removing it.
            _recheck(ctl, body, remembered, "children", WAIT_FOR_PREVIOUS_SECONDS)
            return Outcome(job)
        if not ours:
            await _withdraw(ctl, body, job, remembered)
            _recheck(ctl, body, remembered, "children", None)
            return Outcome(None, blocked=_conflict(f"a Service named {name}"))
    remembered.job.service_seen = True
    return None


async def ensure_config_map(
    ctl: PassContext, body: dict[str, Any], plan: Plan, job: dict[str, Any], remembered: Remembered, attempt: int
) -> Outcome:
    """The Job's ConfigMap exists and is the Job's; if it cannot be, the Job goes (its pod must never
    run with another object's files)."""
    if remembered.job.config_map_seen or (not remembered.job.config_map_due and _pod_started(ctl, body, job)):
        remembered.job.config_map_seen = True
        return Outcome(job)
    if config_map_can_wait(job, remembered, plan.facts):
        return Outcome(job)
    assert plan.ftj is not None
    if multinode.is_multi_node(plan.ftj) and not remembered.job.service_seen:
        waiting = await _ensure_service(ctl, body, plan, job, remembered)
        if waiting is not None:
            return waiting
    manifest = plan.first_config_map(attempt, job)
    if manifest is None:
        manifest = await asyncio.to_thread(manifests.config_map, plan.ftj, job, attempt)
    namespace, name = body["metadata"]["namespace"], config_map_name(plan.ftj, attempt)
    if remembered.job.created is not job and await _config_map_is_the_jobs(ctl, namespace, name, job):
        remembered.job.config_map_seen, remembered.job.config_map_due = True, False  # found: no create needed
        return Outcome(job)
    made = await _create_for_job(ctl, body, job, remembered, ctl.kube.create_config_map, manifest)
    if isinstance(made, Outcome):
        return made
    if not made and not await _config_map_is_the_jobs(ctl, namespace, name, job):
        await _withdraw(ctl, body, job, remembered)
        _recheck(ctl, body, remembered, "children", None)
        return Outcome(None, blocked=_conflict(f"a ConfigMap named {name}"))
    remembered.job.config_map_seen, remembered.job.config_map_due = True, False
    return Outcome(job)


def config_map_can_wait(job: dict[str, Any], remembered: Remembered, facts: Facts | None) -> bool:
    """A Job held suspended as its FineTuneJob asks, and not made by this process: no pod needs its
    ConfigMap before it resumes, and the pass that resumes it looks first. (After a restart, a thousand
    suspended FineTuneJobs then cost no read and no rendering.)"""
    held = bool((job.get("spec") or {}).get("suspend"))
    return held and facts is not None and facts.suspend and not remembered.job.config_map_due


async def _create_for_job(
    ctl: PassContext,
    body: dict[str, Any],
    job: dict[str, Any],
    remembered: Remembered,
    create: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    manifest: dict[str, Any],
) -> bool | Outcome:
    """Create a child of the Job: True when made, False when its name is taken; refused by the API server,
    the Job is withdrawn (no half-made set stays) and the refusal is the Outcome."""
    try:
        await create(manifest)
    except Refused as error:
        await _withdraw(ctl, body, job, remembered)
        return Outcome(None, refused=f"the {manifest['kind']} is invalid: {str(error)[:MESSAGE_LIMIT]}")
    except Conflict:
        return False
    return True


async def _config_map_is_the_jobs(ctl: PassContext, namespace: str, name: str, job: dict[str, Any]) -> bool:
    found = await ctl.kube.read_config_map(namespace, name)
    return found is not None and controller_of(found)[2] == job["metadata"]["uid"]


async def _withdraw(ctl: PassContext, body: dict[str, Any], job: dict[str, Any], remembered: Remembered) -> None:
    """Delete the Job just made: its ConfigMap cannot be made, so no half-made set stays behind."""
    await ctl.kube.delete_job(body["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"])
    remembered.job.created = None


def _pod_started(ctl: PassContext, body: dict[str, Any], job: dict[str, Any]) -> bool:
    """A pod of the Job ran: its ConfigMap (and Service) were there."""
    pods = ctl.views.pods(body["metadata"]["namespace"], body["metadata"]["name"], job)
    return any((pod.get("status") or {}).get("phase") in STARTED_PHASES for pod in pods)


def _recheck(ctl: PassContext, body: dict[str, Any], remembered: Remembered, purpose: str, delay: float | None) -> None:
    """Look again later: after `delay`, or with a backoff that grows with each look (at most a minute)."""
    remembered.pod_create_checks += 1
    seconds = delay if delay is not None else backoff(remembered.pod_create_checks, MAX_RECHECK_SECONDS)
    metadata = body["metadata"]
    ctl.requeue(metadata["namespace"], metadata["name"], metadata["uid"], purpose, seconds)


async def pod_create_condition(
    ctl: PassContext, body: dict[str, Any], job: dict[str, Any], result: Verdict, remembered: Remembered
) -> Condition | None:
    """PodCreateFailed, with the API server's own words, while the Job controller cannot create the pod
    (Pod Security, quota, a webhook): the Job's status never says so, only its FailedCreate Events."""
    now = ctl.clock.now()
    previous = remembered.pod_create_condition
    # A held Job (suspended by the user or a queue) is Suspended, not Pending: it waits for no pod.
    if has_pods(job) or result.phase != "Pending":
        remembered.pod_create_checks = 0
        if previous is not None and previous.status == "True":
            remembered.pod_create_condition = _pod_condition("False", "PodsCreated", "the Job has its pod", now, body)
        return remembered.pod_create_condition
    created = job["metadata"].get("creationTimestamp")
    age = (now - parse_timestamp(created)).total_seconds() if created else ctl.settings.pod_create_recheck
    if age < ctl.settings.pod_create_recheck:
        metadata = body["metadata"]
        delay = ctl.settings.pod_create_recheck - age
        ctl.requeue(metadata["namespace"], metadata["name"], metadata["uid"], "pods", delay)
        return previous
    events = await ctl.kube.list_events(body["metadata"]["namespace"], job["metadata"]["uid"], "FailedCreate")
    _recheck(ctl, body, remembered, "pods", None)
    if not events:
        return previous
    newest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    message = str(newest.get("message") or "the Job controller cannot create the pod")[:MESSAGE_LIMIT]
    if previous is None or previous.status != "True" or previous.message != message:
        await ctl.post(body, "Warning", "PodCreateFailed", message)
        remembered.pod_create_condition = _pod_condition("True", "FailedCreate", message, now, body)
    return remembered.pod_create_condition


def _pod_condition(status: Any, reason: str, message: str, now: Any, body: dict[str, Any]) -> Condition:
    return Condition(
        type="PodCreateFailed",
        status=status,
        observed_generation=body["metadata"].get("generation") or 0,
        last_transition_time=timestamp(now),
        reason=reason,
        message=message,
    )
