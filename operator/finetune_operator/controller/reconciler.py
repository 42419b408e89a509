"""One reconcile pass: observe, derive, act, and write the status once.

observe   the FineTuneJob as stored, its Job (watched, or just created), the pods' ends, the log
derive    the plan (valid spec → Job manifest) and the status the observations call for
act       create the children, pass on suspend, clean up after the TTL
write     one status patch when the status changed, and an Event when the phase did
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pydantic

from finetune_operator.api.base import requested_suspend, suspend_annotation
from finetune_operator.api.status import NORMAL_PHASES, TERMINAL_PHASES, FineTuneJobStatus
from finetune_operator.controller import children, following
from finetune_operator.controller.context import PassContext
from finetune_operator.controller.memory import Remembered, Told
from finetune_operator.observe.attempts import Attempts, failure_cause, is_kept, is_stale, resize_due, retry
from finetune_operator.observe.following import Followed, first_step_due
from finetune_operator.observe.merge_patch import merge_patch
from finetune_operator.observe.outcome import pushed, trainer_verdict
from finetune_operator.observe.owners import owns
from finetune_operator.observe.pods import first_failed_rank, newest_phase, waiting_on
from finetune_operator.observe.progress import format_duration
from finetune_operator.observe.status import (
    MODEL_PATH_MISMATCH,
    Observation,
    Verdict,
    derive_status,
    job_verdict,
    model_path_condition,
    verdict,
)
from finetune_operator.observe.times import parse_timestamp
from finetune_operator.observe.ttl import Retention, cleanup_deadline
from finetune_operator.render.objects import attempt_job_name
from finetune_operator.render.plan import Facts, Plan, Powers, plan

logger = logging.getLogger("finetune_operator")


def status_dict(status: FineTuneJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def recorded_status(body: dict[str, Any], remembered: Remembered) -> FineTuneJobStatus:
    """The status as it stands: the one this process last wrote, if it wrote one (it is the only
    writer, and a watch may deliver a body older than that write), else the stored one."""
    recorded = remembered.written if remembered.written is not None else body.get("status") or {}
    try:
        return FineTuneJobStatus.model_validate(recorded, strict=False)
    except pydantic.ValidationError:
        return FineTuneJobStatus()  # not the operator's writing: the next write replaces it


async def reconcile_pass(ctl: PassContext, body: dict[str, Any], job: dict[str, Any] | None) -> None:
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    remembered = ctl.memory.of(uid)
    current = recorded_status(body, remembered)
    if not remembered.told_phase_known:
        remembered.told_phase, remembered.told_phase_known = current.phase, True
    terminal = current.phase in TERMINAL_PHASES

    if job is not None and (not owns(body, job) or is_kept(job, Attempts.recorded(current))):
        job = None  # not ours; or a failed attempt's, kept for its logs: the next attempt's Job is made
    if job is None:
        job = remembered.created_job  # created by us, not yet delivered by the watch
    else:
        remembered.created_job = None  # the watch has it: its view is the newer one

    the_plan = await _plan(ctl, body, remembered, needs_model=not terminal and _children_due(job, remembered))
    if the_plan is None:
        return  # deleted meanwhile: its DELETED event forgets it
    facts = the_plan.facts
    invalid = the_plan.problems or None
    ranks = facts.num_nodes if facts is not None else 1
    attempts = Attempts.recorded(current)
    change = None
    if facts is not None and not terminal and job is not None:
        change = _attempt_change(ctl, body, facts, job, attempts)
    blocked = change.verdict if change is not None else None
    if change is not None:
        attempts = change.attempts
        job = None  # what follows is about the attempt to come
    elif facts is not None and not terminal:
        the_plan = await _with_model(ctl, body, remembered, the_plan, job)
        outcome = await _children(ctl, body, the_plan, job, remembered, attempts.attempt)
        job, blocked = outcome.job, outcome.blocked
        if outcome.refused is not None:
            invalid = [outcome.refused]

    extra = []
    if job is not None and not terminal:
        condition = await children.pod_create_condition(ctl, body, job, remembered)
        if condition is not None:
            extra.append(condition)

    followed = remembered.followed
    finished = job is not None and job_verdict(job, ranks).phase in TERMINAL_PHASES
    if finished and not terminal and facts is not None:
        # The last lines, with the trainer's verdict (also for a run too short to be seen Running).
        followed = followed or new_followed(namespace, name, facts, current)
        remembered.followed = followed
        await following.read_progress(ctl, followed, final=True)
    if followed is not None and followed.condition is not None:
        extra.append(followed.condition)
    note = the_plan.model_note
    noted = note is not None and not any(c.type == MODEL_PATH_MISMATCH for c in current.conditions)
    if note is not None:
        extra.append(model_path_condition(current, note, metadata.get("generation") or 0, ctl.clock.now()))
    pods = ctl.views.pods(namespace, name, job)

    observation = Observation(
        generation=metadata.get("generation") or 0,
        status=current,
        job=job,
        job_name=job["metadata"]["name"] if job is not None else attempt_job_name(name, uid, attempts.attempt),
        now=ctl.clock.now(),
        invalid=invalid if job is None else None,
        blocked=blocked,
        extra_conditions=extra,
        trainer=trainer_verdict(pods, job, ranks, attempts, followed.progress if followed is not None else None),
        log_lines=followed.last_lines if followed is not None else [],
        ranks=ranks,
        attempt=attempts.attempt if ranks > 1 or attempts.attempt > 1 else None,
        failed_attempts=attempts.failed if ranks > 1 or attempts.failed else None,
        output=None if terminal else pushed(pods, job, ranks, facts.push_repository if facts is not None else None),
        waiting=waiting_on(pods),
        newest_pod_phase=newest_phase(pods),
    )
    desired = await _after_ttl(ctl, body, observation, the_plan, job)
    if desired is None:
        return  # the FineTuneJob itself was deleted (ttlPolicy: DeleteFineTuneJob)
    if followed is not None and followed.latest is not None and not terminal:
        desired = desired.model_copy(update={"trainer_status": followed.latest})
    _follow_progress(remembered, namespace, name, desired.phase, facts, current)
    # What stays between passes is the plan's facts, not the model of a spec of any size.
    if the_plan.ftj is not None:
        remembered.plan = the_plan.light()
    remembered.phase = desired.phase
    told = change.event if change is not None else None
    await _write_status(ctl, body, remembered, current, desired, verdict(observation), told)
    if change is not None:
        # Recorded first: a crash from here on finds the old Job stale (kept if it failed, else deleted)
        # and makes the next attempt's Job; no attempt is skipped or repeated.
        await _next_attempt(ctl, body, change, remembered)
    if followed is not None and desired.phase == "Running" and first_step_due(followed):
        await ctl.post(body, "Normal", "TrainingStarted", "the trainer finished its first step")
    if noted and note is not None:
        await ctl.post(body, "Warning", MODEL_PATH_MISMATCH, note)
    if desired.output is not None and current.output is None:
        await ctl.post(body, "Normal", "OutputPushed", f"pushed the fine-tuned model to {desired.output.reference}")


def _children_due(job: dict[str, Any] | None, remembered: Remembered) -> bool:
    """Whether this pass may have children to make (and so the model to render them with)."""
    return job is None or not remembered.config_map_seen


async def _plan(ctl: PassContext, body: dict[str, Any], remembered: Remembered, needs_model: bool) -> Plan | None:
    """The plan of this generation, made once (per generation and labels, which the children copy) off
    the event loop; a pass that may make children gets one with its model, from the spec the watch
    kept (a small one) or read again (a large one is not kept: thin_body). None if the object is gone."""
    metadata = body["metadata"]
    key = (metadata.get("generation"), metadata.get("labels"))
    cached = remembered.plan
    if cached is not None and remembered.plan_key == key and (cached.ftj is not None or not needs_model):
        return cached
    full = body if "spec" in body else await ctl.kube.read_finetunejob(metadata["namespace"], metadata["name"])
    if full is None or full["metadata"].get("uid") != metadata.get("uid"):
        return None
    allowed = Powers(ctl.settings.allow_privileged, ctl.settings.allow_any_toleration)
    made = await asyncio.to_thread(plan, full, allowed)
    if full is not body and full["metadata"].get("generation") != metadata.get("generation"):
        key = (full["metadata"].get("generation"), full["metadata"].get("labels"))  # read newer than the event
    remembered.plan, remembered.plan_key = made, key
    return made


async def _with_model(
    ctl: PassContext, body: dict[str, Any], remembered: Remembered, the_plan: Plan, job: dict[str, Any] | None
) -> Plan:
    """The plan with its model, for a pass that finds children to make after all."""
    if the_plan.ftj is not None or not _children_due(job, remembered):
        return the_plan
    return await _plan(ctl, body, remembered, needs_model=True) or the_plan


@dataclass(frozen=True)
class AttemptChange:
    """The Job goes, and the next attempt's comes: after a failure (a retry), or a new node count."""

    job: dict[str, Any]
    attempts: Attempts
    verdict: Verdict
    event: tuple[str, str, str] | None = None  # type, reason, message
    keep: bool = False  # a failed attempt's Job stays, with its pods and their logs


