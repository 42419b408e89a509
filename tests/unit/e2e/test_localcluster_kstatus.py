"""The kstatus tool of the toolchain, run for real on hand-written objects (no cluster).

kstatus is how Flux, kpt and Config Sync judge a resource; these pin what it says of
FineTuneJob-shaped objects and of a running Job.
"""

from __future__ import annotations

from typing import Any

import pytest

from e2e import kstatus
from tests.toolchain import tool


@pytest.fixture
def binary() -> str:
    return tool("kstatus")


def ftj(generation: int = 1, observed: int | None = 1, conditions: list[dict[str, Any]] | None = None) -> dict:
    status: dict[str, Any] = {"phase": "Running"}
    if observed is not None:
        status["observedGeneration"] = observed
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": "finetune.aidaptiv.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "ftj", "namespace": "team-a", "generation": generation},
        "spec": {"image": "trainer:1"},
        "status": status,
    }


def cond(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def running_job(start_time: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {"active": 1}
    if start_time:
        status["startTime"] = start_time
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ftj", "namespace": "team-a", "generation": 1},
        "spec": {"parallelism": 1, "completions": 1, "template": {"spec": {"containers": []}}},
        "status": status,
    }


def test_stalled_true_is_failed_with_the_condition_message(binary: str) -> None:
    stalled = cond("Stalled", "True", "BackoffLimitExceeded", "the Job failed 2 times")
    assert kstatus.compute([ftj(conditions=[stalled])], binary) == [(kstatus.FAILED, "the Job failed 2 times")]


def test_reconciling_true_is_in_progress_with_the_condition_message(binary: str) -> None:
    reconciling = cond("Reconciling", "True", "PodsPending", "waiting for the pod")
    assert kstatus.compute([ftj(conditions=[reconciling])], binary) == [(kstatus.IN_PROGRESS, "waiting for the pod")]


def test_observed_generation_behind_is_in_progress(binary: str) -> None:
    ((status, message),) = kstatus.compute([ftj(generation=3, observed=2, conditions=[])], binary)
    assert status == kstatus.IN_PROGRESS
    assert message == "FineTuneJob generation is 3, but latest observed generation is 2"


def test_no_conditions_and_matching_generation_is_current(binary: str) -> None:
    assert kstatus.compute([ftj(generation=2, observed=2)], binary) == [(kstatus.CURRENT, "Resource is current")]


def test_false_conditions_do_not_count(binary: str) -> None:
    quiet = [cond("Stalled", "False", "Running", ""), cond("Reconciling", "False", "Running", "")]
    assert kstatus.compute([ftj(conditions=quiet)], binary) == [(kstatus.CURRENT, "Resource is current")]


def test_a_running_job_is_current_once_it_has_a_start_time(binary: str) -> None:
    # kstatus does not wait for a Job to finish: with a startTime and no condition it is Current.
    verdicts = kstatus.compute([running_job(None), running_job("2026-01-02T03:04:05Z")], binary)
    assert verdicts == [
        (kstatus.IN_PROGRESS, "Job not started"),
        (kstatus.CURRENT, "Job in progress. success:0, active: 1, failed: 0"),
    ]


def test_verdicts_come_back_in_the_order_of_the_objects(binary: str) -> None:
    stalled = ftj(conditions=[cond("Stalled", "True", "InvalidSpec", "bad spec")])
    behind = ftj(generation=2, observed=1)
    terminating = ftj()
    terminating["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    statuses = [s for s, _ in kstatus.compute([behind, stalled, terminating, ftj()], binary)]
    assert statuses == [kstatus.IN_PROGRESS, kstatus.FAILED, kstatus.TERMINATING, kstatus.CURRENT]


def test_an_object_kstatus_cannot_judge_is_an_error(binary: str) -> None:
    broken = ftj()
    broken["metadata"]["generation"] = "one"  # kstatus reads it as an integer
    with pytest.raises(kstatus.KstatusError, match="cannot judge FineTuneJob ftj"):
        kstatus.compute([broken], binary)


def test_input_that_is_not_a_list_of_objects_is_refused(binary: str) -> None:
    with pytest.raises(kstatus.KstatusError, match="not a JSON array of objects"):
        kstatus.compute([["not", "an", "object"]], binary)  # type: ignore[list-item]
