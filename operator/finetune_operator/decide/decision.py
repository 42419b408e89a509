"""From a pass's snapshot to its decision: the status to write, the Events to post, the TTL's work and
timer, whether to follow the log. Pure: the controller carries the decision out (controller/acting.py).

A phase change is told once: its Event follows the phase last told, not the write, so a write whose
answer was lost (stored all the same) is told by the next pass, before anything that pass tells."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from finetune_operator.api.status import NORMAL_PHASES, TERMINAL_PHASES, Condition, FineTuneJobStatus, Usage
from finetune_operator.decide.attempts import AttemptChange
from finetune_operator.observe.attempts import Attempts
from finetune_operator.observe.following import PROGRESSING, Followed, first_step_seen
from finetune_operator.observe.merge_patch import merge_patch
from finetune_operator.observe.outcome import pushed, trainer_verdict
from finetune_operator.observe.pods import newest_phase, waiting_on
from finetune_operator.observe.progress import format_duration, seeded
from finetune_operator.observe.queue import DEACTIVATED, EVICTED, PREEMPTED
from finetune_operator.observe.status import (
    MODEL_PATH_MISMATCH,
    Observation,
    Verdict,
    derive_status,
    model_path_condition,
    verdict,
)
from finetune_operator.observe.times import parse_timestamp
from finetune_operator.observe.ttl import Retention, cleanup_deadline
from finetune_operator.observe.usage import accrue, added
from finetune_operator.render.objects import attempt_job_name
from finetune_operator.render.plan import Plan


@dataclass(frozen=True)
class Told:
    """An Event that tells a phase (or a retry, a resize)."""

    phase: str | None
    kind: str
    reason: str
    message: str


Event = tuple[str, str, str]  # type, reason, message


@dataclass(frozen=True)
class Snapshot:
    """What one pass observed, once its children step is done: nothing in it changes during the pass."""

    namespace: str
    name: str
    uid: str
    generation: int
    now: datetime
    current: FineTuneJobStatus  # the status as it stands (the last written, else the stored one)
    stored: dict[str, Any]  # the stored status, the base of the merge patch
    plan: Plan
    job: dict[str, Any] | None  # the attempt's Job (None: none yet, or the attempt changes)
    jobs: list[dict[str, Any]]  # every Job of the FineTuneJob (the failed attempts' kept ones too)
    pods: list[dict[str, Any]]  # the Job's own pods
    attempts: Attempts
    change: AttemptChange | None = None
    blocked: Verdict | None = None  # no Job, and why (a name taken, a previous one being removed)
    refused: str | None = None  # the API server refused a child: the spec can never run
    pod_condition: Condition | None = None  # PodCreateFailed
    job_result: Verdict | None = None  # job_verdict(job, ranks): computed once per pass
    workload: dict[str, Any] | None = None  # Kueue's Workload of a Job its queue holds
    followed: Followed | None = None  # the log, when it is followed (read, never changed, by decide)
    usage_pods: list[dict[str, Any]] = field(default_factory=list)  # the pods of every attempt's Job
    created: datetime | None = None  # the FineTuneJob's creationTimestamp

    @property
    def terminal(self) -> bool:
        return self.current.phase in TERMINAL_PHASES

    @property
    def ranks(self) -> int:
        return self.plan.facts.num_nodes if self.plan.facts is not None else 1


@dataclass(frozen=True)
class Recall:
    """What the pass remembers of the passes before it."""

    written: dict[str, Any] | None = None  # the status this process last wrote
    told_phase: str | None = None  # the phase the Events have told
    untold: Told | None = None  # decided by a pass whose status write raised
    following: bool = False  # the log is followed already
    # The training ran since it was made or last evicted (None: not known, after a restart): its next
    # Running ends no wait in a queue.
    ran: bool | None = None


@dataclass(frozen=True)
class Cleanup:
    """The TTL is up: the Jobs of every attempt go; with them, or with the FineTuneJob itself."""

    jobs: list[tuple[str, str]]  # (name, uid)
    delete_finetunejob: bool
    message: str


@dataclass(frozen=True)
class Decision:
    status: FineTuneJobStatus  # the status wanted (unwritten when the FineTuneJob is deleted)
    patch: dict[str, Any] | None  # the merge patch that writes it; None when nothing changed
    written: dict[str, Any]  # what the patch writes
    untold: Told | None  # told first: what an earlier pass failed to tell
    event: Told | None  # told after the write
    cleanup: Cleanup | None = None
    ttl_timer: float | None = None  # look again in this many seconds (the TTL's deadline)
    ttl_timer_cancelled: bool = False  # no TTL runs: a timer set before is stopped
    follow: Followed | None = None  # start following the log (Running)
    unfollow: bool = False  # stop (finished, suspended)
    training_started: bool = False  # the first finished step was seen: TrainingStarted
    after: list[Event] = field(default_factory=list)  # Events posted after the write
    # Counted in the metrics once the status write that records them succeeded (never on a restart:
    # each is the difference between the status as recorded and as written).
    accrued: dict[str, int] = field(default_factory=dict)  # accelerator-seconds this write adds
    failed: str | None = None  # the reason of a Failed phase this write records
    queue_wait: float | None = None  # seconds from creation (or the last eviction) to this Running


def decide(snap: Snapshot, recall: Recall) -> Decision:
    observation = observe(snap)
    why = verdict(observation)
    status, cleanup, timer = _after_ttl(snap, observation)
    followed = snap.followed
    if followed is not None and followed.latest is not None and not snap.terminal:
        status = status.model_copy(update={"trainer_status": followed.latest})
    before = status_dict(snap.current)
    if status_dict(status) != before and not snap.terminal:
        # Counted only when the status is written anyway: the usage never adds a write of its own.
        status = status.model_copy(update={"usage": _usage(snap)})
    wanted = status_dict(status)
    writes = wanted != before and recall.written != wanted
    told = snap.change.event if snap.change is not None and writes else None
    return Decision(
        status=status,
        patch=merge_patch({**snap.stored, **before}, wanted) if writes else None,
        written=wanted,
        untold=recall.untold,
        event=_event_of(
            recall.told_phase if recall.untold is None else recall.untold.phase, status, why, told, _queued_for(snap)
        ),
        cleanup=cleanup,
        ttl_timer=timer,
        ttl_timer_cancelled=cleanup is None and timer is None and snap.plan.facts is not None,
        follow=_follow(snap, status.phase, recall.following),
        unfollow=status.phase in TERMINAL_PHASES or status.phase == "Suspended",
        training_started=followed is not None and status.phase == "Running" and first_step_seen(followed),
        after=_after(snap, status),
        accrued=added(snap.current.usage, status.usage) if writes else {},
        failed=why.reason if writes and status.phase == "Failed" and snap.current.phase != "Failed" else None,
        queue_wait=_queue_wait(snap, status, recall.ran) if writes else None,
    )


def _usage(snap: Snapshot) -> Usage | None:
    per_pod = dict(snap.plan.facts.accelerators) if snap.plan.facts is not None else {}
    return accrue(snap.current.usage, snap.usage_pods, per_pod, snap.now)


def ran_before(current: FineTuneJobStatus) -> bool:
    """Whether the training ran since it was made or last evicted, as far as the status tells (after a
    restart): running now, or its log was read and no queue took it back since."""
    return current.phase == "Running" or (current.trainer_status is not None and not current.evictions)


def _queue_wait(snap: Snapshot, status: FineTuneJobStatus, ran: bool | None) -> float | None:
    """Seconds from creation, or from the last eviction, to the first Running after it."""
    if status.phase != "Running" or snap.current.phase == "Running" or snap.created is None:
        return None
    if ran if ran is not None else ran_before(snap.current):
        return None  # back from a retried pod: no queue wait
    since = snap.created
    if status.evictions:
        since = max(since, parse_timestamp(status.evictions[-1].time))
    return max(0.0, (snap.now - since).total_seconds())


def status_dict(status: FineTuneJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def observe(snap: Snapshot) -> Observation:
    """What the status is derived from."""
    facts, job, pods, attempts, followed = snap.plan.facts, snap.job, snap.pods, snap.attempts, snap.followed
    invalid = [snap.refused] if snap.refused is not None else (snap.plan.problems or None)
    ranks = snap.ranks
    return Observation(
        generation=snap.generation,
        status=snap.current,
        job=job,
        job_name=job["metadata"]["name"]
        if job is not None
        else attempt_job_name(snap.name, snap.uid, attempts.attempt),
        now=snap.now,
        invalid=invalid if job is None else None,
        blocked=snap.change.verdict if snap.change is not None else snap.blocked,
        extra_conditions=_extra_conditions(snap),
        trainer=trainer_verdict(
            pods, snap.job_result, ranks, attempts, followed.progress if followed is not None else None
        ),
        log_lines=followed.last_lines if followed is not None else [],
        ranks=ranks,
        attempt=attempts.attempt if ranks > 1 or attempts.attempt > 1 else None,
        failed_attempts=attempts.failed if ranks > 1 or attempts.failed else None,
        output=None if snap.terminal else pushed(pods, snap.job_result, facts.push_repository if facts else None),
        waiting=waiting_on(pods),
        newest_pod_phase=newest_phase(pods),
        job_result=snap.job_result,
        workload=snap.workload,
    )


def _extra_conditions(snap: Snapshot) -> list[Condition]:
    """Conditions from outside the Job: the pod cannot be created, the log cannot be read, the model path."""
    extra = []
    if snap.job is not None and not snap.terminal and snap.pod_condition is not None:
        extra.append(snap.pod_condition)
    if snap.followed is not None and snap.followed.condition is not None:
        extra.append(snap.followed.condition)
    if snap.followed is not None and snap.followed.progressing is not None and not snap.terminal:
        extra.append(snap.followed.progressing)
    note = snap.plan.model_note
    if note is not None:
        extra.append(model_path_condition(snap.current, note, snap.generation, snap.now))
    return extra


def _after_ttl(snap: Snapshot, observation: Observation) -> tuple[FineTuneJobStatus, Cleanup | None, float | None]:
    """The status with the TTL applied: cleaned up now if due, else when it will be (a timer)."""
    status = derive_status(observation)
    facts = snap.plan.facts
    if facts is None:
        return status, None, None
    deadline = cleanup_deadline(status, Retention(facts.ttl_seconds_after_finished, facts.ttl_seconds_after_failure))
    if deadline is None:
        return status, None, None
    if deadline > snap.now:
        return derive_status(replace(observation, cleanup_after=deadline)), None, (deadline - snap.now).total_seconds()
    jobs = {j["metadata"]["uid"]: j for j in [*snap.jobs, *([snap.job] if snap.job is not None else [])]}
    names = [(j["metadata"]["name"], uid) for uid, j in jobs.items()]
    if facts.ttl_policy == "DeleteFineTuneJob":
        return status, Cleanup(names, True, "deleting the FineTuneJob (ttlPolicy: DeleteFineTuneJob)"), None
    gone = "the Job, its pods and the ConfigMap"
    if len(jobs) > 1:
        gone = f"the Jobs of all {len(jobs)} attempts, their pods and ConfigMaps"
    return derive_status(replace(observation, cleaned_up=True)), Cleanup(names, False, f"deleted {gone}"), None


def _follow(snap: Snapshot, phase: str | None, following: bool) -> Followed | None:
    """Read the log of Running FineTuneJobs only; a finished or suspended one is never read again."""
    if phase != "Running" or snap.plan.facts is None or following:
        return None
    return new_followed(snap.namespace, snap.name, snap.plan.facts.max_iter, snap.current)


def new_followed(namespace: str, name: str, max_iter: int, current: FineTuneJobStatus) -> Followed:
    """Start following a log; a step already in status was announced before (e.g. before a restart)."""
    followed = Followed(namespace, name, max_iter)
    values = current.trainer_status.metric_values() if current.trainer_status else {}
    followed.started_announced = values.get("step", "0") != "0"
    followed.latest = current.trainer_status
    # The saves counted so far are not counted again when the log's tail is read anew.
    followed.progress = seeded(current.trainer_status.checkpoints if current.trainer_status else None, max_iter)
    followed.progressing = next((c for c in current.conditions if c.type == PROGRESSING), None)
    return followed


def _after(snap: Snapshot, status: FineTuneJobStatus) -> list[Event]:
    events: list[Event] = []
    note = snap.plan.model_note
    if note is not None and not any(c.type == MODEL_PATH_MISMATCH for c in snap.current.conditions):
        events.append(("Warning", MODEL_PATH_MISMATCH, note))
    if status.output is not None and snap.current.output is None:
        events.append(("Normal", "OutputPushed", f"pushed the fine-tuned model to {status.output.reference}"))
    progressing = _condition_of(status, PROGRESSING)
    told = _condition_of(snap.current, PROGRESSING)
    if progressing is not None and (told is None or told.status != progressing.status):
        kind = "Normal" if progressing.status == "True" else "Warning"
        events.append((kind, progressing.reason, progressing.message))
    return events


def _condition_of(status: FineTuneJobStatus, kind: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def _queued_for(snap: Snapshot) -> str | None:
    """Why a training was held by its queue when the pass began (the reason recorded), if it was."""
    if snap.current.phase != "Queued":
        return None
    return next((c.reason for c in snap.current.conditions if c.type == "Suspended"), None)


def _event_of(
    told_phase: str | None, status: FineTuneJobStatus, why: Verdict, told: Event | None, queued_for: str | None
) -> Told | None:
    """A retry's or a resize's Event (`told`), else a phase change's; while Queued, a change of the
    queue's reason too (waiting, preempted, deactivated)."""
    if told is not None:
        return Told(status.phase, *told)
    if status.phase == told_phase and not (status.phase == "Queued" and why.reason != queued_for):
        return None
    taken_back = why.reason in (PREEMPTED, EVICTED, DEACTIVATED)
    kind = "Normal" if status.phase in NORMAL_PHASES and not taken_back else "Warning"
    return Told(status.phase, kind, why.reason, f"{why.phase}: {why.message}{summary(status)}")


def summary(status: FineTuneJobStatus) -> str:
    """Final loss and duration, for the Event that announces the end of training."""
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
