"""One reconcile pass over one FineTuneJob: observe, decide, act.

observe   the FineTuneJob as recorded, its Job (watched, or just made), the plan of its spec, its pods
children  the pure children step (decide/attempts.py), then carried out: a new attempt is recorded,
          or the children made or checked (children.py); what the API server answered is observed
observe   then what the status needs from outside the Job: PodCreateFailed, the log's final lines
decide    the status, its Events, the TTL's work (decide/decision.py), with no I/O
act       carried out (acting.py): one status patch if it changed, each Event told once
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic

from finetune_operator.api.base import requested_suspend, suspend_annotation
from finetune_operator.api.status import TERMINAL_PHASES, FineTuneJobStatus
from finetune_operator.controller import children, following
from finetune_operator.controller.acting import act
from finetune_operator.controller.context import PassContext
from finetune_operator.controller.memory import Remembered
from finetune_operator.decide.attempts import AttemptChange, ChildrenStep, MakeChildren, children_step
from finetune_operator.decide.decision import Recall, Snapshot, decide, new_followed
from finetune_operator.observe.attempts import Attempts, is_kept
from finetune_operator.observe.queue import newest_workload, queue_name
from finetune_operator.observe.status import Verdict, job_verdict
from finetune_operator.observe.times import backoff, parse_timestamp
from finetune_operator.render.plan import Plan, Powers, plan

# Kueue makes a Job's Workload right after the Job; a queue label with no Kueue to read it is looked for
# at most once a minute.
MAX_WORKLOAD_WAIT = 60.0


async def reconcile_pass(ctl: PassContext, body: dict[str, Any], job: dict[str, Any] | None) -> None:
    seen = await observe(ctl, body, job)
    if seen is None:
        return  # deleted meanwhile: its DELETED event forgets it
    step = children_step(seen.plan.facts, seen.terminal, seen.job, seen.attempts, seen.pods)
    snap = await observe_after(ctl, body, await carry_out(ctl, body, seen, step))
    remembered = ctl.memory.of(snap.uid)
    recall = Recall(
        remembered.written, remembered.told_phase, remembered.untold, remembered.followed is not None, remembered.ran
    )
    await act(ctl, body, snap, decide(snap, recall))


@dataclass(frozen=True)
class Seen:
    """What a pass sees before its children step."""

    current: FineTuneJobStatus
    plan: Plan
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]

    @property
    def terminal(self) -> bool:
        return self.current.phase in TERMINAL_PHASES

    @property
    def attempts(self) -> Attempts:
        return Attempts.recorded(self.current)


def recorded_status(body: dict[str, Any], remembered: Remembered) -> FineTuneJobStatus:
    """The status as it stands: the one this process last wrote, if it wrote one (it is the only
    writer, and a watch may deliver a body older than that write), else the stored one."""
    recorded = remembered.written if remembered.written is not None else body.get("status") or {}
    try:
        return FineTuneJobStatus.model_validate(recorded, strict=False)
    except pydantic.ValidationError:
        return FineTuneJobStatus()  # not the operator's writing: the next write replaces it


async def observe(ctl: PassContext, body: dict[str, Any], job: dict[str, Any] | None) -> Seen | None:
    metadata = body["metadata"]
    remembered = ctl.memory.of(metadata["uid"])
    current = recorded_status(body, remembered)
    if not remembered.told_phase_known:
        remembered.told_phase, remembered.told_phase_known = current.phase, True
    if job is not None and is_kept(job, Attempts.recorded(current)):
        job = None  # a failed attempt's, kept for its logs: the next attempt's Job is made
    if job is None:
        job = remembered.job.created  # created by us, not yet delivered by the watch
    else:
        remembered.job.created = None  # the watch has it: its view is the newer one
    terminal = current.phase in TERMINAL_PHASES
    needs_model = not terminal and (job is None or not remembered.job.config_map_seen)
    the_plan = await _plan(ctl, body, remembered, needs_model)
    if the_plan is None:
        return None
    return Seen(current, the_plan, job, ctl.views.pods(metadata["namespace"], metadata["name"], job))


async def _plan(ctl: PassContext, body: dict[str, Any], remembered: Remembered, needs_model: bool) -> Plan | None:
    """The plan of this generation, made once (per generation and labels, which the children copy) off
    the event loop; a pass that may make children gets one with its model and its children rendered,
    from the spec the watch kept (a small one) or read again (a large one is not kept: thin_body). None
    if the object is gone."""
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


@dataclass(frozen=True)
class Made:
    """What the children step left: the attempt's Job (None while there is none), or why not."""

    seen: Seen
    job: dict[str, Any] | None
    attempts: Attempts
    change: AttemptChange | None = None
    blocked: Verdict | None = None
    refused: str | None = None


