"""Attempts of a group of ranks (numNodes > 1): which Job belongs to which attempt, and what to do when
one fails or the node count changes. Pure decisions; the controller acts on them.

Every attempt is a new Job, annotated with its number: the first has the FineTuneJob's name, each
later one a name of its own (its ranks are told their rank 0's address). A failed attempt's Job is
kept, with its pods and their logs, until the FineTuneJob's own cleanup (its TTL, or its deletion), as a
single-node Job keeps its failed pods. The number is recorded in status *before* the next Job is made,
so a crash at any point neither skips nor repeats one; and two attempts never run at once: the next
is made only once the Job of the one before has failed (its pods ended), and a Job of an older attempt
that did not fail (a held Job remade with a new node count) is deleted, and waited for, first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune_operator.api.base import ANNOTATION_ATTEMPT, LOADER_CONTAINER, MODEL_LOAD_FAILED, OUTPUT_PUSH_FAILED
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.pods import RankFailure
from finetune_operator.observe.status import Verdict, job_verdict
from finetune_operator.observe.termination import TrainerVerdict, trainer_verdict_from_termination

# A deadline is the user's limit for the whole training, not a failure another attempt could mend.
NOT_RETRIED = {"DeadlineExceeded"}


@dataclass(frozen=True)
class Attempts:
    attempt: int = 1  # the attempt that runs (every new Job of the group counts one)
    failed: int = 0  # attempts that failed (backoffLimit bounds these)

    @classmethod
    def recorded(cls, status: FineTuneJobStatus) -> Attempts:
        return cls(status.attempt or 1, status.failed_attempts or 0)


def attempt_of(job: dict[str, Any]) -> int:
    """The attempt a Job runs (a Job without the annotation is the first)."""
    text = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ATTEMPT, "1")
    return int(text) if text.isdigit() and len(text) < 6 else 1


def is_stale(job: dict[str, Any], attempts: Attempts) -> bool:
    """A Job of an attempt before the one recorded: never judged again."""
    return attempt_of(job) < attempts.attempt


def is_kept(job: dict[str, Any], attempts: Attempts) -> bool:
    """A failed attempt's Job, kept for its pods' logs until the FineTuneJob's cleanup; any other Job of
    an attempt before the one recorded (a held one remade, left behind by a crash) is to be deleted."""
    return is_stale(job, attempts) and job_verdict(job, ranks_of(job)).phase == "Failed"


def ranks_of(job: dict[str, Any]) -> int:
    return int((job.get("spec") or {}).get("parallelism") or 1)


def resize_due(job: dict[str, Any], num_nodes: int) -> bool:
    """numNodes changed while the Job is held (suspended, no pod): it is made anew with the new count
    (its pod template, NNODES and WORLD_SIZE included, cannot change in place), also when the same change
    resumed the FineTuneJob (refused by the CRD's rule, but a cluster may still run an older CRD) or a
    queue holds the Job: a held Job is never let go with the count of before."""
    held = bool((job.get("spec") or {}).get("suspend")) and not (job.get("status") or {}).get("active")
    return held and ranks_of(job) != num_nodes


@dataclass(frozen=True)
class Retry:
    attempts: Attempts  # with the failed one counted and the next one started
    verdict: Verdict  # Pending, while the next attempt is made
    event: str


def retry(
    job: dict[str, Any],
    ranks: int,
    attempts: Attempts,
    backoff_limit: int,
    cause: str,
    failure: RankFailure | None = None,
) -> Retry | None:
    """A failed attempt of the group, with attempts left: start all ranks anew. Not after a failed push:
    the training succeeded, and a new attempt would train again."""
    result = job_verdict(job, ranks)
    if result.phase != "Failed" or result.reason in NOT_RETRIED or attempts.failed >= backoff_limit:
        return None
    if _said(failure).reason == OUTPUT_PUSH_FAILED:
        return None
    after = Attempts(attempts.attempt + 1, attempts.failed + 1)
    limit = backoff_limit + 1
    message = f"attempt {attempts.attempt} failed: {cause}; starting attempt {after.attempt} of all {ranks} ranks"
    kept = f"its Job {(job.get('metadata') or {}).get('name')} is kept with its pods and their logs"
    event = f"{message} ({after.failed} of {limit - 1} retries; {kept})"
    return Retry(after, Verdict("Pending", "Retrying", message), event)


def _said(failure: RankFailure | None) -> TrainerVerdict:
    """What the first failed rank said as it ended: the model copy's words, or the entrypoint's."""
    if failure is None:
        return TrainerVerdict("failed")
    if failure.container == LOADER_CONTAINER:
        return TrainerVerdict("failed", failure.message, MODEL_LOAD_FAILED)
    said = trainer_verdict_from_termination(failure.message)
    return said if said is not None and said.verdict == "failed" else TrainerVerdict("failed")


def failure_cause(failure: RankFailure | None, fallback: str) -> str:
    """Which rank failed first and, if it said so, why (the trainer's words from its termination message)."""
    if failure is None:
        return fallback
    evidence = _said(failure).evidence
    return f"{failure.describe()}: {evidence}" if evidence else failure.describe()


def rank_verdict(failure: RankFailure | None, attempts: Attempts, fallback: str) -> TrainerVerdict:
    """The trainer's verdict for a group whose last attempt failed: the first failed rank's words."""
    cause = failure_cause(failure, fallback)
    suffix = f" (attempt {attempts.attempt})" if attempts.attempt > 1 else ""
    return TrainerVerdict("failed", cause + suffix, _said(failure).reason)
