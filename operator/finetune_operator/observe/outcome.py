"""How a training ended, from its pods: whose words explain a failure, and what a success pushed."""

from __future__ import annotations

from typing import Any

from finetune_operator.observe.attempts import Attempts, rank_verdict
from finetune_operator.observe.pods import first_failed_rank, termination_message, training_pod
from finetune_operator.observe.progress import Progress
from finetune_operator.observe.status import Verdict
from finetune_operator.observe.termination import (
    STAGE_FAILURES,
    PushedOutput,
    TrainerVerdict,
    loader_failure,
    of_repository,
    pushed_output,
    trainer_verdict_from_termination,
)


def trainer_verdict(
    pods: list[dict[str, Any]],
    result: Verdict | None,
    ranks: int,
    attempts: Attempts,
    progress: Progress | None,
) -> TrainerVerdict | None:
    """The trainer's verdict: its log if it was read, else the entrypoint's termination message; for a
    group that failed, the words of the rank that failed first (rank 0's log may only say it was ended);
    a failed push or model copy in their own words, whatever the log said. `result` is the Job's own
    verdict (observe.status.job_verdict), None while there is no Job."""
    failed = result is not None and result.phase == "Failed"
    if ranks > 1 and result is not None and failed:
        return rank_verdict(first_failed_rank(pods), attempts, result.message)
    pod = training_pod(pods)
    said = trainer_verdict_from_termination(termination_message(pod))
    if said is not None and said.reason in STAGE_FAILURES:
        return said  # the log may say the training completed; a stage around it (a script, the push) failed
    if failed and (copy_failed := loader_failure(pod)) is not None:
        return copy_failed
    if progress is not None and progress.verdict != "running":
        return TrainerVerdict(progress.verdict, progress.evidence)
    return said


def pushed(pods: list[dict[str, Any]], result: Verdict | None, repository: str | None) -> PushedOutput | None:
    """What the finished training pushed to the requested repository (rank 0 pushes for the group), once
    the Job completed (`result`: its verdict); nothing when no push was asked for, whatever a pod says."""
    if repository is None or result is None or result.phase != "Succeeded":
        return None
    found = pushed_output(termination_message(training_pod(pods)))
    return found if found is not None and of_repository(found.reference, repository) else None
