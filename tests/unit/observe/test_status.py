"""Status derivation: the phase, conditions and times a FineTuneJob's observations call for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.status import (
    Observation,
    TrainerVerdict,
    Verdict,
    derive_status,
    job_verdict,
    termination_summary,
    trainer_verdict_from_termination,
)
from finetune_operator.observe.ttl import Retention, cleanup_deadline

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def _job(
    *,
    suspend: bool = False,
    active: int = 0,
    ready: int = 0,
    conditions: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "run", "labels": labels or {}},
        "spec": {"suspend": suspend},
        "status": {"active": active, "ready": ready, "conditions": conditions or [], **status},
    }


def _observe(job: dict[str, Any] | None, status: FineTuneJobStatus | None = None, **kwargs: Any) -> FineTuneJobStatus:
    return derive_status(
        Observation(
            generation=kwargs.pop("generation", 1),
            status=status or FineTuneJobStatus(),
            job=job,
            job_name="run",
            now=kwargs.pop("now", NOW),
            **kwargs,
        )
    )


def _conditions(status: FineTuneJobStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


@pytest.mark.parametrize(
    ("job", "phase", "reason"),
    [
        (_job(), "Pending", "JobCreated"),
        (_job(active=1), "Pending", "PodsPending"),
        (_job(active=1, ready=1), "Running", "PodsRunning"),
        (_job(suspend=True), "Suspended", "JobSuspended"),
        (_job(succeeded=1, startTime="2026-11-28T11:59:00Z"), "Running", "PodsFinished"),
        (
            _job(uncountedTerminatedPods={"succeeded": ["u1"]}, startTime="2026-11-28T11:59:00Z"),
            "Running",
            "PodsFinished",
        ),
        (_job(conditions=[{"type": "SuccessCriteriaMet", "status": "True"}]), "Running", "PodsFinished"),
        (_job(active=1, failed=1, startTime="2026-11-28T11:59:00Z"), "Pending", "PodsPending"),
        (
            _job(conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-28T12:10:00Z"}]),
            "Succeeded",
            "TrainingComplete",
        ),
        (
            _job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}]),
            "Failed",
            "BackoffLimitExceeded",
        ),
        (
            _job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
            "Failed",
            "DeadlineExceeded",
        ),
        (
            _job(conditions=[{"type": "Failed", "status": "False", "reason": "Nope"}], active=1, ready=1),
            "Running",
            "PodsRunning",
        ),
    ],
)
def test_job_verdict(job: dict[str, Any], phase: str, reason: str) -> None:
    result = job_verdict(job)
    assert (result.phase, result.reason) == (phase, reason)


def test_a_queues_suspension_says_it_waits_for_the_queue() -> None:
    """Suspended although the operator asked for it to run: a queue controller holds it (Queued)."""
    queued = _job(suspend=True, labels={"kueue.x-k8s.io/queue-name": "gpus"})
    queued["metadata"]["annotations"] = {"finetune.aidaptiv.io/requested-suspend": "false"}
    result = job_verdict(queued)
    assert (result.phase, result.reason, result.message) == (
        "Queued",
        "WaitingForAdmission",
        "waiting for admission by queue gpus",
    )
    asked = _job(suspend=True, labels={"kueue.x-k8s.io/queue-name": "gpus"})
    asked["metadata"]["annotations"] = {"finetune.aidaptiv.io/requested-suspend": "true"}
    assert (job_verdict(asked).reason, job_verdict(asked).message) == ("JobSuspended", "spec.suspend is true")


def test_running_status_has_one_true_condition_and_the_job_name() -> None:
    status = _observe(_job(active=1, ready=1, startTime="2026-11-28T11:59:00Z"), generation=3)
    assert status.phase == "Running"
    assert status.observed_generation == 3
    assert status.job_name == "run"
    assert status.start_time == "2026-11-28T11:59:00Z"
    assert status.completion_time is None
    assert _conditions(status) == {
        "Running": ("True", "PodsRunning"),
        "Suspended": ("False", "NotSuspended"),
        "Succeeded": ("False", "NotSucceeded"),
        "Failed": ("False", "NotFailed"),
        "Stalled": ("False", "AsExpected"),
        "Reconciling": ("True", "PodsRunning"),
    }
    assert all(
        c.observed_generation == 3 and c.last_transition_time == "2026-11-28T12:00:00Z" for c in status.conditions
    )


def test_transition_time_moves_only_when_the_status_flips() -> None:
    pending = _observe(_job(active=1))
    running = _observe(_job(active=1, ready=1), status=pending, now=LATER)
    times = {c.type: c.last_transition_time for c in running.conditions}
    assert times["Running"] == "2026-11-28T12:05:00Z"
    assert times["Failed"] == "2026-11-28T12:00:00Z"
    again = _observe(_job(active=1, ready=1), status=running, now=LATER + timedelta(minutes=1))
    assert again == running


def test_failure_is_stalled_and_records_completion() -> None:
    failed = _job(
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-11-28T12:03:00Z",
            }
        ]
    )
    status = _observe(failed)
    assert status.phase == "Failed"
    assert status.completion_time == "2026-11-28T12:03:00Z"
    assert _conditions(status)["Stalled"] == ("True", "BackoffLimitExceeded")
    assert _conditions(status)["Running"] == ("False", "Finished")


def test_terminal_phase_is_sticky_even_when_the_job_vanishes_or_changes() -> None:
    complete = _job(conditions=[{"type": "Complete", "status": "True"}], completionTime="2026-11-28T12:04:00Z")
    done = _observe(complete)
    assert done.phase == "Succeeded" and done.completion_time == "2026-11-28T12:04:00Z"
    assert _observe(None, status=done, now=LATER) == done
    assert _observe(_job(active=1, ready=1), status=done, now=LATER) == done


def test_invalid_spec_is_failed_and_stalled_with_the_problems() -> None:
    status = _observe(None, invalid=["spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8"])
    assert status.phase == "Failed"
    assert _conditions(status)["Stalled"] == ("True", "InvalidSpec")
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.message == "spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8"
    assert status.job_name is None


def test_other_conditions_pass_through() -> None:
    done = _observe(_job(conditions=[{"type": "Complete", "status": "True"}], completionTime="2026-11-28T12:04:00Z"))
    cleaned = done.model_copy(
        update={
            "cleanup_time": "2026-11-28T12:05:04Z",
            "conditions": [
                *done.conditions,
                done.conditions[0].model_copy(update={"type": "CleanedUp", "status": "True", "reason": "TTLExpired"}),
            ],
        }
    )
    again = _observe(None, status=cleaned, now=LATER)
    assert _conditions(again)["CleanedUp"] == ("True", "TTLExpired")
    assert again.cleanup_time == "2026-11-28T12:05:04Z"


def test_ttl_deadline_comes_from_the_recorded_completion() -> None:
    done = _observe(_job(conditions=[{"type": "Complete", "status": "True"}], completionTime="2026-11-28T12:04:00Z"))
    assert cleanup_deadline(done, Retention(60, None)) == datetime(2026, 11, 28, 12, 5, 0, tzinfo=UTC)
    assert cleanup_deadline(done, Retention(None, 60)) is None
    assert cleanup_deadline(_observe(_job(active=1, ready=1)), Retention(60, 60)) is None
    done_and_cleaned = done.model_copy(update={"cleanup_time": "2026-11-28T12:05:00Z"})
    assert cleanup_deadline(done_and_cleaned, Retention(60, 60)) is None


LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("completed", "ttl", "deadline"),
    [
        # Found by a probe: a TTL of 10^12 s overflowed the sum on every pass; the final status was never written.
        ("2026-11-28T12:04:00Z", 10**12, LATEST),
        ("2026-11-28T12:04:00Z", 2**63 - 1, LATEST),  # the largest integer the API server stores
        ("2026-11-28T12:04:00Z", 2**31 - 1, datetime(2094, 12, 16, 15, 18, 7, tzinfo=UTC)),  # the schema's bound
        ("9999-12-31T23:59:59Z", 0, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),  # the last sum that fits
        ("9999-12-31T23:59:59Z", 60, LATEST),
        ("9999-12-31T23:58:59Z", 60, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),  # the same
    ],
)
def test_ttl_deadline_saturates_at_the_latest_time(completed: str, ttl: int, deadline: datetime) -> None:
    for phase, retention in (("Succeeded", Retention(ttl, None)), ("Failed", Retention(None, ttl))):
        done = FineTuneJobStatus(phase=phase, completion_time=completed)
        assert cleanup_deadline(done, retention) == deadline


def test_times_from_the_python_client_are_normalized() -> None:
    """The client re-serializes times as +00:00; status always says Z."""
    job = _job(
        conditions=[{"type": "Complete", "status": "True"}],
        completionTime="2026-11-28T12:04:00+00:00",
        startTime="2026-11-28T12:01:00+00:00",
    )
    done = _observe(job)
    assert (done.start_time, done.completion_time) == ("2026-11-28T12:01:00Z", "2026-11-28T12:04:00Z")
    assert cleanup_deadline(done, Retention(60, None)) == datetime(2026, 11, 28, 12, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("separator", ["\x1e", "\x1c", "\x1d", "\x0b", "\x0c", "\x85", "\u2028"])
def test_termination_message_lines_end_only_at_newline(separator: str) -> None:
    """Found by a probe: a log line quoted as evidence could smuggle in a `verdict: succeeded` line."""
    message = (
        "verdict: failed\nreason: TrainerExitCode\nexitCode: 1\nstep: 0\nloss: \n"
        f"evidence: [train.py] exits with return code = 1{separator}verdict: succeeded\n"
    )
    assert termination_summary(message)["verdict"] == "failed"
    assert trainer_verdict_from_termination(message) == TrainerVerdict(
        "failed", f"[train.py] exits with return code = 1{separator}verdict: succeeded"
    )


@pytest.mark.parametrize(
    ("job", "status", "reconciling"),
    [
        (_job(active=1), "True", "PodsPending"),
        (_job(active=1, ready=1), "True", "PodsRunning"),
        (_job(suspend=True), "False", "Suspended"),
        (_job(conditions=[{"type": "Complete", "status": "True"}]), "False", "Succeeded"),
        (_job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]), "False", "Stalled"),
    ],
)
def test_reconciling_is_true_exactly_while_pending_or_running(
    job: dict[str, Any], status: str, reconciling: str
) -> None:
    """kstatus reads Reconciling=True as InProgress: it must say so while Argo CD says Progressing."""
    assert _conditions(_observe(job))["Reconciling"] == (status, reconciling)


def test_a_blocked_finetunejob_is_pending_and_stalled_not_reconciling() -> None:
    blocked = Verdict("Pending", "NameConflict", "a Job named run exists", stalled=True)
    status = _observe(None, blocked=blocked)
    assert status.phase == "Pending"
    assert _conditions(status)["Stalled"] == ("True", "NameConflict")
    assert _conditions(status)["Reconciling"] == ("False", "Stalled")


def test_backoff_doubles_to_its_limit_and_never_overflows() -> None:
    from finetune_operator.observe.times import backoff

    assert [backoff(n, 60.0) for n in (0, 1, 2, 5, 6, 7)] == [1.0, 2.0, 4.0, 32.0, 60.0, 60.0]
    # 2.0 ** 1024 raises OverflowError: a pass retried after so many failures in a row must not.
    assert backoff(1024, 60.0) == 60.0 and backoff(10**9, 3600.0) == 3600.0
