"""Status from what is observed now: the FineTuneJob, its Job (or none), and the clock.

Level-based: the same observations always give the same status, whatever events came before, so a
restart or a missed event is harmless. Terminal phases are sticky.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from finetune_operator.api.base import requested_suspend
from finetune_operator.api.status import TERMINAL_PHASES, Condition, FineTuneJobStatus, OutputStatus, Phase
from finetune_operator.observe.queue import ADMISSION, DEACTIVATED, evictions, queued_words
from finetune_operator.observe.termination import PushedOutput
from finetune_operator.observe.termination import TrainerVerdict as TrainerVerdict
from finetune_operator.observe.termination import termination_summary as termination_summary
from finetune_operator.observe.termination import trainer_verdict_from_termination as trainer_verdict_from_termination
from finetune_operator.observe.times import parse_timestamp, timestamp

# Conditions derived from the verdict on every pass; others (LogUnreadable, PodCreateFailed,
# CleanedUp) come from the parts of the operator that observe them.
CONDITION_TYPES = ("Running", "Suspended", "Succeeded", "Failed", "Stalled", "Reconciling")
# kstatus (Flux, kpt, Config Sync) reads Reconciling=True as InProgress: true exactly while Argo CD's
# health check says Progressing (deploy/gitops/README.md has the table), so both kinds of GitOps tools
# wait for a training the same way. A training waiting in a queue is on its way; one the user suspended
# is where the user wants it.
# A deactivated Workload waits for a human, not for the queue: not reconciling (Argo CD: Suspended).
RECONCILING_PHASES: tuple[Phase, ...] = ("Pending", "Queued", "Running")


@dataclass(frozen=True)
class Verdict:
    """The phase the observations call for, and why."""

    phase: Phase
    reason: str
    message: str
    stalled: bool = False
    completion_time: str | None = None
    start_time: str | None = None


@dataclass
class Observation:
    """Everything the status is derived from."""

    generation: int
    status: FineTuneJobStatus
    job: dict[str, Any] | None
    job_name: str
    now: datetime
    invalid: list[str] | None = None
    # Why no Job can be made yet although the spec is valid (a name taken by a foreign object):
    # a Pending verdict, stalled when only a human can resolve it.
    blocked: Verdict | None = None
    extra_conditions: list[Condition] = field(default_factory=list)
    trainer: TrainerVerdict | None = None
    log_lines: list[str] = field(default_factory=list)  # the log's end, kept in a Failed message
    ranks: int = 1
    attempt: int | None = None  # numNodes > 1: the attempt of the group that runs
    failed_attempts: int | None = None
    cleanup_after: datetime | None = None
    cleaned_up: bool = False
    output: PushedOutput | None = None  # what the entrypoint pushed (spec.output.image)
    waiting: tuple[str, str] | None = None  # a container stuck waiting (observe.pods.waiting_on)
    newest_pod_phase: str | None = None  # of the Job's own pods, the newest
    job_result: Verdict | None = None  # job_verdict(job, ranks), when the pass has it already
    workload: dict[str, Any] | None = None  # Kueue's Workload of a Job its queue holds


# Job failure reasons that are the platform's decision, not the trainer's failure, even when the trainer
# logs its end (a SIGTERM answered with "exits with return code = -15").
PLATFORM_ENDS = frozenset({"DeadlineExceeded"})


def _normalized(text: str | None) -> str | None:
    return None if text is None else timestamp(parse_timestamp(text))


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (job.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None)


def job_verdict(job: dict[str, Any], ranks: int = 1) -> Verdict:
    """The phase a Job calls for, from its conditions, suspend flag and pod counts; with several ranks,
    Running only once every rank runs (or has finished)."""
    status = job.get("status") or {}
    start = _normalized(status.get("startTime"))
    complete = _job_condition(job, "Complete")
    if complete is not None:
        return Verdict(
            "Succeeded",
            "TrainingComplete",
            "the trainer logged 'training complete!' and exited 0",
            completion_time=_normalized(status.get("completionTime") or complete.get("lastTransitionTime")),
            start_time=start,
        )
    failed = _job_condition(job, "Failed")
    if failed is not None:
        reason = failed.get("reason") or "JobFailed"
        message = failed.get("message") or "the training Job failed"
        ended = _normalized(failed.get("lastTransitionTime"))
        return Verdict("Failed", reason, message, completion_time=ended, start_time=start)
    if (job.get("spec") or {}).get("suspend"):
        metadata = job.get("metadata") or {}
        if requested_suspend(job) is False:
            # Suspended by someone else than the operator: a queue controller holds it until admitted.
            queue = (metadata.get("labels") or {}).get("kueue.x-k8s.io/queue-name")
            message = f"waiting for admission by queue {queue}" if queue else "held by a queue controller"
            return Verdict("Queued", ADMISSION, message, start_time=start)
        return Verdict("Suspended", "JobSuspended", "spec.suspend is true", start_time=start)
    uncounted = status.get("uncountedTerminatedPods") or {}
    ready = status.get("ready") or 0
    if ranks > 1:
        finished = (status.get("succeeded") or 0) + len(uncounted.get("succeeded") or [])
        if ready > 0 and ready + finished >= ranks:
            return Verdict("Running", "PodsRunning", f"all {ranks} ranks are running", start_time=start)
        if ready + finished > 0 and not status.get("failed"):
            message = f"{ready + finished} of {ranks} ranks running; waiting for the others to be scheduled or started"
            return Verdict("Pending", "RanksPending", message, start_time=start)
    elif ready > 0:
        return Verdict("Running", "PodsRunning", "the training pod is running", start_time=start)
    finishing = _job_condition(job, "SuccessCriteriaMet") or _job_condition(job, "FailureTarget")
    pods_ended = (status.get("succeeded") or 0) + (status.get("failed") or 0)
    pods_ended += sum(len(v or []) for v in uncounted.values())
    if finishing is not None or ((status.get("active") or 0) == 0 and pods_ended > 0):
        # Between the pod's end and the Job's final condition: not back to Pending.
        return Verdict("Running", "PodsFinished", "the training pod finished; the Job is finishing", start_time=start)
    if (status.get("active") or 0) > 0 and (status.get("failed") or 0) > 0:
        return Verdict("Pending", "PodsPending", "the training pod failed and is being retried", start_time=start)
    if (status.get("active") or 0) > 0:
        return Verdict(
            "Pending", "PodsPending", "the training pod is waiting to be scheduled or started", start_time=start
        )
    if start:
        return Verdict("Pending", "PodsPending", "the training pod is waiting to be created", start_time=start)
    return Verdict("Pending", "JobCreated", f"created Job {job.get('metadata', {}).get('name', '')}")


def has_pods(job: dict[str, Any]) -> bool:
    """Whether the Job controller has made any pod for the Job (running, waiting or ended)."""
    status = job.get("status") or {}
    uncounted = status.get("uncountedTerminatedPods") or {}
    counted = sum(status.get(key) or 0 for key in ("active", "ready", "succeeded", "failed", "terminating"))
    return counted + sum(len(v or []) for v in uncounted.values()) > 0


def verdict(observation: Observation) -> Verdict:
    current = observation.status
    if current.phase in TERMINAL_PHASES:
        return _kept(current)
    if observation.invalid is not None:
        return Verdict(
            "Failed",
            "InvalidSpec",
            "; ".join(observation.invalid),
            stalled=True,
            completion_time=timestamp(observation.now),
        )
    if observation.job is None:
        return observation.blocked or Verdict("Pending", "JobCreated", f"creating Job {observation.job_name}")
    result = observation.job_result or job_verdict(observation.job, observation.ranks)
    if result.phase in TERMINAL_PHASES and result.completion_time is None:
        # A finished Job always has a time; should one lack it, the TTL still needs a start.
        result = replace(result, completion_time=timestamp(observation.now))
    if result.phase == "Queued":
        said = queued_words(result.message, observation.workload)
        return result if said is None else replace(result, reason=said[0], message=said[1])
    if result.phase == "Pending" and observation.waiting is not None:
        return replace(result, reason=observation.waiting[0], message=observation.waiting[1])
    if result.reason == "PodsPending" and observation.ranks == 1:
        result = _as_its_pod_says(result, observation.newest_pod_phase)
    if result.phase != "Failed":
        return result
    trainer = observation.trainer
    reason, message = result.reason, result.message
    if trainer is not None and trainer.verdict == "failed" and result.reason in PLATFORM_ENDS:
        # The platform ended it (its deadline): that is the cause; the trainer's answer to it follows.
        message = f"{result.message}; the trainer's last words: {trainer.evidence}" if trainer.evidence else message
    elif trainer is not None and trainer.verdict == "failed":
        # The Job only knows that the pod failed; the trainer's own words (or the push's, or the model
        # copy's) say why.
        reason, message = trainer.reason or "TrainerReportedFailure", trainer.evidence or result.message
    if observation.log_lines:
        # Kept in the record: the pod and its log go with the TTL cleanup, this condition stays.
        message += "\nlast lines of the trainer's log:\n" + "\n".join(observation.log_lines)
    return Verdict("Failed", reason, message, True, result.completion_time, result.start_time)


def _as_its_pod_says(result: Verdict, phase: str | None) -> Verdict:
    """The Job counts its pod active but not ready: before the pod started, or after its container ended
    (the kubelet reports the pod first, the Job controller counts it after). Its newest pod tells which:
    a pod that ran is no step back to Pending (found on a real node: Running, Pending, Succeeded)."""
    if phase in ("Succeeded", "Failed"):
        return Verdict(
            "Running", "PodsFinished", "the training pod finished; the Job is finishing", start_time=result.start_time
        )
    if phase == "Running":
        return Verdict("Running", "PodsRunning", "the training pod is running", start_time=result.start_time)
    return result


def _kept(current: FineTuneJobStatus) -> Verdict:
    """A terminal status stays as it was recorded."""
    assert current.phase is not None
    own = next((c for c in current.conditions if c.type == current.phase and c.status == "True"), None)
    stalled = any(c.type == "Stalled" and c.status == "True" for c in current.conditions)
    return Verdict(
        current.phase,
        own.reason if own else current.phase,
        own.message if own else "",
        stalled=stalled,
        completion_time=current.completion_time,
        start_time=current.start_time,
    )


def _condition(
    kind: str, on: bool, reason: str, message: str, observation: Observation, previous: dict[str, Condition]
) -> Condition:
    status: Literal["True", "False"] = "True" if on else "False"
    before = previous.get(kind)
    since = timestamp(observation.now) if before is None or before.status != status else before.last_transition_time
    return Condition(
        type=kind,
        status=status,
        observed_generation=observation.generation,
        last_transition_time=since,
        reason=reason,
        message=message,
    )


def _verdict_condition(kind: str, result: Verdict) -> tuple[bool, str, str]:
    """Whether a verdict-derived condition is on, with its reason and message."""
    phase = result.phase
    if kind == "Stalled":
        on = result.stalled
        return on, result.reason if on else "AsExpected", result.message if on else ""
    if kind == "Reconciling":
        on = phase in RECONCILING_PHASES and result.reason != DEACTIVATED and not result.stalled
        off_reason = "Stalled" if result.stalled else phase
        return on, result.reason if on else off_reason, result.message if on else ""
    # A Job its queue holds is suspended too (by the queue): the Suspended condition says so, and why.
    on = phase == kind or (kind == "Suspended" and phase == "Queued")
    return on, result.reason if on else _off_reason(kind, phase), result.message if on else ""


def derive_status(observation: Observation) -> FineTuneJobStatus:
    """The whole status for these observations (only the fields the operator owns change)."""
    result = verdict(observation)
    current = observation.status
    previous = {c.type: c for c in current.conditions}
    conditions = [
        _condition(kind, *_verdict_condition(kind, result), observation, previous) for kind in CONDITION_TYPES
    ]
    # Conditions owned by other parts of the operator (LogUnreadable, PodCreateFailed) pass through.
    others = {c.type: c for c in current.conditions if c.type not in CONDITION_TYPES}
    others.update({c.type: c for c in observation.extra_conditions})
    update: dict[str, Any] = {
        "observed_generation": observation.generation,
        "phase": result.phase,
        "job_name": observation.job_name if (observation.job is not None or current.job_name) else None,
        "start_time": result.start_time or current.start_time,
        "completion_time": result.completion_time if result.phase in TERMINAL_PHASES else None,
        "cleanup_after": None if observation.cleanup_after is None else timestamp(observation.cleanup_after),
        "nodes": _nodes(observation, current),
        "attempt": observation.attempt,
        "failed_attempts": observation.failed_attempts,
        "output": _output(observation.output) or current.output,
        "evictions": evictions(current.evictions, observation.workload),
    }
    if observation.cleaned_up:
        update["cleanup_time"] = timestamp(observation.now)
        update["cleanup_after"] = None
        others["CleanedUp"] = _condition(
            "CleanedUp",
            True,
            "TTLExpired",
            "the TTL passed: deleted the Job, its pods and the ConfigMap",
            observation,
            previous,
        )
    update["conditions"] = conditions + list(others.values())
    return current.model_copy(update=update)


def _output(pushed: PushedOutput | None) -> OutputStatus | None:
    if pushed is None:
        return None
    return OutputStatus(reference=pushed.reference, digest=pushed.digest, pushed_time=pushed.pushed_time)


MODEL_PATH_MISMATCH = "ModelPathMismatch"


def model_path_condition(current: FineTuneJobStatus, note: str, generation: int, now: datetime) -> Condition:
    """A standing warning: the user's modelNameOrPath is not where spec.model puts the model."""
    before = next((c for c in current.conditions if c.type == MODEL_PATH_MISMATCH), None)
    return Condition(
        type=MODEL_PATH_MISMATCH,
        status="True",
        observed_generation=generation,
        last_transition_time=before.last_transition_time if before is not None else timestamp(now),
        reason="ModelNameOrPathElsewhere",
        message=note,
    )


def _nodes(observation: Observation, current: FineTuneJobStatus) -> str | None:
    """Ranks running of the ranks asked for (the NODES column); a finished run keeps its last count."""
    if current.phase in TERMINAL_PHASES:
        return current.nodes
    job = observation.job
    if job is None:
        return f"0/{observation.ranks}"
    status = job.get("status") or {}
    if _job_condition(job, "Complete") is not None:
        return f"{min(status.get('succeeded') or observation.ranks, observation.ranks)}/{observation.ranks}"
    return f"{min(status.get('ready') or 0, observation.ranks)}/{observation.ranks}"


def _off_reason(kind: str, phase: Phase) -> str:
    if kind == "Running" and phase in TERMINAL_PHASES:
        return "Finished"
    return f"Not{kind}"