def _attempt_change(
    ctl: PassContext, body: dict[str, Any], spec: Facts, job: dict[str, Any], attempts: Attempts
) -> AttemptChange | None:
    if is_stale(job, attempts):
        message = f"a Job of attempt {attempts.attempt - 1} is being removed before attempt {attempts.attempt}"
        return AttemptChange(job, attempts, Verdict("Pending", "WaitingForPreviousAttempt", message))
    if resize_due(job, spec.num_nodes):
        after = Attempts(attempts.attempt + 1, attempts.failed)
        message = f"numNodes is now {spec.num_nodes}: the held Job is made anew with {spec.num_nodes} ranks"
        held = Verdict("Suspended", "JobSuspended", message) if spec.suspend else Verdict("Pending", "Resized", message)
        return AttemptChange(job, after, held, ("Normal", "Resized", message))
    if spec.num_nodes <= 1:
        return None
    pods = ctl.views.pods(body["metadata"]["namespace"], body["metadata"]["name"], job)
    failure = first_failed_rank(pods)
    cause = failure_cause(failure, job_verdict(job, spec.num_nodes).message)
    again = retry(job, spec.num_nodes, attempts, spec.backoff_limit, cause, failure)
    if again is None:
        return None
    return AttemptChange(job, again.attempts, again.verdict, ("Warning", "Retrying", again.event), keep=True)


