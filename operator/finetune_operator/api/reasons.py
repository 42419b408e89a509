"""Every reason a FineTuneJob's status can give, with the phase it comes with and what it means: the
reference for users (the README's list is checked against it) and for whoever adds one
(`tests/unit/api/test_reasons.py` finds a reason the code sets that is not here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    phase: str  # the phase it is given with ("Pending", …), or "any" for a condition of its own
    meaning: str
    passed_on: bool = False  # another component's reason (the Job controller's, the kubelet's), told as it is


def _reasons(*rows: tuple[str, str, str]) -> dict[str, Reason]:
    return {name: Reason(phase, meaning) for name, phase, meaning in rows}


def _passed_on(*rows: tuple[str, str, str]) -> dict[str, Reason]:
    return {name: Reason(phase, meaning, passed_on=True) for name, phase, meaning in rows}


REASONS: dict[str, Reason] = {
    **_reasons(
        ("JobCreated", "Pending", "the Job is made (or being made); its pod is not there yet"),
        ("PodsPending", "Pending", "the training pod waits to be scheduled, created or started, or is retried"),
        ("RanksPending", "Pending", "some ranks of a multi-node run are running, the others not yet"),
        ("PodsRunning", "Running", "the training pod (every rank) runs"),
        ("PodsFinished", "Running", "the training pod ended; the Job is not yet final"),
        ("JobSuspended", "Suspended", "spec.suspend is true"),
        ("WaitingForAdmission", "Queued", "its queue (Kueue) holds the Job until it is admitted, saying why"),
        ("Preempted", "Queued", "Kueue took the training back to make room for higher-priority work; it waits again"),
        ("Deactivated", "Queued", "the Job's Kueue Workload is deactivated: it will not run until reactivated"),
        ("Evicted", "Queued", "Kueue took the training back for another cause (PodsReadyTimeout, a stopped queue)"),
        ("Resized", "Pending", "numNodes changed while suspended: the held Job is made anew"),
        ("Retrying", "Pending", "an attempt of a multi-node run failed; the next attempt of all ranks starts"),
        ("WaitingForPreviousAttempt", "Pending", "a Job of an earlier attempt is being removed first"),
        ("WaitingForPreviousRun", "Pending", "a child of a deleted FineTuneJob of this name is being removed"),
        ("NameConflict", "Pending", "a child's name is taken by an object of someone else (Stalled)"),
        ("InvalidSpec", "Failed", "the spec cannot be rendered, or the API server refuses a child (Stalled)"),
        ("TrainingComplete", "Succeeded", "the trainer logged 'training complete!' and exited 0"),
        ("TrainerExitCode", "Failed", "the trainer exited non-zero"),
        ("TrainerReportedFailure", "Failed", "the trainer's log reports a failure (exit 0 or not)"),
        ("TrainingIncomplete", "Failed", "the trainer exited 0 without logging 'training complete!'"),
        ("PrescriptFailed", "Failed", "the prescript failed (the entrypoint's words)"),
        ("SetupFailed", "Failed", "the entrypoint could not set the rank up (NODE_RANK, its env_config)"),
        ("TrainerFailed", "Failed", "the trainer's stage ended before it could be judged"),
        ("PostscriptFailed", "Failed", "the postscript failed"),
        ("OutputDirUnavailable", "Failed", "the output directory cannot be made or written"),
        ("OutputPushFailed", "Failed", "the training succeeded but the push of spec.output failed"),
        ("ModelLoadFailed", "Failed", "the model copy (copyToLocal) failed before the trainer started"),
        ("JobFailed", "Failed", "the Job failed without a reason of its own"),
        # Conditions of their own, beside the phase.
        ("FailedCreate", "any", "PodCreateFailed: the Job controller cannot create the pod (its words)"),
        ("PodsCreated", "any", "PodCreateFailed is over: the Job has its pod"),
        ("LogReadFailed", "any", "LogUnreadable: the training log cannot be read (progress is not updated)"),
        ("LogRead", "any", "LogUnreadable is over: the log is readable again"),
        ("NoProgress", "any", "Progressing=False: the log shows no new progress for a while (the run goes on)"),
        ("ProgressResumed", "any", "Progressing=True: the log shows progress again after NoProgress"),
        ("ModelNameOrPathElsewhere", "any", "ModelPathMismatch: expConfig names another model than spec.model"),
        ("TTLExpired", "any", "CleanedUp: the TTL ran out and the children were deleted"),
        ("AsExpected", "any", "a condition that is False: nothing to tell"),
    ),
    **_passed_on(
        ("BackoffLimitExceeded", "Failed", "the Job controller's: the pod failed more than backoffLimit times"),
        ("DeadlineExceeded", "Failed", "the Job controller's: activeDeadlineSeconds ran out (never retried)"),
        ("PodFailurePolicy", "Failed", "the Job controller's: a rank's trainer exited non-zero (FailJob rule)"),
        ("ErrImagePull", "Pending", "the kubelet's: an image cannot be pulled"),
        ("ImagePullBackOff", "Pending", "the kubelet's: an image pull is retried after failing"),
        ("InvalidImageName", "Pending", "the kubelet's: an image reference is invalid"),
        ("ErrImageNeverPull", "Pending", "the kubelet's: imagePullPolicy Never and the image is not on the node"),
        (
            "CreateContainerConfigError",
            "Pending",
            "the kubelet's: a Secret or ConfigMap the container needs is missing",
        ),
        ("CreateContainerError", "Pending", "the kubelet's: the runtime cannot create the container"),
    ),
}
