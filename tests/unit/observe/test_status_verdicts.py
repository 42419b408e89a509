"""Status derivation in full: every Verdict field (reason, message, times) of each Job state, the
conditions' reasons and messages, and the fields beside the phase. test_status.py checks phases and
reasons; these compare whole values, so a changed message or a lost time shows up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from finetune_operator.api.status import Condition, FineTuneJobStatus
from finetune_operator.observe.pods import newest_phase, waiting_on
from finetune_operator.observe.status import (
    Observation,
    TrainerVerdict,
    Verdict,
    derive_status,
    has_pods,
    job_verdict,
    termination_summary,
    trainer_verdict_from_termination,
    verdict,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
START = "2026-11-28T11:59:00Z"
PENDING_WAIT = "the training pod is waiting to be scheduled or started"
RANKS_WAIT = "waiting for the others to be scheduled or started"


def _job(spec: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": metadata or {"name": "run"}, "spec": spec or {}, "status": status}


def _true(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "status": "True", **fields}


@pytest.mark.parametrize(
    ("job", "ranks", "expected"),
    [
        (
            _job(
                conditions=[_true("Complete", lastTransitionTime="2026-11-28T12:09:00Z")],
                completionTime="2026-11-28T12:10:00+00:00",
                startTime="2026-11-28T11:59:00+00:00",
            ),
            1,
            Verdict(
                "Succeeded",
                "TrainingComplete",
                "the trainer logged 'training complete!' and exited 0",
                completion_time="2026-11-28T12:10:00Z",
                start_time=START,
            ),
        ),
        # Without completionTime the condition's own time is the end.
        (
            _job(conditions=[_true("Complete", lastTransitionTime="2026-11-28T12:09:00Z")]),
            1,
            Verdict(
                "Succeeded",
                "TrainingComplete",
                "the trainer logged 'training complete!' and exited 0",
                completion_time="2026-11-28T12:09:00Z",
            ),
        ),
        (
            _job(
                conditions=[
                    {"type": "Complete", "status": "False"},
                    _true("Failed", reason="DeadlineExceeded", message="too long", lastTransitionTime=START),
                ],
                startTime=START,
            ),
            1,
            Verdict("Failed", "DeadlineExceeded", "too long", completion_time=START, start_time=START),
        ),
        (
            _job(conditions=[_true("Failed")]),
            1,
            Verdict("Failed", "JobFailed", "the training Job failed"),
        ),
        (
            _job({"suspend": True}, startTime=START),
            1,
            Verdict("Suspended", "JobSuspended", "spec.suspend is true", start_time=START),
        ),
        (
            _job(
                {"suspend": True},
                {"name": "run", "annotations": {"finetune.aidaptiv.io/requested-suspend": "false"}},
                startTime=START,
            ),
            1,
            Verdict("Queued", "WaitingForAdmission", "held by a queue controller", start_time=START),
        ),
        (
            _job(ready=1, active=1, startTime=START),
            1,
            Verdict("Running", "PodsRunning", "the training pod is running", start_time=START),
        ),
        (
            _job(ready=2, active=2, startTime=START),
            2,
            Verdict("Running", "PodsRunning", "all 2 ranks are running", start_time=START),
        ),
        # A rank that finished early still counts for the group being under way.
        (
            _job(ready=1, active=1, succeeded=1),
            2,
            Verdict("Running", "PodsRunning", "all 2 ranks are running"),
        ),
        (
            _job(ready=1, active=2, uncountedTerminatedPods={"succeeded": ["u1"]}),
            3,
            Verdict("Pending", "RanksPending", f"2 of 3 ranks running; {RANKS_WAIT}"),
        ),
        (
            _job(ready=2, active=4),
            4,
            Verdict("Pending", "RanksPending", f"2 of 4 ranks running; {RANKS_WAIT}"),
        ),
        # With ranks, a failed pod is not "ranks pending": the Job is failing.
        (
            _job(ready=1, active=1, failed=1),
            2,
            Verdict("Pending", "PodsPending", "the training pod failed and is being retried"),
        ),
        (
            _job(active=2),
            2,
            Verdict("Pending", "PodsPending", PENDING_WAIT),
        ),
        # One ready rank is not the run: a single-rank Job needs its one pod, a group all of them.
        (
            _job(ready=1, active=2, startTime=START),
            2,
            Verdict("Pending", "RanksPending", f"1 of 2 ranks running; {RANKS_WAIT}", start_time=START),
        ),
        (
            _job(conditions=[_true("SuccessCriteriaMet")], startTime=START),
            1,
            Verdict("Running", "PodsFinished", "the training pod finished; the Job is finishing", start_time=START),
        ),
        (
            _job(conditions=[_true("FailureTarget")], active=1),
            1,
            Verdict("Running", "PodsFinished", "the training pod finished; the Job is finishing"),
        ),
        (
            _job(failed=1),
            1,
            Verdict("Running", "PodsFinished", "the training pod finished; the Job is finishing"),
        ),
        (
            _job(uncountedTerminatedPods={"failed": ["u1"], "succeeded": None}),
            1,
            Verdict("Running", "PodsFinished", "the training pod finished; the Job is finishing"),
        ),
        (
            _job(active=1, failed=1, startTime=START),
            1,
            Verdict("Pending", "PodsPending", "the training pod failed and is being retried", start_time=START),
        ),
        (_job(active=1, startTime=START), 1, Verdict("Pending", "PodsPending", PENDING_WAIT, start_time=START)),
        (
            _job(startTime=START),
            1,
            Verdict("Pending", "PodsPending", "the training pod is waiting to be created", start_time=START),
        ),
        (_job(), 1, Verdict("Pending", "JobCreated", "created Job run")),
        ({}, 1, Verdict("Pending", "JobCreated", "created Job ")),
    ],
)
def test_job_verdict_in_full(job: dict[str, Any], ranks: int, expected: Verdict) -> None:
    assert job_verdict(job, ranks) == expected


def test_a_queue_named_on_the_job_is_named_in_the_message() -> None:
    metadata = {
        "name": "run",
        "labels": {"kueue.x-k8s.io/queue-name": "gpus"},
        "annotations": {"finetune.aidaptiv.io/requested-suspend": "false"},
    }
    assert job_verdict(_job({"suspend": True}, metadata)) == Verdict(
        "Queued", "WaitingForAdmission", "waiting for admission by queue gpus"
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, False),
        ({"active": 0, "ready": 0, "succeeded": 0, "failed": 0, "terminating": 0}, False),
        ({"uncountedTerminatedPods": {"succeeded": [], "failed": None}}, False),
        ({"active": 1}, True),
        ({"ready": 1}, True),
        ({"succeeded": 1}, True),
        ({"failed": 1}, True),
        ({"terminating": 1}, True),
        ({"uncountedTerminatedPods": {"failed": ["u1"]}}, True),
    ],
)
def test_has_pods(status: dict[str, Any], expected: bool) -> None:
    assert has_pods({"status": status}) is expected


def _observation(job: dict[str, Any] | None, **fields: Any) -> Observation:
    return Observation(
        generation=fields.pop("generation", 2),
        status=fields.pop("status", FineTuneJobStatus()),
        job=job,
        job_name="run",
        now=NOW,
        **fields,
    )


FAILED_JOB = _job(
    conditions=[_true("Failed", reason="BackoffLimitExceeded", message="backoff", lastTransitionTime=START)],
    startTime=START,
)


def test_verdict_without_a_job_says_it_is_being_created_unless_blocked() -> None:
    assert verdict(_observation(None)) == Verdict("Pending", "JobCreated", "creating Job run")
    blocked = Verdict("Pending", "NameConflict", "taken", stalled=True)
    assert verdict(_observation(None, blocked=blocked)) == blocked


def test_an_invalid_spec_joins_its_problems_and_ends_now() -> None:
    assert verdict(_observation(None, invalid=["a: bad", "b: worse"])) == Verdict(
        "Failed", "InvalidSpec", "a: bad; b: worse", stalled=True, completion_time="2026-11-28T12:00:00Z"
    )


def test_a_finished_job_without_a_time_ends_now() -> None:
    assert verdict(_observation(_job(conditions=[_true("Complete")]))) == Verdict(
        "Succeeded",
        "TrainingComplete",
        "the trainer logged 'training complete!' and exited 0",
        completion_time="2026-11-28T12:00:00Z",
    )


def test_a_failed_job_takes_the_trainers_words_and_the_logs_last_lines() -> None:
    trainer = TrainerVerdict("failed", "RuntimeError: CUDA out of memory")
    assert verdict(_observation(FAILED_JOB, trainer=trainer, log_lines=["a", "b"])) == Verdict(
        "Failed",
        "TrainerReportedFailure",
        "RuntimeError: CUDA out of memory\nlast lines of the trainer's log:\na\nb",
        True,
        START,
        START,
    )
    # Without evidence the Job's message stays, under the trainer's reason.
    assert verdict(_observation(FAILED_JOB, trainer=TrainerVerdict("failed"))) == Verdict(
        "Failed", "TrainerReportedFailure", "backoff", True, START, START
    )
    # A trainer that said nothing of failure leaves the Job's reason.
    assert verdict(_observation(FAILED_JOB, trainer=TrainerVerdict("complete", "training complete!"))) == Verdict(
        "Failed", "BackoffLimitExceeded", "backoff", True, START, START
    )


def _condition(kind: str, status: str, reason: str, message: str = "") -> Condition:
    return Condition(
        type=kind, status=status, last_transition_time=START, reason=reason, message=message, observed_generation=1
    )


def test_a_recorded_terminal_status_is_kept_with_its_own_conditions_words() -> None:
    recorded = FineTuneJobStatus(
        phase="Failed",
        completion_time="2026-11-28T11:59:30Z",
        start_time="2026-11-28T11:50:00Z",
        conditions=[
            _condition("Failed", "False", "Old", "old words"),
            _condition("Failed", "True", "InvalidSpec", "a: bad"),
            _condition("Stalled", "True", "InvalidSpec", "a: bad"),
        ],
    )
    # Even a Job that now says otherwise changes nothing.
    assert verdict(_observation(_job(ready=1), status=recorded)) == Verdict(
        "Failed", "InvalidSpec", "a: bad", True, "2026-11-28T11:59:30Z", "2026-11-28T11:50:00Z"
    )
    bare = FineTuneJobStatus(phase="Succeeded", conditions=[_condition("Stalled", "False", "AsExpected")])
    assert verdict(_observation(None, status=bare)) == Verdict("Succeeded", "Succeeded", "", stalled=False)


def _by_type(status: FineTuneJobStatus) -> dict[str, tuple[str, str, str, str, int | None]]:
    return {
        c.type: (c.status, c.reason, c.message, c.last_transition_time, c.observed_generation)
        for c in status.conditions
    }


def test_derived_conditions_of_a_failure_in_full() -> None:
    status = derive_status(_observation(FAILED_JOB))
    now = "2026-11-28T12:00:00Z"
    assert _by_type(status) == {
        "Running": ("False", "Finished", "", now, 2),
        "Suspended": ("False", "NotSuspended", "", now, 2),
        "Succeeded": ("False", "NotSucceeded", "", now, 2),
        "Failed": ("True", "BackoffLimitExceeded", "backoff", now, 2),
        "Stalled": ("True", "BackoffLimitExceeded", "backoff", now, 2),
        "Reconciling": ("False", "Stalled", "", now, 2),
    }
    assert [c.type for c in status.conditions] == [
        "Running",
        "Suspended",
        "Succeeded",
        "Failed",
        "Stalled",
        "Reconciling",
    ]
    assert (status.phase, status.observed_generation, status.job_name) == ("Failed", 2, "run")
    assert (status.start_time, status.completion_time, status.nodes) == (START, START, "0/1")


def test_a_queued_job_is_reconciling_and_suspended() -> None:
    queued = _job(
        {"suspend": True}, {"name": "run", "annotations": {"finetune.aidaptiv.io/requested-suspend": "false"}}
    )
    conditions = _by_type(derive_status(_observation(queued)))
    assert conditions["Reconciling"][:3] == ("True", "WaitingForAdmission", "held by a queue controller")
    assert conditions["Suspended"][:3] == ("True", "WaitingForAdmission", "held by a queue controller")
    assert conditions["Running"][:3] == ("False", "NotRunning", "")
    asked = _job({"suspend": True})
    assert _by_type(derive_status(_observation(asked)))["Reconciling"][:3] == ("False", "Suspended", "")


def test_a_condition_keeps_its_transition_time_while_its_status_stays() -> None:
    before = FineTuneJobStatus(
        phase="Pending",
        conditions=[_condition("Running", "False", "NotRunning"), _condition("Reconciling", "True", "JobCreated")],
    )
    conditions = _by_type(derive_status(_observation(_job(ready=1), status=before)))
    # Running flipped (now); Reconciling stayed True (its old time), with the new reason.
    assert conditions["Running"] == ("True", "PodsRunning", "the training pod is running", "2026-11-28T12:00:00Z", 2)
    assert conditions["Reconciling"] == ("True", "PodsRunning", "the training pod is running", START, 2)


def test_other_conditions_pass_through_and_the_observed_ones_replace_them() -> None:
    log = _condition("LogUnreadable", "True", "LogReadFailed", "old")
    pods = _condition("PodCreateFailed", "True", "FailedCreate", "quota")
    fresh = _condition("LogUnreadable", "False", "LogRead", "readable again")
    status = derive_status(
        _observation(_job(ready=1), status=FineTuneJobStatus(conditions=[log, pods]), extra_conditions=[fresh])
    )
    assert status.conditions[6:] == [fresh, pods]


@pytest.mark.parametrize(
    ("job", "ranks", "nodes"),
    [
        (None, 2, "0/2"),
        (_job(ready=1, active=2), 2, "1/2"),
        (_job(active=2), 2, "0/2"),
        # More ready than asked (a pod being replaced) never shows more than all.
        (_job(ready=3, active=3), 2, "2/2"),
        (_job(conditions=[_true("Complete")], succeeded=2), 2, "2/2"),
        (_job(conditions=[_true("Complete")], succeeded=1), 2, "1/2"),
        (_job(conditions=[_true("Complete")], succeeded=5), 2, "2/2"),
        (_job(conditions=[_true("Complete")]), 4, "4/4"),
    ],
)
def test_nodes_column(job: dict[str, Any] | None, ranks: int, nodes: str) -> None:
    assert derive_status(_observation(job, ranks=ranks)).nodes == nodes


def test_a_finished_run_keeps_its_last_node_count() -> None:
    done = FineTuneJobStatus(phase="Succeeded", nodes="2/2", completion_time=START)
    assert derive_status(_observation(None, status=done, ranks=2)).nodes == "2/2"


def test_attempts_cleanup_after_and_job_name_are_written_as_observed() -> None:
    later = datetime(2026, 11, 28, 13, 0, 0, tzinfo=UTC)
    status = derive_status(_observation(_job(active=2), ranks=2, attempt=3, failed_attempts=2, cleanup_after=later))
    assert (status.attempt, status.failed_attempts, status.cleanup_after) == (3, 2, "2026-11-28T13:00:00Z")
    assert (status.completion_time, status.cleanup_time, status.job_name) == (None, None, "run")
    # No Job yet and none recorded: no name; a recorded one stays while the Job is away.
    assert derive_status(_observation(None)).job_name is None
    assert derive_status(_observation(None, status=FineTuneJobStatus(job_name="run"))).job_name == "run"
    # A start time recorded before stays when the Job no longer says it.
    assert derive_status(_observation(_job(), status=FineTuneJobStatus(start_time=START))).start_time == START


def test_a_cleanup_records_its_time_and_condition_and_drops_the_deadline() -> None:
    done = derive_status(_observation(_job(conditions=[_true("Complete")], completionTime=START)))
    later = datetime(2026, 11, 28, 13, 0, 0, tzinfo=UTC)
    cleaned = derive_status(_observation(None, status=done, cleanup_after=later, cleaned_up=True))
    assert (cleaned.cleanup_time, cleaned.cleanup_after, cleaned.completion_time) == (
        "2026-11-28T12:00:00Z",
        None,
        START,
    )
    assert _by_type(cleaned)["CleanedUp"] == (
        "True",
        "TTLExpired",
        "the TTL passed: deleted the Job, its pods and the ConfigMap",
        "2026-11-28T12:00:00Z",
        2,
    )


def test_termination_summary_keeps_known_keys_stripped() -> None:
    message = (
        "verdict:  failed \nreason: TrainerExitCode\nexitCode: 137\nother: x\nno separator\nevidence:a\n"
        "step: 7\nloss: 1.5"
    )
    assert termination_summary(message) == {
        "verdict": "failed",
        "reason": "TrainerExitCode",
        "exitCode": "137",
        "step": "7",
        "loss": "1.5",
    }
    assert termination_summary(None) == {}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, None),
        ("verdict: failed\nreason: TrainerExitCode\nevidence: exit 1", TrainerVerdict("failed", "exit 1")),
        ("verdict: failed\nreason: TrainerReportedFailure\nevidence: rc 1", TrainerVerdict("failed", "rc 1")),
        ("verdict: failed\nreason: TrainingIncomplete", TrainerVerdict("failed", None)),
        # The run's own stages around the trainer: their reason, the entrypoint's words (issue 20 #8).
        ("verdict: failed\nreason: PrescriptFailed\nevidence: x", TrainerVerdict("failed", "x", "PrescriptFailed")),
        (
            "verdict: failed\nreason: OutputDirUnavailable\nevidence: y",
            TrainerVerdict("failed", "y", "OutputDirUnavailable"),
        ),
        ("verdict: failed\nreason: PostscriptFailed\nevidence: z", TrainerVerdict("failed", "z", "PostscriptFailed")),
        ("verdict: failed\nreason: SomethingElse\nevidence: x", None),
        ("verdict: succeeded\nreason: TrainingComplete\nevidence: done", TrainerVerdict("complete", "done")),
        ("verdict: running", None),
    ],
)
def test_trainer_verdict_from_termination(message: str | None, expected: TrainerVerdict | None) -> None:
    assert trainer_verdict_from_termination(message) == expected


def test_conditions_that_are_off_carry_no_message() -> None:
    conditions = _by_type(derive_status(_observation(_job(ready=1, active=1))))
    assert {kind: (status, reason, message) for kind, (status, reason, message, _, _) in conditions.items()} == {
        "Running": ("True", "PodsRunning", "the training pod is running"),
        "Suspended": ("False", "NotSuspended", ""),
        "Succeeded": ("False", "NotSucceeded", ""),
        "Failed": ("False", "NotFailed", ""),
        "Stalled": ("False", "AsExpected", ""),
        "Reconciling": ("True", "PodsRunning", "the training pod is running"),
    }


def test_only_a_finished_run_has_a_completion_time() -> None:
    blocked = Verdict("Pending", "NameConflict", "taken", stalled=True, completion_time=START)
    assert derive_status(_observation(None, blocked=blocked)).completion_time is None


def test_a_cleanup_seen_again_keeps_one_cleaned_up_condition() -> None:
    done = derive_status(_observation(_job(conditions=[_true("Complete")], completionTime=START)))
    once = derive_status(_observation(None, status=done, cleaned_up=True))
    twice = derive_status(_observation(None, status=once, cleaned_up=True))
    # The conditions are a list-map keyed by type: the API server refuses a type twice.
    assert [c.type for c in twice.conditions].count("CleanedUp") == 1
    assert _by_type(twice)["CleanedUp"] == _by_type(once)["CleanedUp"]


def _waiting_pod(phase: str, kind: str, name: str, reason: str, message: str | None = None) -> dict[str, Any]:
    waiting = {"reason": reason, **({"message": message} if message is not None else {})}
    return {
        "status": {
            "phase": phase,
            kind: [{"name": "other", "state": {"running": {}}}, {"name": name, "state": {"waiting": waiting}}],
        }
    }


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        (
            [
                _waiting_pod(
                    "Pending", "containerStatuses", "trainer", "ErrImagePull", 'failed to pull "r/absent:v1": not found'
                )
            ],
            ("ErrImagePull", 'container trainer cannot start: failed to pull "r/absent:v1": not found'),
        ),
        (
            [
                _waiting_pod(
                    "Pending", "initContainerStatuses", "model-loader", "ImagePullBackOff", "Back-off pulling r/m:v1"
                )
            ],
            ("ImagePullBackOff", "container model-loader cannot start: Back-off pulling r/m:v1"),
        ),
        (
            [_waiting_pod("Pending", "containerStatuses", "trainer", "CreateContainerConfigError")],
            ("CreateContainerConfigError", "container trainer cannot start: CreateContainerConfigError"),
        ),
        # Waiting for a reason that passes (still creating), or a pod that runs: nothing to say.
        ([_waiting_pod("Pending", "containerStatuses", "trainer", "ContainerCreating")], None),
        ([_waiting_pod("Running", "containerStatuses", "trainer", "ErrImagePull")], None),
        ([], None),
    ],
)
def test_a_container_stuck_on_an_image_or_config_is_found(
    pods: list[dict[str, Any]], expected: tuple[str, str] | None
) -> None:
    assert waiting_on(pods) == expected


def test_a_pending_training_stuck_on_an_image_says_so_in_its_verdict() -> None:
    stuck = ("ErrImagePull", "container trainer cannot start: r/absent:v1: not found")
    observed = _observation(_job(active=1), waiting=stuck)
    assert verdict(observed) == Verdict("Pending", "ErrImagePull", stuck[1])
    running = _observation(_job(active=1, ready=1), waiting=stuck)
    assert verdict(running).reason == "PodsRunning"


def test_a_deadline_stays_the_cause_when_the_trainer_logs_its_end() -> None:
    failed = _job(
        conditions=[_true("Failed", reason="DeadlineExceeded", message="Job was active longer than specified deadline")]
    )
    said = TrainerVerdict("failed", "['python3', 'train.py'] exits with return code = -15")
    got = verdict(_observation(failed, trainer=said))
    assert (got.phase, got.reason) == ("Failed", "DeadlineExceeded")
    assert got.message == (
        "Job was active longer than specified deadline; the trainer's last words: "
        "['python3', 'train.py'] exits with return code = -15"
    )
    other = _job(conditions=[_true("Failed", reason="BackoffLimitExceeded", message="limit")])
    assert verdict(_observation(other, trainer=said)).reason == "TrainerReportedFailure"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        # The container ended, the kubelet said so, the Job controller has not counted it yet.
        ("Succeeded", ("Running", "PodsFinished")),
        ("Failed", ("Running", "PodsFinished")),
        ("Running", ("Running", "PodsRunning")),
        ("Pending", ("Pending", "PodsPending")),
        (None, ("Pending", "PodsPending")),
    ],
)
def test_an_active_pod_that_is_not_ready_is_judged_by_the_newest_pods_phase(
    phase: str | None, expected: tuple[str, str]
) -> None:
    """Found on the real node: Running, then Pending for a moment as the container ended, then Succeeded."""
    job = _job(active=1, ready=0, startTime=START)
    got = verdict(_observation(job, newest_pod_phase=phase))
    assert (got.phase, got.reason) == expected


def test_the_newest_pod_is_the_replacement() -> None:
    old = {"metadata": {"creationTimestamp": "2026-11-28T12:00:00Z"}, "status": {"phase": "Failed"}}
    new = {"metadata": {"creationTimestamp": "2026-11-28T12:00:09Z"}, "status": {"phase": "Pending"}}
    assert newest_phase([old, new]) == newest_phase([new, old]) == "Pending"
    assert newest_phase([]) is None