async def _next_attempt(ctl: PassContext, body: dict[str, Any], change: AttemptChange, remembered: Remembered) -> None:
    """A failed attempt's Job stays (the next pass makes the next one's at once); any other goes first
    (its deletion, seen by the Job watch, brings the next pass)."""
    metadata, owner = change.job["metadata"], body["metadata"]
    if change.keep:
        ctl.requeue(owner["namespace"], owner["name"], owner["uid"], "children", 0.0)
    else:
        await ctl.kube.delete_job(owner["namespace"], metadata["name"], metadata["uid"])
    remembered.created_job = None
    remembered.config_map_seen = False
    remembered.service_seen = False  # the Job's Service goes with it; the next attempt's Job gets its own


async def _children(
    ctl: PassContext,
    body: dict[str, Any],
    the_plan: Plan,
    job: dict[str, Any] | None,
    remembered: Remembered,
    attempt: int,
) -> children.Outcome:
    if job is None:
        return await children.create(ctl, body, the_plan, remembered, attempt)
    outcome = await children.ensure_config_map(ctl, body, the_plan, job, remembered, attempt)
    if outcome.job is not None and the_plan.facts is not None:
        await _follow_suspend(ctl, body, the_plan.facts.suspend, outcome.job)
    return outcome


async def _follow_suspend(ctl: PassContext, body: dict[str, Any], suspend: bool, job: dict[str, Any]) -> None:
    """Pass a *change* of spec.suspend to the Job; a queue controller's own suspend is left alone."""

    if requested_suspend(job) == suspend:
        return
    await ctl.kube.set_job_suspend(body["metadata"]["namespace"], job["metadata"]["name"], suspend)
    job.setdefault("spec", {})["suspend"] = suspend
    job["metadata"]["annotations"] = {**(job["metadata"].get("annotations") or {}), **suspend_annotation(suspend)}
    await ctl.post(
        body,
        "Normal",
        "Suspended" if suspend else "Resumed",
        f"spec.suspend is now {'true' if suspend else 'false'}: passed to Job {job['metadata']['name']}",
    )


def new_followed(namespace: str, name: str, facts: Facts, current: FineTuneJobStatus) -> Followed:
    """Start following a log; a step already in status was announced before (e.g. before a restart)."""
    followed = Followed(namespace, name, facts.max_iter)
    values = current.trainer_status.metric_values() if current.trainer_status else {}
    followed.started_announced = values.get("step", "0") != "0"
    followed.latest = current.trainer_status
    return followed


def _follow_progress(
    remembered: Remembered,
    namespace: str,
    name: str,
    phase: str | None,
    facts: Facts | None,
    current: FineTuneJobStatus,
) -> None:
    """Read the log of Running FineTuneJobs only; a finished or suspended one is never read again."""
    if phase == "Running" and facts is not None:
        if remembered.followed is None:
            remembered.followed = new_followed(namespace, name, facts, current)
    elif phase in TERMINAL_PHASES or phase == "Suspended":
        remembered.followed = None


