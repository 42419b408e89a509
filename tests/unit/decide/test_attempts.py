"""The children step as a table: nothing, the children made or checked, or a new attempt."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_operator.decide.attempts import AttemptChange, MakeChildren, children_step
from finetune_operator.observe.attempts import Attempts
from finetune_operator.observe.status import Verdict
from tests.unit.decide.builders import facts, job, pod

KILLED = {"containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 137,
          "finishedAt": "2026-12-05T11:30:00Z"}}}]}  # fmt: skip


def _failed_group() -> dict[str, Any]:
    return job("failed", ranks=2)


CASES: list[tuple[str, Any, bool, Any, Attempts, list[dict[str, Any]], Any]] = [
    ("an invalid spec: nothing", None, False, None, Attempts(), [], None),
    ("a finished FineTuneJob: nothing", facts(), True, None, Attempts(), [], None),
    ("no Job yet: make the first attempt's", facts(), False, None, Attempts(), [], MakeChildren(1)),
    ("no Job of attempt 3 yet: make it", facts(num_nodes=2), False, None, Attempts(3, 2), [], MakeChildren(3)),
    ("a running Job: check its children", facts(), False, job("running"), Attempts(), [], MakeChildren(1)),
    ("a failed single-node Job is not retried by the operator", facts(backoff_limit=3), False, job("failed"),
     Attempts(), [], MakeChildren(1)),
    ("a failed group with no retries left", facts(num_nodes=2), False, _failed_group(), Attempts(), [],
     MakeChildren(1)),
    ("a held Job of attempt 1 while attempt 2 is recorded: waited for", facts(num_nodes=2), False,
     job("held", ranks=2, attempt=1), Attempts(2, 0), [],
     AttemptChange(job("held", ranks=2, attempt=1), Attempts(2, 0), Verdict(
         "Pending", "WaitingForPreviousAttempt", "a Job of attempt 1 is being removed before attempt 2"))),
    ("a held Job of 2 ranks, numNodes now 3: made anew", facts(num_nodes=3, suspend=True), False,
     job("held", ranks=2), Attempts(), [],
     AttemptChange(job("held", ranks=2), Attempts(2, 0), Verdict(
         "Suspended", "JobSuspended", "numNodes is now 3: the held Job is made anew with 3 ranks"),
         ("Normal", "Resized", "numNodes is now 3: the held Job is made anew with 3 ranks"))),
    ("resized and resumed at once: Pending while it is made anew", facts(num_nodes=1), False,
     job("held", ranks=2), Attempts(), [],
     AttemptChange(job("held", ranks=2), Attempts(2, 0), Verdict(
         "Pending", "Resized", "numNodes is now 1: the held Job is made anew with 1 ranks"),
         ("Normal", "Resized", "numNodes is now 1: the held Job is made anew with 1 ranks"))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("situation", "given", "terminal", "found", "attempts", "pods", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_children_step(
    situation: str, given: Any, terminal: bool, found: Any, attempts: Attempts, pods: Any, expected: Any
) -> None:
    assert children_step(given, terminal, found, attempts, pods) == expected


def test_a_failed_group_with_retries_left_is_retried_naming_the_rank_that_failed_first() -> None:
    failed = _failed_group()
    pods = [pod(phase="Failed", rank=1, **KILLED), pod(phase="Failed", rank=0)]
    step = children_step(facts(num_nodes=2, backoff_limit=1), False, failed, Attempts(), pods)
    assert isinstance(step, AttemptChange) and step.keep
    assert (step.job, step.attempts, step.verdict.phase, step.verdict.reason) == (
        failed, Attempts(2, 1), "Pending", "Retrying",
    )  # fmt: skip
    assert step.verdict.message == (
        "attempt 1 failed: rank 1 failed first (exit code 137); starting attempt 2 of all 2 ranks"
    )
    assert step.event == (
        "Warning",
        "Retrying",
        f"{step.verdict.message} (1 of 1 retries; its Job ft is kept with its pods and their logs)",
    )


def test_a_failed_group_whose_pods_are_gone_is_retried_with_the_jobs_words() -> None:
    step = children_step(facts(num_nodes=2, backoff_limit=2), False, _failed_group(), Attempts(), [])
    assert isinstance(step, AttemptChange)
    assert step.verdict.message == (
        "attempt 1 failed: Job has reached the specified backoff limit; starting attempt 2 of all 2 ranks"
    )


def test_a_group_whose_push_failed_is_not_retried() -> None:
    """The training succeeded and the push failed: another attempt would train again."""
    said = "verdict: failed\nreason: OutputPushFailed\nexitCode: 1\nevidence: 401 Unauthorized\n"
    failed = [pod(phase="Failed", rank=0, containerStatuses=[{"name": "trainer", "state": {"terminated": {
        "exitCode": 1, "finishedAt": "2026-12-05T11:30:00Z", "message": said}}}])]  # fmt: skip
    assert children_step(facts(num_nodes=2, backoff_limit=3), False, _failed_group(), Attempts(), failed) == (
        MakeChildren(1)
    )