async def carry_out(ctl: PassContext, body: dict[str, Any], seen: Seen, step: ChildrenStep) -> Made:
    if isinstance(step, AttemptChange):
        return Made(seen, None, step.attempts, change=step)  # what follows is about the attempt to come
    if not isinstance(step, MakeChildren):
        return Made(seen, seen.job, seen.attempts)
    remembered = ctl.memory.of(body["metadata"]["uid"])
    if seen.job is None:
        outcome = await children.create(ctl, body, seen.plan, remembered, step.attempt)
    else:
        outcome = await children.ensure_config_map(ctl, body, seen.plan, seen.job, remembered, step.attempt)
        if outcome.job is not None and seen.plan.facts is not None:
            suspend = seen.plan.facts.suspend
            if queue_name(outcome.job) is None or not await _follow_suspend_in_queue(
                ctl, body, suspend, outcome.job, remembered
            ):
                await _follow_suspend(ctl, body, suspend, outcome.job)
    return Made(seen, outcome.job, seen.attempts, blocked=outcome.blocked, refused=outcome.refused)


async def _follow_suspend(ctl: PassContext, body: dict[str, Any], suspend: bool, job: dict[str, Any]) -> None:
    """Pass a *change* of spec.suspend to the Job; a queue controller's own suspend is left alone."""
    if requested_suspend(job) == suspend:
        return
    await ctl.kube.set_job_suspend(body["metadata"]["namespace"], job["metadata"]["name"], suspend)
    job.setdefault("spec", {})["suspend"] = suspend
    await _suspend_told(ctl, body, job, suspend, f"passed to Job {job['metadata']['name']}")


async def _suspend_told(ctl: PassContext, body: dict[str, Any], job: dict[str, Any], suspend: bool, how: str) -> None:
    """The request recorded on this pass's view of the Job (as the patch recorded it), and told."""
    job["metadata"]["annotations"] = {**(job["metadata"].get("annotations") or {}), **suspend_annotation(suspend)}
    word = "true" if suspend else "false"
    await ctl.post(body, "Normal", "Suspended" if suspend else "Resumed", f"spec.suspend is now {word}: {how}")


