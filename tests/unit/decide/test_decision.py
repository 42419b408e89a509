"""decide(snapshot, recall) as a table: each situation a pass can observe, and everything it decides
(the phase, the Event, what the patch changes, the TTL's work and timer, the log followed or not, the
Events after the write). Exact values; the controller's tests prove the same through a whole pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest

from finetune_operator.api.status import (
    AcceleratorSeconds,
    Condition,
    Eviction,
    FineTuneJobStatus,
    TrainerStatus,
    Usage,
)
from finetune_operator.decide.attempts import AttemptChange
from finetune_operator.decide.decision import Cleanup, Decision, Recall, Told, decide, status_dict, summary
from finetune_operator.observe.attempts import Attempts
from finetune_operator.observe.following import Followed, fold, progress_seen
from finetune_operator.observe.status import MODEL_PATH_MISMATCH, Verdict
from finetune_operator.render.plan import Plan
from tests.unit.decide.builders import NOW, T0, T1, job, plan, pod, snapshot

# What a patch changes (its top-level fields, sorted).
NO_JOB = ["conditions", "nodes", "observedGeneration", "phase"]
BASE = sorted([*NO_JOB, "jobName"])
RUNNING = sorted([*BASE, "startTime"])
ENDED = sorted([*RUNNING, "completionTime"])
STALLED = sorted(["conditions", "jobName", "nodes", "observedGeneration", "startTime", "trainerStatus"])
ATTEMPTS = sorted([*NO_JOB, "attempt", "failedAttempts"])
DIGEST = "sha256:" + "a" * 64
NOTE = "spec.model is mounted at /models/m, but modelNameOrPath says /other"


def features(decision: Decision) -> dict[str, Any]:
    """Everything a decision says, in a form a table can hold."""
    return {
        "phase": decision.status.phase,
        "event": None if decision.event is None else (decision.event.kind, decision.event.reason),
        "untold": decision.untold,
        "patch": sorted(decision.patch) if decision.patch is not None else None,
        "cleanup": decision.cleanup,
        "timer": decision.ttl_timer,
        "cancel": decision.ttl_timer_cancelled,
        "follow": decision.follow is not None,
        "unfollow": decision.unfollow,
        "started": decision.training_started,
        "after": [reason for _, reason, _ in decision.after],
        "accrued": decision.accrued,
        "failed": decision.failed,
        "queue_wait": decision.queue_wait,
    }


def expect(phase: str, event: tuple[str, str] | None, patch: list[str] | None, **given: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "phase": phase,
        "event": event,
        "untold": None,
        "patch": patch,
        "cleanup": None,
        "timer": None,
        "cancel": True,
        "follow": False,
        "unfollow": phase in ("Succeeded", "Failed", "Suspended"),
        "started": False,
        "after": [],
        "accrued": {},
        "failed": None,
        "queue_wait": None,
    }
    return {**values, **given}


def succeeded_status(**given: Any) -> FineTuneJobStatus:
    return FineTuneJobStatus(phase="Succeeded", start_time=T0, completion_time=T1, **given)


def followed(steps: int = 0, announced: bool = False) -> Followed:
    """A followed log in which `steps` steps finished."""
    seen = Followed("ml", "ft", -1, started_announced=announced)
    lines = ["[INFO] The current training schedule consists of 1 epochs with 8 iterations each."]
    for step in range(steps):
        lines += [f"[2026-12-05 11:00:0{step}.000000] [PHISON START] Epoch: 0, Iteration: {step}",
                  f"[2026-12-05 11:00:0{step}.500000] [PHISON END] Iteration: {step}"]  # fmt: skip
    fold(seen, "\n".join(lines) + "\n", NOW)
    return seen


AI100 = (("otterscale.com/vgpu", 2), ("phison.com/ai100", 1))
HELD = pod(containerStatuses=[{"name": "trainer", "state": {"running": {"startedAt": T0}}}])  # an hour by NOW
MADE = NOW - timedelta(minutes=61)
EVICTED = Eviction(time="2026-12-05T11:30:00Z", reason="Preempted")


def stalled(steps: int = 1, resumed: bool = False) -> Followed:
    """A followed log whose reads found no progress (Progressing=False), or progress after that."""
    seen = followed(steps=steps, announced=True)
    progress_seen(seen, False, 1, 15.0, 1, NOW)
    if resumed:
        progress_seen(seen, True, 1, 15.0, 1, NOW)
    return seen


def progressing(status: Literal["True", "False"]) -> Condition:
    return Condition(type="Progressing", status=status, reason="x", message="y", last_transition_time=T0)


RETRY = AttemptChange(
    job("failed", ranks=2), Attempts(2, 1), Verdict("Pending", "Retrying", "attempt 1 failed: rank 1 ..."),
    ("Warning", "Retrying", "attempt 1 failed: rank 1 ...; starting attempt 2 of all 2 ranks"), keep=True,
)  # fmt: skip
STALE = AttemptChange(job("held", attempt=1), Attempts(2, 0), Verdict("Pending", "WaitingForPreviousAttempt", "..."))

CASES: list[tuple[str, dict[str, Any], Recall, dict[str, Any]]] = [
    ("an invalid spec fails at once; no TTL runs for it (no facts)",
     {"plan": Plan(problems=["spec.numGpus: must be at least 1"])}, Recall(),
     expect("Failed", ("Warning", "InvalidSpec"), sorted([*NO_JOB, "completionTime"]), cancel=False,
            failed="InvalidSpec")),
    ("a Job just made: Pending", {"job": job("created")}, Recall(), expect("Pending", ("Normal", "JobCreated"), BASE)),
    ("the pass that made it failed to tell it: told first, then nothing more",
     {"job": job("created")}, Recall(untold=Told("Pending", "Normal", "JobCreated", "Pending: created Job ft")),
     expect("Pending", None, BASE, untold=Told("Pending", "Normal", "JobCreated", "Pending: created Job ft"))),
    ("a running pod: Running, and the log is followed from now on",
     {"job": job("running"), "pods": [pod()]}, Recall(told_phase="Pending"),
     expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True)),
    ("Running already followed: not followed twice",
     {"job": job("running"), "pods": [pod()]}, Recall(told_phase="Running", following=True),
     expect("Running", None, RUNNING)),
    ("the status as last written: no patch, no Event",
     {"job": job("created")}, Recall(told_phase="Pending", written="same"), expect("Pending", None, None)),
    ("the first finished step: TrainingStarted, once",
     {"job": job("running"), "pods": [pod()], "followed": followed(steps=1)},
     Recall(told_phase="Running", following=True),
     expect("Running", None, sorted([*RUNNING, "trainerStatus"]), started=True)),
    ("announced before (a restart): not again",
     {"job": job("running"), "pods": [pod()], "followed": followed(steps=3, announced=True)},
     Recall(told_phase="Running", following=True), expect("Running", None, sorted([*RUNNING, "trainerStatus"]))),
    ("Succeeded with no TTL: the timer is stopped, the log no longer read",
     {"job": job("succeeded")}, Recall(told_phase="Running"),
     expect("Succeeded", ("Normal", "TrainingComplete"), ENDED)),
    ("Succeeded, TTL not up: a timer for the rest, cleanupAfter shown",
     {"job": job("succeeded"), "plan": plan(ttl_seconds_after_finished=600)}, Recall(told_phase="Running"),
     expect("Succeeded", ("Normal", "TrainingComplete"), sorted([*ENDED, "cleanupAfter"]), timer=540.0,
            cancel=False)),
    ("Succeeded, TTL up: the Job goes, the FineTuneJob stays",
     {"job": job("succeeded"), "plan": plan(ttl_seconds_after_finished=0)}, Recall(told_phase="Running"),
     expect("Succeeded", ("Normal", "TrainingComplete"), sorted([*ENDED, "cleanupTime"]),
            cleanup=Cleanup([("ft", "job-1")], False, "deleted the Job, its pods and the ConfigMap"), cancel=False)),
    ("TTL up with a kept failed attempt beside: every attempt's Job goes",
     {"job": job("succeeded", ranks=2, uid="job-2", name="ft-a2-ftj-u"), "jobs": [job("failed", ranks=2)],
      "plan": plan(num_nodes=2, ttl_seconds_after_finished=0), "attempts": Attempts(2, 1),
      "current": FineTuneJobStatus(phase="Running", attempt=2, failed_attempts=1)},
     Recall(told_phase="Running"),
     expect("Succeeded", ("Normal", "TrainingComplete"), sorted([*ENDED, "cleanupTime"]),
            cleanup=Cleanup([("ft", "job-1"), ("ft-a2-ftj-u", "job-2")], False,
                            "deleted the Jobs of all 2 attempts, their pods and ConfigMaps"), cancel=False)),
    ("TTL up, ttlPolicy DeleteFineTuneJob: the FineTuneJob goes",
     {"job": job("failed"), "plan": plan(ttl_seconds_after_failure=0, ttl_policy="DeleteFineTuneJob")},
     Recall(told_phase="Running"),
     expect("Failed", ("Warning", "BackoffLimitExceeded"), ENDED, cancel=False, failed="BackoffLimitExceeded",
            cleanup=Cleanup([("ft", "job-1")], True, "deleting the FineTuneJob (ttlPolicy: DeleteFineTuneJob)"))),
    ("a finished FineTuneJob whose Job is gone stays as it was",
     {"current": succeeded_status(observed_generation=1)}, Recall(told_phase="Succeeded"),
     expect("Succeeded", None, ["conditions"])),
    ("held by the user: Suspended, the log no longer read",
     {"job": job("held"), "plan": plan(suspend=True)}, Recall(told_phase="Running"),
     expect("Suspended", ("Normal", "JobSuspended"), BASE)),
    ("a retry: its own Event instead of the phase's",
     {"change": RETRY, "plan": plan(num_nodes=2, backoff_limit=1), "attempts": Attempts(2, 1)},
     Recall(told_phase="Running"),
     expect("Pending", ("Warning", "Retrying"), ATTEMPTS)),
    ("waiting for a stale Job: Pending, told as a phase change",
     {"change": STALE, "plan": plan(num_nodes=2), "attempts": Attempts(2, 0)}, Recall(told_phase="Running"),
     expect("Pending", ("Normal", "WaitingForPreviousAttempt"), ATTEMPTS)),
    ("a name taken by a stranger: Pending and stalled",
     {"blocked": Verdict("Pending", "NameConflict", "a Job named ft exists ...", stalled=True)}, Recall(),
     expect("Pending", ("Normal", "NameConflict"), NO_JOB)),
    ("a child the API server refuses: Failed, InvalidSpec",
     {"refused": "the Job is invalid: spec.template: too long"}, Recall(),
     expect("Failed", ("Warning", "InvalidSpec"), sorted([*NO_JOB, "completionTime"]), failed="InvalidSpec")),
    ("modelNameOrPath disagrees with spec.model: a condition, and its Event once",
     {"job": job("created"), "plan": replace(plan(), model_note=NOTE)}, Recall(told_phase="Pending"),
     expect("Pending", None, BASE, after=[MODEL_PATH_MISMATCH])),
    ("the pushed model: OutputPushed once",
     {"job": job("succeeded"), "plan": plan(push_repository="registry.local/ft"),
      "pods": [pod(phase="Succeeded", containerStatuses=[{"name": "trainer", "state": {"terminated": {
          "exitCode": 0, "message": "verdict: succeeded\noutputReference: registry.local/ft@" + DIGEST
          + "\noutputDigest: " + DIGEST + "\noutputTag: registry.local/ft:v1\n"}}}])]},
     Recall(told_phase="Running"),
     expect("Succeeded", ("Normal", "TrainingComplete"), sorted([*ENDED, "output"]), after=["OutputPushed"])),
    ("an image that does not exist: Pending with the kubelet's reason",
     {"job": job("running", ready=0), "pods": [pod(phase="Pending", containerStatuses=[{"name": "trainer",
      "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}])]}, Recall(told_phase="Running"),
     expect("Pending", ("Normal", "ErrImagePull"), RUNNING)),
    ("active, not ready, its pod Running: Running (a step back to Pending is not taken)",
     {"job": job("running", ready=0), "pods": [pod(phase="Running")]}, Recall(told_phase="Pending"),
     expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True)),
    ("active, not ready, its pod ended: Running while the Job finishes",
     {"job": job("running", ready=0), "pods": [pod(phase="Succeeded")]}, Recall(told_phase="Running"),
     expect("Running", None, RUNNING, follow=True)),
    ("the TTL up and the Job already gone: nothing to delete but the record",
     {"current": succeeded_status(), "plan": plan(ttl_seconds_after_finished=0)}, Recall(told_phase="Succeeded"),
     expect("Succeeded", None, ["cleanupTime", "conditions", "observedGeneration"], cancel=False,
            cleanup=Cleanup([], False, "deleted the Job, its pods and the ConfigMap"))),
    ("the mismatch condition already recorded: its Event is not posted again",
     {"job": job("created"), "plan": replace(plan(), model_note=NOTE),
      "current": FineTuneJobStatus(conditions=[Condition(type=MODEL_PATH_MISMATCH, status="True", reason="x",
                                                         message="y", last_transition_time=T0)])},
     Recall(told_phase="Pending"), expect("Pending", None, BASE)),
    ("a pod holding accelerators starts Running: its hour counted in the phase's write, and the wait from creation",
     {"job": job("running"), "pods": [HELD], "usage_pods": [HELD], "plan": plan(accelerators=AI100),
      "created": MADE, "current": FineTuneJobStatus(phase="Pending")}, Recall(told_phase="Pending"),
     expect("Running", ("Normal", "PodsRunning"), sorted([*RUNNING, "usage"]), follow=True,
            accrued={"otterscale.com/vgpu": 7200, "phison.com/ai100": 3600}, queue_wait=3660.0)),
    ("a pod that requests no accelerator: no usage",
     {"job": job("running"), "pods": [HELD], "usage_pods": [HELD], "created": MADE,
      "current": FineTuneJobStatus(phase="Pending")}, Recall(told_phase="Pending"),
     expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True, queue_wait=3660.0)),
    ("Running again after a retried pod (this process saw it run): no queue wait",
     {"job": job("running"), "pods": [pod()], "created": MADE, "current": FineTuneJobStatus(phase="Pending")},
     Recall(told_phase="Pending", ran=True), expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True)),
    ("Running again after a restart, its log read before: no queue wait",
     {"job": job("running"), "pods": [pod()], "created": MADE,
      "current": FineTuneJobStatus(phase="Pending", trainer_status=TrainerStatus(progress_percentage=5))},
     Recall(told_phase="Pending"), expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True)),
    ("Running after an eviction by its queue: the wait counts from the eviction",
     {"job": job("running"), "pods": [pod()], "created": MADE,
      "current": FineTuneJobStatus(phase="Queued", evictions=[EVICTED],
                                   trainer_status=TrainerStatus(progress_percentage=5))},
     Recall(told_phase="Queued", ran=False),
     expect("Running", ("Normal", "PodsRunning"), RUNNING, follow=True, queue_wait=1800.0)),
    ("the log stalled: Progressing=False written, and a NoProgress Warning after it",
     {"job": job("running"), "pods": [pod()], "followed": stalled(), "current": FineTuneJobStatus(phase="Running")},
     Recall(told_phase="Running", following=True),
     expect("Running", None, STALLED, after=["NoProgress"])),
    ("Progressing=False recorded already: not told again",
     {"job": job("running"), "pods": [pod()], "followed": stalled(),
      "current": FineTuneJobStatus(phase="Running", conditions=[progressing("False")])},
     Recall(told_phase="Running", following=True), expect("Running", None, STALLED)),
    ("progress again: Progressing=True, ProgressResumed told",
     {"job": job("running"), "pods": [pod()], "followed": stalled(resumed=True),
      "current": FineTuneJobStatus(phase="Running", conditions=[progressing("False")])},
     Recall(told_phase="Running", following=True),
     expect("Running", None, STALLED, after=["ProgressResumed"])),
    ("another condition recorded: the mismatch is told",
     {"job": job("created"), "plan": replace(plan(), model_note=NOTE),
      "current": FineTuneJobStatus(conditions=[Condition(type="Running", status="False", reason="x",
                                                         message="y", last_transition_time=T0)])},
     Recall(told_phase="Pending"), expect("Pending", None, BASE, after=[MODEL_PATH_MISMATCH])),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "given", "recall", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(situation: str, given: dict[str, Any], recall: Recall, expected: dict[str, Any]) -> None:
    snap = snapshot(**given)
    if recall.written == "same":
        recall = replace(recall, written=status_dict(decide(snap, Recall()).status))
    assert features(decide(snap, recall)) == expected


def test_a_phase_told_by_the_untold_event_is_not_told_again_and_the_next_one_is() -> None:
    untold = Told("Pending", "Normal", "JobCreated", "Pending: created Job ft")
    snap = snapshot(job=job("running"), pods=[pod()])
    decision = decide(snap, Recall(told_phase=None, untold=untold))
    assert (decision.untold, decision.event) == (
        untold,
        Told("Running", "Normal", "PodsRunning", "Running: the training pod is running"),
    )
    assert decide(snapshot(job=job("created")), Recall(told_phase=None, untold=untold)).event is None


def test_a_retry_is_told_in_its_own_words_only_when_its_status_is_written() -> None:
    snap = snapshot(change=RETRY, plan=plan(num_nodes=2, backoff_limit=1), attempts=Attempts(2, 1))
    first = decide(snap, Recall(told_phase="Running"))
    assert first.event == Told("Pending", *RETRY.event)  # type: ignore[misc]
    again = decide(snap, Recall(told_phase="Pending", written=first.written))
    assert (again.patch, again.event) == (None, None)


def test_the_patch_is_made_against_what_is_stored_and_removes_what_is_not_the_operators() -> None:
    current = FineTuneJobStatus(phase="Running", job_name="ft", nodes="1/1", observed_generation=1)
    stored = {"phase": "Running", "somethingElse": 1, "cleanupAfter": "2026-12-06T00:00:00Z"}
    decision = decide(snapshot(job=job("held"), current=current, stored=stored), Recall(told_phase="Running"))
    assert decision.patch is not None
    assert decision.patch["phase"] == "Suspended"
    # What the operator does not write (any more) goes: only its own fields stay in status.
    assert (decision.patch["cleanupAfter"], decision.patch["somethingElse"]) == (None, None)
    assert decision.written == status_dict(decision.status)


def test_the_log_followed_starts_from_what_the_status_already_says() -> None:
    current = FineTuneJobStatus.model_validate(
        {"phase": "Pending", "trainerStatus": {"metrics": [{"name": "step", "value": "4"}]}}
    )
    started = decide(snapshot(job=job("running"), pods=[pod()], current=current), Recall()).follow
    assert started is not None and (started.namespace, started.name, started.max_iter) == ("ml", "ft", -1)
    assert started.started_announced and started.latest == current.trainer_status
    fresh = decide(snapshot(job=job("running"), pods=[pod()]), Recall()).follow
    assert fresh is not None and not fresh.started_announced and fresh.latest is None


def test_the_newest_trainer_status_is_written_while_running_but_not_after_the_end() -> None:
    seen = followed(steps=2)
    running = decide(snapshot(job=job("running"), pods=[pod()], followed=seen), Recall(following=True))
    assert running.status.trainer_status == seen.latest is not None
    ended = FineTuneJobStatus(phase="Succeeded", start_time=T0, completion_time=T1)
    done = decide(snapshot(current=ended, followed=seen), Recall(following=True))
    assert done.status.trainer_status is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (FineTuneJobStatus(phase="Running", start_time=T0, completion_time=T1), ""),
        (FineTuneJobStatus(phase="Succeeded"), ""),
        (FineTuneJobStatus(phase="Succeeded", start_time=T0, completion_time=T1), " (in 59m0s)"),
        (FineTuneJobStatus(phase="Failed", start_time=T1, completion_time=T0), " (in 0s)"),
        (
            FineTuneJobStatus.model_validate(
                {"phase": "Succeeded", "trainerStatus": {"metrics": [{"name": "loss", "value": "0.5"}]}}
            ),
            " (final loss 0.5 at step ?)",
        ),
        (
            FineTuneJobStatus.model_validate(
                {
                    "phase": "Failed",
                    "startTime": T0,
                    "completionTime": T1,
                    "trainerStatus": {"metrics": [{"name": "loss", "value": "0.5"}, {"name": "step", "value": "7"}]},
                }
            ),
            " (final loss 0.5 at step 7, in 59m0s)",
        ),
    ],
)
def test_the_end_is_summed_up_with_its_loss_and_duration(status: FineTuneJobStatus, expected: str) -> None:
    assert summary(status) == expected


def test_the_ttl_timer_counts_from_the_recorded_end() -> None:
    decision = decide(snapshot(job=job("failed"), plan=plan(ttl_seconds_after_failure=3600)), Recall())
    assert decision.ttl_timer == 3540.0 and decision.status.cleanup_after == "2026-12-05T12:59:00Z"
    assert NOW + timedelta(seconds=decision.ttl_timer) == NOW.replace(hour=12, minute=59)


def test_the_job_name_shown_is_the_jobs_own_or_the_attempt_to_come() -> None:
    named = decide(snapshot(job=job("running", name="ft-custom"), pods=[pod()]), Recall())
    assert named.status.job_name == "ft-custom"
    coming = decide(snapshot(attempts=Attempts(2, 1), plan=plan(num_nodes=2)), Recall())
    assert coming.status.job_name is None
    assert coming.event == Told("Pending", "Normal", "JobCreated", "Pending: creating Job ft-a2-ftj-u")


def test_a_finished_record_keeps_its_output_as_recorded() -> None:
    """What a pod says after the end (the Job kept until the TTL) is not read into a finished record."""
    said = "verdict: succeeded\noutputReference: registry.local/ft@" + DIGEST + "\noutputDigest: " + DIGEST + "\n"
    ended = pod(phase="Succeeded", containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 0,
                "message": said}}}])  # fmt: skip
    snap = snapshot(current=succeeded_status(), job=job("succeeded"), pods=[ended],
                    plan=plan(push_repository="registry.local/ft"))  # fmt: skip
    decision = decide(snap, Recall(told_phase="Succeeded"))
    assert decision.status.output is None and decision.after == []


def _queued_job() -> dict[str, Any]:
    held = job("held")
    held["metadata"]["annotations"]["finetune.aidaptiv.io/requested-suspend"] = "false"  # the queue's suspend
    held["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    return held


def _workload(*conditions: dict[str, Any], active: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": "job-ft-1"}, "spec": {"active": active}, "status": {"conditions": list(conditions)}}


SHORT = "insufficient unused quota for phison.com/ai100 in flavor ai100-flavor, 1 more needed"
PREEMPTED_BY = "Preempted to accommodate a workload (UID: u2, JobUID: j2) due to prioritization in the ClusterQueue"


def _queued(reason: str) -> FineTuneJobStatus:
    held = Condition(type="Suspended", status="True", reason=reason, message="...", last_transition_time=T0)
    return FineTuneJobStatus(phase="Queued", conditions=[held], job_name="ft", observed_generation=1)


def test_a_training_its_queue_holds_is_queued_in_kueues_words_and_told_as_they_change() -> None:
    waiting = _workload({"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": SHORT})
    first = decide(snapshot(job=_queued_job(), workload=waiting), Recall(told_phase="Pending"))
    assert first.status.phase == "Queued"
    assert first.event == Told(
        "Queued", "Normal", "WaitingForAdmission", f"Queued: waiting for admission by queue lq: {SHORT}"
    )
    # Kueue's words change, its reason does not: written, not told again.
    other = _workload({"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "2 more needed"})
    same = decide(snapshot(job=_queued_job(), workload=other, current=_queued("WaitingForAdmission")),
                  Recall(told_phase="Queued"))  # fmt: skip
    assert same.patch is not None and same.event is None
    # Preempted: a new reason of the same phase, told as a Warning, and recorded.
    evicted = _workload(
        {"type": "Evicted", "status": "True", "reason": "Preempted", "message": PREEMPTED_BY,
         "lastTransitionTime": "2026-12-05T11:30:00Z"},
    )  # fmt: skip
    taken = decide(snapshot(job=_queued_job(), workload=evicted, current=_queued("WaitingForAdmission")),
                   Recall(told_phase="Queued"))  # fmt: skip
    assert taken.event == Told(
        "Queued", "Warning", "Preempted", f"Queued: evicted by Kueue (Preempted): {PREEMPTED_BY}"
    )
    assert taken.status.evictions is not None and [e.reason for e in taken.status.evictions] == ["Preempted"]
    # Deactivated: a human must act; told as a Warning; not reconciling (kstatus Current, Argo CD Suspended).
    off = decide(snapshot(job=_queued_job(), workload=_workload(active=False), current=_queued("Preempted")),
                 Recall(told_phase="Queued"))  # fmt: skip
    assert off.event is not None and (off.event.kind, off.event.reason) == ("Warning", "Deactivated")
    reconciling = next(c for c in off.status.conditions if c.type == "Reconciling")
    assert (reconciling.status, reconciling.reason) == ("False", "Queued")


def test_the_usage_rides_on_writes_due_anyway_and_never_makes_one_of_its_own() -> None:
    given: dict[str, Any] = {
        "job": job("running"),
        "pods": [HELD],
        "usage_pods": [HELD],
        "plan": plan(accelerators=AI100),
    }
    first = decide(snapshot(**given, current=FineTuneJobStatus(phase="Pending")), Recall())
    assert first.status.usage == Usage(
        accelerator_seconds=[
            AcceleratorSeconds(resource="otterscale.com/vgpu", seconds=7200),
            AcceleratorSeconds(resource="phison.com/ai100", seconds=3600),
        ],
        counted_until="2026-12-05T12:00:00Z",
    )
    later = NOW + timedelta(minutes=10)
    running = Recall(told_phase="Running", following=True)
    quiet = decide(snapshot(**given, current=first.status, now=later), running)
    assert (quiet.patch, quiet.accrued, quiet.status.usage) == (None, {}, first.status.usage)
    # The next progress write counts the ten minutes since, and only them.
    moved = decide(snapshot(**given, current=first.status, now=later, followed=followed(2, announced=True)), running)
    assert moved.accrued == {"otterscale.com/vgpu": 1200, "phison.com/ai100": 600}
    assert moved.patch is not None and moved.patch["usage"] == {
        "acceleratorSeconds": [
            {"resource": "otterscale.com/vgpu", "seconds": 8400},
            {"resource": "phison.com/ai100", "seconds": 4200},
        ],
        "countedUntil": "2026-12-05T12:10:00Z",
    }
    # A finished record keeps the usage it ended with.
    ended = first.status.model_copy(update={"phase": "Succeeded", "completion_time": T1})
    assert decide(snapshot(**given, current=ended, now=later), running).status.usage == first.status.usage


def test_a_stall_is_a_condition_and_a_warning_in_its_own_words() -> None:
    decision = decide(
        snapshot(job=job("running"), pods=[pod()], followed=stalled(), current=FineTuneJobStatus(phase="Running")),
        Recall(told_phase="Running", following=True),
    )
    condition = next(c for c in decision.status.conditions if c.type == "Progressing")
    words = "the training log showed no new progress in 1 reads (15s); the training goes on"
    assert condition == Condition(
        type="Progressing",
        status="False",
        observed_generation=1,
        last_transition_time="2026-12-05T12:00:00Z",
        reason="NoProgress",
        message=words,
    )
    assert decision.after == [("Warning", "NoProgress", words)]
    assert decision.status.phase == "Running"  # a stall never fails the run
    # A finished run keeps what it recorded: the stall of a log no longer read is not told.
    ended = FineTuneJobStatus(phase="Succeeded", start_time=T0, completion_time=T1)
    assert decide(snapshot(current=ended, followed=stalled()), Recall(following=True)).after == []


def test_the_followed_log_picks_up_the_recorded_saves_and_stall() -> None:
    current = FineTuneJobStatus.model_validate(
        {
            "phase": "Running",
            "conditions": [progressing("False").model_dump(by_alias=True)],
            "trainerStatus": {"checkpoints": {"count": 3, "lastTime": "2026-12-05T11:00:01.250000Z"}},
        }
    )
    started = decide(snapshot(job=job("running"), pods=[pod()], current=current), Recall()).follow
    assert started is not None and started.progress is not None
    assert (started.progress.checkpoints, started.progress.newest_save) == (3, datetime(2026, 12, 5, 11, 0, 1, 250000))
    assert started.progressing == progressing("False")
