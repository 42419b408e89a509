"""What Kueue says of a training it holds, from its Workload (shapes as Kueue v0.17.0 writes them, seen in
tests/e2e/test_kueue.py): Kueue's words for why it waits, why it was taken back, and the evictions."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_operator.api.status import MAX_EVICTIONS, Eviction
from finetune_operator.observe.queue import evictions, queue_name, queued_words

HELD = "waiting for admission by queue lq"
SHORT = (
    "couldn't assign flavors to pod set main: insufficient unused quota for phison.com/ai100 in flavor "
    "ai100-flavor, 1 more needed"
)
PREEMPTION = "Preempted to accommodate a workload (UID: 5e1, JobUID: 7a2) due to prioritization in the ClusterQueue"


def condition(kind: str, status: str, reason: str, message: str, when: str = "2026-12-05T07:47:42Z") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": when}


def workload(*conditions: dict[str, Any], active: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": "job-ft-3cf08", "labels": {"kueue.x-k8s.io/job-uid": "u1"}},
        "spec": {"active": active, "queueName": "lq"},
        "status": {"conditions": list(conditions)},
    }


WAITING = workload(condition("QuotaReserved", "False", "Pending", SHORT))
PREEMPTED = workload(
    condition("QuotaReserved", "False", "Pending", SHORT),
    condition("Evicted", "True", "Preempted", PREEMPTION),
    condition("Requeued", "True", "Preempted", PREEMPTION),
)
DEACTIVATED = workload(
    condition("QuotaReserved", "False", "Pending", "The workload is deactivated"),
    condition("Evicted", "True", "Deactivated", "The workload is deactivated"),
    active=False,
)
TIMED_OUT = workload(condition("Evicted", "True", "PodsReadyTimeout", "Exceeded the PodsReady timeout ns/ft"))
ADMITTED = workload(
    condition("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue cq"),
    condition("Admitted", "True", "Admitted", "The workload is admitted"),
)
REACTIVATE = 'kubectl patch workload job-ft-3cf08 --type merge -p \'{"spec":{"active":true}}\''


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, None),
        ({}, None),
        (ADMITTED, None),  # admitted: the Job is let go, its own words follow
        (WAITING, ("WaitingForAdmission", f"{HELD}: {SHORT}")),
        (PREEMPTED, ("Preempted", f"evicted by Kueue (Preempted): {PREEMPTION}; waiting for admission again: {SHORT}")),
        (
            DEACTIVATED,
            (
                "Deactivated",
                "Workload job-ft-3cf08 is deactivated (spec.active: false): the training will not run until it is "
                f"reactivated ({REACTIVATE})",
            ),
        ),
        (TIMED_OUT, ("Evicted", "evicted by Kueue (PodsReadyTimeout): Exceeded the PodsReady timeout ns/ft")),
        (workload(condition("Evicted", "False", "Preempted", PREEMPTION)), None),  # an eviction that is over
        (workload(condition("Evicted", "True", "", "")), ("Evicted", "evicted by Kueue (Evicted): ")),
    ],
    ids=["no workload", "empty", "admitted", "short of quota", "preempted", "deactivated", "timed out", "over",
         "no words"],
)  # fmt: skip
def test_kueues_words_for_a_held_training(found: dict[str, Any] | None, expected: tuple[str, str] | None) -> None:
    assert queued_words(HELD, found) == expected


def test_a_long_message_of_kueue_is_cut() -> None:
    long = workload(condition("QuotaReserved", "False", "Pending", "x" * 5000))
    said = queued_words(HELD, long)
    assert said is not None and said[1] == f"{HELD}: " + "x" * 1024


def test_each_eviction_is_recorded_once_and_the_newest_are_kept() -> None:
    first = evictions(None, PREEMPTED)
    assert first == [Eviction(time="2026-12-05T07:47:42Z", reason="Preempted", message=PREEMPTION)]
    assert evictions(first, PREEMPTED) == first  # seen again: the same eviction
    again = workload(condition("Evicted", "True", "Deactivated", "The workload is deactivated", "2026-12-05T08:00:00Z"))
    assert evictions(first, again) == [*first, Eviction(time="2026-12-05T08:00:00Z", reason="Deactivated",
                                                        message="The workload is deactivated")]  # fmt: skip
    assert evictions(first, ADMITTED) == first and evictions(first, None) == first
    assert evictions(None, WAITING) is None and evictions([], None) is None
    many = [Eviction(time=f"2026-12-05T07:{m:02d}:00Z", reason="Preempted") for m in range(MAX_EVICTIONS)]
    kept = evictions(many, again)
    assert kept is not None and len(kept) == MAX_EVICTIONS and kept[0] == many[1] and kept[-1].reason == "Deactivated"


def test_an_eviction_without_a_time_is_not_recorded() -> None:
    timeless = workload({"type": "Evicted", "status": "True", "reason": "Preempted"})
    assert evictions(None, timeless) is None


def test_the_queue_of_a_job_is_its_label() -> None:
    assert queue_name({"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "lq"}}}) == "lq"
    assert queue_name({"metadata": {}}) is None
