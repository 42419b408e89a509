"""The children step of a pass: a new attempt (a failed group retried, a held Job remade with a new
node count, a stale Job waited for), the children made or checked, or nothing to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune_operator.observe.attempts import Attempts, failure_cause, is_stale, resize_due, retry
from finetune_operator.observe.pods import first_failed_rank
from finetune_operator.observe.status import Verdict, job_verdict
from finetune_operator.render.plan import Facts


@dataclass(frozen=True)
class AttemptChange:
    """The Job goes, and the next attempt's comes: after a failure (a retry), or a new node count."""

    job: dict[str, Any]
    attempts: Attempts
    verdict: Verdict
    event: tuple[str, str, str] | None = None  # type, reason, message
    keep: bool = False  # a failed attempt's Job stays, with its pods and their logs


@dataclass(frozen=True)
class MakeChildren:
    """Make the attempt's Job (and Service, ConfigMap), or check those of the Job there; pass a change
    of spec.suspend on to it."""

    attempt: int


ChildrenStep = AttemptChange | MakeChildren | None


def children_step(
    facts: Facts | None,
    terminal: bool,
    job: dict[str, Any] | None,
    attempts: Attempts,
    pods: list[dict[str, Any]],
) -> ChildrenStep:
    """None for an invalid spec or a finished FineTuneJob: nothing is made for them."""
    if facts is None or terminal:
        return None
    if job is not None:
        change = attempt_change(facts, job, attempts, pods)
        if change is not None:
            return change
    return MakeChildren(attempts.attempt)


def attempt_change(
    facts: Facts, job: dict[str, Any], attempts: Attempts, pods: list[dict[str, Any]]
) -> AttemptChange | None:
    if is_stale(job, attempts):
        message = f"a Job of attempt {attempts.attempt - 1} is being removed before attempt {attempts.attempt}"
        return AttemptChange(job, attempts, Verdict("Pending", "WaitingForPreviousAttempt", message))
    if resize_due(job, facts.num_nodes):
        after = Attempts(attempts.attempt + 1, attempts.failed)
        message = f"numNodes is now {facts.num_nodes}: the held Job is made anew with {facts.num_nodes} ranks"
        held = (
            Verdict("Suspended", "JobSuspended", message) if facts.suspend else Verdict("Pending", "Resized", message)
        )
        return AttemptChange(job, after, held, ("Normal", "Resized", message))
    if facts.num_nodes <= 1:
        return None
    failure = first_failed_rank(pods)
    cause = failure_cause(failure, job_verdict(job, facts.num_nodes).message)
    again = retry(job, facts.num_nodes, attempts, facts.backoff_limit, cause, failure)
    if again is None:
        return None
    return AttemptChange(job, again.attempts, again.verdict, ("Warning", "Retrying", again.event), keep=True)