async def _follow_suspend_in_queue(
    ctl: PassContext, body: dict[str, Any], suspend: bool, job: dict[str, Any], remembered: Remembered
) -> bool:
    """A Job its queue (Kueue) manages is never suspended or resumed by the operator: Kueue owns its
    spec.suspend, and would take an admitted Job back. Kueue's way is used instead: a suspend deactivates
    its Workload (Kueue evicts the training and holds it), a resume reactivates it. The request is
    recorded on the Job, as for any Job; until Kueue has made the Workload, the pass looks again soon.
    False where no Kueue is installed: the label means nothing, and the Job is suspended as any other."""
    metadata, namespace = body["metadata"], body["metadata"]["namespace"]
    asked = requested_suspend(job)
    if asked == suspend and (not suspend or remembered.job.workload_inactive):
        return True
    found = await ctl.kube.list_workloads(namespace, job["metadata"]["uid"])
    if found is None:
        return False
    workload = newest_workload(found)
    if workload is None:  # not made yet: looked for again, less and less often (1, 2, 4, ... s)
        remembered.job.workload_checks += 1
        delay = backoff(remembered.job.workload_checks - 1, MAX_WORKLOAD_WAIT)
        ctl.requeue(namespace, metadata["name"], metadata["uid"], "queue", delay)
        return True
    name = workload["metadata"]["name"]
    if ((workload.get("spec") or {}).get("active") is not False) == suspend:
        await ctl.kube.set_workload_active(namespace, name, not suspend)
    remembered.job.workload_inactive = suspend
    if asked != suspend:
        await ctl.kube.set_job_requested_suspend(namespace, job["metadata"]["name"], suspend)
        done = "deactivated" if suspend else "reactivated"
        await _suspend_told(ctl, body, job, suspend, f"{done} Workload {name} in its queue")
    return True


async def observe_after(ctl: PassContext, body: dict[str, Any], made: Made) -> Snapshot:
    """The snapshot: what the children step left, the pods of the Job, whether the Job controller can
    create them, and, when the Job just ended, the log's last lines with the trainer's verdict (also for
    a run too short to be seen Running)."""
    seen, job = made.seen, made.job
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    remembered = ctl.memory.of(uid)
    facts = seen.plan.facts
    pod_condition = None
    ranks = facts.num_nodes if facts is not None else 1
    result = job_verdict(job, ranks) if job is not None else None  # the one verdict of this pass
    if job is not None and result is not None and not seen.terminal:
        pod_condition = await children.pod_create_condition(ctl, body, job, result, remembered)
    workload = None
    if job is not None and result is not None and result.phase == "Queued" and not seen.terminal:
        workload = await _workload(ctl, body, job)
    if result is not None and not seen.terminal and facts is not None and result.phase in TERMINAL_PHASES:
        remembered.followed = remembered.followed or new_followed(namespace, name, facts.max_iter, seen.current)
        await following.read_progress(ctl, remembered.followed, final=True)
    return Snapshot(
        namespace=namespace,
        name=name,
        uid=uid,
        generation=metadata.get("generation") or 0,
        now=ctl.clock.now(),
        current=seen.current,
        stored=body["status"] if isinstance(body.get("status"), dict) else {},
        plan=seen.plan,
        job=job,
        jobs=ctl.views.jobs(body),
        pods=ctl.views.pods(namespace, name, job),
        attempts=made.attempts,
        change=made.change,
        blocked=made.blocked,
        refused=made.refused,
        pod_condition=pod_condition,
        job_result=result,
        followed=remembered.followed,
        workload=workload,
        usage_pods=_pods_of_every_attempt(ctl, body, job),
        created=_created(metadata),
    )


def _pods_of_every_attempt(ctl: PassContext, body: dict[str, Any], job: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pods of each of the FineTuneJob's Jobs the watch holds (a failed attempt's kept one too)."""
    metadata = body["metadata"]
    jobs = {j["metadata"]["uid"]: j for j in [*ctl.views.jobs(body), *([job] if job is not None else [])]}
    return [pod for j in jobs.values() for pod in ctl.views.pods(metadata["namespace"], metadata["name"], j)]


def _created(metadata: dict[str, Any]) -> datetime | None:
    text = metadata.get("creationTimestamp")
    try:
        return parse_timestamp(text) if isinstance(text, str) else None
    except ValueError:
        return None


async def _workload(ctl: PassContext, body: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
    """Kueue's Workload of a Job its queue holds (the newest, should there be two), read again every
    queue_recheck seconds while it is held."""
    metadata = body["metadata"]
    found = await ctl.kube.list_workloads(metadata["namespace"], job["metadata"]["uid"])
    ctl.requeue(metadata["namespace"], metadata["name"], metadata["uid"], "queue", ctl.settings.queue_recheck)
    return newest_workload(found)