async def _after_ttl(
    ctl: PassContext, body: dict[str, Any], observation: Observation, the_plan: Plan, job: dict[str, Any] | None
) -> FineTuneJobStatus | None:
    """The status, with the TTL applied: cleaned up now if due, else when it will be (and a timer)."""
    desired = derive_status(observation)
    spec = the_plan.facts
    if spec is None:
        return desired
    deadline = cleanup_deadline(desired, Retention(spec.ttl_seconds_after_finished, spec.ttl_seconds_after_failure))
    metadata = body["metadata"]
    if deadline is None:
        ctl.timers.cancel((metadata["uid"], "ttl"))
        return desired
    now = ctl.clock.now()
    if deadline > now:
        ctl.requeue(metadata["namespace"], metadata["name"], metadata["uid"], "ttl", (deadline - now).total_seconds())
        return derive_status(replace(observation, cleanup_after=deadline))
    jobs = {j["metadata"]["uid"]: j for j in [*ctl.views.jobs(body), *([job] if job is not None else [])]}
    for each in jobs.values():  # the last attempt's and the failed attempts' kept beside it
        await ctl.kube.delete_job(metadata["namespace"], each["metadata"]["name"], each["metadata"]["uid"])
    if spec.ttl_policy == "DeleteFineTuneJob":
        await ctl.post(body, "Normal", "TTLExpired", "deleting the FineTuneJob (ttlPolicy: DeleteFineTuneJob)")
        await ctl.kube.delete_finetunejob(metadata["namespace"], metadata["name"], metadata["uid"])
        return None
    gone = "the Job, its pods and the ConfigMap"
    if len(jobs) > 1:
        gone = f"the Jobs of all {len(jobs)} attempts, their pods and ConfigMaps"
    await ctl.post(body, "Normal", "TTLExpired", f"deleted {gone}")
    return derive_status(replace(observation, cleaned_up=True))


def _summary(status: FineTuneJobStatus) -> str:
    """Final loss and duration, for the event that announces the end of training."""
    if status.phase not in TERMINAL_PHASES:
        return ""
    parts = []
    values = status.trainer_status.metric_values() if status.trainer_status else {}
    if "loss" in values:
        parts.append(f"final loss {values['loss']} at step {values.get('step', '?')}")
    if status.start_time and status.completion_time:
        took = parse_timestamp(status.completion_time) - parse_timestamp(status.start_time)
        parts.append(f"in {format_duration(int(max(took, timedelta(0)).total_seconds()))}")
    return f" ({', '.join(parts)})" if parts else ""


async def _write_status(
    ctl: PassContext,
    body: dict[str, Any],
    remembered: Remembered,
    current: FineTuneJobStatus,
    desired: FineTuneJobStatus,
    why: Any,
    told: tuple[str, str, str] | None = None,
) -> None:
    """The status, if it changed, and its Event: `told` (a retry, a resize), else a phase change's.

    A phase change is told once, after its write: the phase Event follows the phase last told, not the
    write. A write that raised may have been stored all the same (the API server died before its
    answer): what it was to tell is told by the next pass, before anything that pass has to tell."""
    if remembered.untold is not None:
        untold, remembered.untold = remembered.untold, None
        await _tell(ctl, body, remembered, untold)
    wanted, before = status_dict(desired), status_dict(current)
    writes = wanted != before and remembered.written != wanted
    event = _event_of(remembered, desired, why, told if writes else None)
    if writes:
        metadata = body["metadata"]
        if logger.isEnabledFor(logging.DEBUG):
            changed = sorted(key for key in wanted.keys() | before.keys() if wanted.get(key) != before.get(key))
            logger.debug(
                "status of %s/%s: %s; changed %s", metadata["namespace"], metadata["name"], desired.phase, changed
            )
        stored: dict[str, Any] = body["status"] if isinstance(body.get("status"), dict) else {}
        try:
            await ctl.kube.patch_status(
                metadata["namespace"], metadata["name"], merge_patch({**stored, **before}, wanted)
            )
        except Exception:
            remembered.untold = event
            raise
        remembered.written = wanted
    if event is not None:
        await _tell(ctl, body, remembered, event)


def _event_of(
    remembered: Remembered, desired: FineTuneJobStatus, why: Any, told: tuple[str, str, str] | None
) -> Told | None:
    if told is not None:
        return Told(desired.phase, *told)
    if desired.phase == remembered.told_phase:
        return None
    kind = "Normal" if desired.phase in NORMAL_PHASES else "Warning"
    return Told(desired.phase, kind, why.reason, f"{why.phase}: {why.message}{_summary(desired)}")


async def _tell(ctl: PassContext, body: dict[str, Any], remembered: Remembered, event: Told) -> None:
    remembered.told_phase = event.phase
    await ctl.post(body, event.kind, event.reason, event.message)
