"""The pods of a Job (which one's log to read, which rank failed first and why) and the attempts of a
group of ranks (which Job is stale, when a retry or a resize is due, and what it says)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.attempts import (
    Attempts,
    Retry,
    attempt_of,
    failure_cause,
    is_stale,
    rank_verdict,
    ranks_of,
    resize_due,
    retry,
)
from finetune_operator.observe.pods import (
    RankFailure,
    first_failed_rank,
    rank_of,
    slim_body,
    slim_job,
    slim_pod,
    termination_message,
    training_pod,
)
from finetune_operator.observe.status import TrainerVerdict, Verdict

INDEX = "batch.kubernetes.io/job-completion-index"
FAILED_BY_TRAINER = "verdict: failed\nreason: TrainerExitCode\nexitCode: 1\nevidence: RuntimeError: NCCL timeout\n"


def _pod(
    name: str,
    phase: str = "Running",
    rank: str | None = None,
    created: str | None = "2026-11-28T12:00:00Z",
    statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {} if rank is None else {INDEX: rank}}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {"metadata": metadata, "status": {"phase": phase, "containerStatuses": statuses or []}}


def _ended(
    exit_code: Any = 1, finished: str | None = None, message: str | None = None, name: str = "trainer"
) -> list[dict[str, Any]]:
    terminated: dict[str, Any] = {"exitCode": exit_code}
    if finished is not None:
        terminated["finishedAt"] = finished
    if message is not None:
        terminated["message"] = message
    return [{"name": name, "state": {"terminated": terminated}}]


@pytest.mark.parametrize(
    ("label", "rank"),
    [("0", 0), ("7", 7), ("999", 999), ("1000", None), ("x", None), ("-1", None), ("", None), (None, None)],
)
def test_rank_of(label: str | None, rank: int | None) -> None:
    assert rank_of(_pod("p", rank=label)) == rank
    assert rank_of({"metadata": {"labels": {INDEX: 3}}}) is None  # not a string: not the Job controller's
    assert rank_of({}) is None


def test_the_training_pod_is_the_newest_started_one() -> None:
    old = _pod("old", "Failed", created="2026-11-28T12:00:00Z")
    new = _pod("new", "Running", created="2026-11-28T12:05:00Z")
    waiting = _pod("waiting", "Pending", created="2026-11-28T12:09:00Z")
    done = _pod("done", "Succeeded", created="2026-11-28T12:07:00Z")
    assert training_pod([old, new, waiting]) is new
    assert training_pod([old, done, new]) is done
    assert training_pod([waiting]) is None
    assert training_pod([]) is None
    # A pod without a creation time is the oldest, not an error.
    undated = _pod("undated", created=None)
    assert training_pod([undated, old]) is old


def test_the_training_pod_of_ranks_is_rank_zeros() -> None:
    zero = _pod("zero", rank="0", created="2026-11-28T12:00:00Z")
    one = _pod("one", rank="1", created="2026-11-28T12:05:00Z")
    assert training_pod([one, zero]) is zero
    # Rank 0 not started yet: no other rank speaks for the group.
    assert training_pod([one, _pod("zero", "Pending", rank="0")]) is None


def test_first_failed_rank_is_the_first_to_end() -> None:
    pods = [
        _pod("a", "Failed", "1", statuses=_ended(137, "2026-11-28T12:03:00Z")),
        _pod("b", "Failed", "2", statuses=_ended(1, "2026-11-28T12:02:00Z", FAILED_BY_TRAINER)),
        _pod("c", "Failed", "0"),  # no time known: sorts last
        _pod("d", "Running", "3", statuses=_ended(1, "2026-11-28T12:00:00Z")),  # not failed
        _pod("e", "Failed", None, statuses=_ended(1, "2026-11-28T12:00:00Z")),  # no rank
    ]
    assert first_failed_rank(pods) == RankFailure(2, 1, FAILED_BY_TRAINER)
    assert first_failed_rank(pods[2:]) == RankFailure(0, None, None)
    assert first_failed_rank(pods[3:]) is None
    # Pods that are not failed ranks are passed over, whatever their place in the list.
    assert first_failed_rank([pods[3], pods[4], pods[0]]) == RankFailure(1, 137, None)


def test_a_failed_rank_is_read_from_its_last_state_and_its_trainer_container_only() -> None:
    restarted = _pod("a", "Failed", "1")
    restarted["status"]["containerStatuses"] = [
        {"name": "sidecar", "state": {"terminated": {"exitCode": 9, "finishedAt": "2026-11-28T12:00:00Z"}}},
        {"name": "trainer", "state": {}, "lastState": {"terminated": {"exitCode": 2, "message": "m"}}},
    ]
    assert first_failed_rank([restarted]) == RankFailure(1, 2, "m")
    # An exit code that is no int (a malformed status) is left out, the rank still named.
    assert first_failed_rank([_pod("b", "Failed", "4", statuses=_ended("1"))]) == RankFailure(4, None, None)


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (RankFailure(1, 137, None), "rank 1 failed first (exit code 137)"),
        (RankFailure(0, 0, None), "rank 0 failed first (exit code 0)"),
        (RankFailure(3, None, None), "rank 3 failed first"),
    ],
)
def test_rank_failure_describe(failure: RankFailure, text: str) -> None:
    assert failure.describe() == text


def test_termination_message_of_the_trainer_container() -> None:
    assert termination_message(None) is None
    assert termination_message(_pod("p", statuses=_ended(message="now"))) == "now"
    assert termination_message(_pod("p", statuses=_ended(message="x", name="sidecar"))) is None
    assert termination_message(_pod("p", statuses=_ended(message=""))) is None
    restarted = _pod("p")
    restarted["status"]["containerStatuses"] = [
        {"name": "sidecar", "state": {"terminated": {"message": "not this"}}},
        {"name": "trainer", "state": {"running": {}}, "lastState": {"terminated": {"message": "before"}}},
    ]
    assert termination_message(restarted) == "before"
    both = _pod("p")
    both["status"]["containerStatuses"] = [
        {"name": "trainer", "state": {"terminated": {"message": 1}}, "lastState": {"terminated": {"message": "old"}}}
    ]
    assert termination_message(both) == "1"


def test_slim_pod_keeps_what_progress_reading_needs() -> None:
    body = {
        "metadata": {
            "name": "p",
            "uid": "u",
            "creationTimestamp": "t",
            "namespace": "ns",
            "labels": {INDEX: "2", "other": "x"},
            "annotations": {"a": "b"},
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "ju", "controller": True, "x": 1},
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "nu"},
            ],
        },
        "spec": {"containers": []},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "trainer"}],
            "initContainerStatuses": [{"name": "model"}],
            "podIP": "10.0.0.1",
        },
    }
    assert slim_pod(body) == {
        "metadata": {
            "name": "p",
            "creationTimestamp": "t",
            "uid": "u",
            "labels": {INDEX: "2"},
            "ownerReferences": [{"kind": "Job", "name": "j", "uid": "ju", "controller": True}],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "trainer"}],
            "initContainerStatuses": [{"name": "model"}],
        },
    }
    assert slim_pod({"metadata": {"name": "q"}}) == {
        "metadata": {"name": "q", "creationTimestamp": None, "uid": None, "labels": {}, "ownerReferences": []},
        "status": {"phase": None, "containerStatuses": None, "initContainerStatuses": None},
    }


def _attempt_job(annotation: str | None = None, **spec: Any) -> dict[str, Any]:
    annotations = {} if annotation is None else {"finetune.aidaptiv.io/attempt": annotation}
    return {"metadata": {"annotations": annotations}, "spec": spec}


@pytest.mark.parametrize(
    ("annotation", "attempt"),
    [(None, 1), ("1", 1), ("3", 3), ("99999", 99999), ("100000", 1), ("x", 1), ("-2", 1), ("", 1)],
)
def test_attempt_of(annotation: str | None, attempt: int) -> None:
    assert attempt_of(_attempt_job(annotation)) == attempt


def test_attempt_of_a_job_without_metadata_is_the_first() -> None:
    assert attempt_of({}) == 1
    assert is_stale({}, Attempts(2, 1)) is True
    assert is_stale(_attempt_job("2"), Attempts(2, 1)) is False
    assert is_stale(_attempt_job("3"), Attempts(2, 1)) is False


def test_attempts_recorded_in_status() -> None:
    assert Attempts.recorded(FineTuneJobStatus()) == Attempts(1, 0)
    assert Attempts.recorded(FineTuneJobStatus(attempt=3, failed_attempts=2)) == Attempts(3, 2)


def test_ranks_of() -> None:
    assert ranks_of({}) == 1
    assert ranks_of(_attempt_job(parallelism=4)) == 4


@pytest.mark.parametrize(
    ("job", "num_nodes", "due"),
    [
        (_attempt_job(suspend=True, parallelism=2), 4, True),
        (_attempt_job(suspend=True), 2, True),
        (_attempt_job(suspend=True, parallelism=2), 2, False),
        # A Job that runs (or still runs a pod) is not remade in place.
        (_attempt_job(suspend=False, parallelism=2), 4, False),
        ({**_attempt_job(suspend=True, parallelism=2), "status": {"active": 1}}, 4, False),
        ({**_attempt_job(suspend=True, parallelism=2), "status": {"active": 0}}, 4, True),
    ],
)
def test_resize_due(job: dict[str, Any], num_nodes: int, due: bool) -> None:
    assert resize_due(job, num_nodes) is due


KEPT = "its Job run is kept with its pods and their logs"


def _failed_job(reason: str = "PodFailurePolicy") -> dict[str, Any]:
    conditions = [{"type": "Failed", "status": "True", "reason": reason, "message": "m"}]
    return {"metadata": {"name": "run"}, "status": {"conditions": conditions}}


def test_a_failed_attempt_with_retries_left_starts_the_next() -> None:
    assert retry(_failed_job(), 2, Attempts(1, 0), 2, "rank 1 failed first") == Retry(
        Attempts(2, 1),
        Verdict("Pending", "Retrying", "attempt 1 failed: rank 1 failed first; starting attempt 2 of all 2 ranks"),
        "attempt 1 failed: rank 1 failed first; starting attempt 2 of all 2 ranks (1 of 2 retries; " + KEPT + ")",
    )
    assert retry(_failed_job(), 4, Attempts(3, 1), 2, "c") == Retry(
        Attempts(4, 2),
        Verdict("Pending", "Retrying", "attempt 3 failed: c; starting attempt 4 of all 4 ranks"),
        "attempt 3 failed: c; starting attempt 4 of all 4 ranks (2 of 2 retries; " + KEPT + ")",
    )


def test_no_retry_when_not_failed_out_of_retries_or_past_the_deadline() -> None:
    assert retry({"status": {"ready": 2}}, 2, Attempts(1, 0), 2, "c") is None
    assert retry(_failed_job(), 2, Attempts(3, 2), 2, "c") is None
    assert retry(_failed_job(), 2, Attempts(1, 0), 0, "c") is None
    assert retry(_failed_job("DeadlineExceeded"), 2, Attempts(1, 0), 2, "c") is None


def test_failure_cause_quotes_the_trainer_only_when_it_failed() -> None:
    assert failure_cause(None, "the Job failed") == "the Job failed"
    assert failure_cause(RankFailure(2, 1, FAILED_BY_TRAINER), "f") == (
        "rank 2 failed first (exit code 1): RuntimeError: NCCL timeout"
    )
    no_evidence = "verdict: failed\nreason: TrainerExitCode\n"
    assert failure_cause(RankFailure(2, 1, no_evidence), "f") == "rank 2 failed first (exit code 1)"
    succeeded = "verdict: succeeded\nreason: TrainingComplete\nevidence: training complete!\n"
    assert failure_cause(RankFailure(2, 0, succeeded), "f") == "rank 2 failed first (exit code 0)"
    assert failure_cause(RankFailure(2, None, None), "f") == "rank 2 failed first"


def test_rank_verdict_names_the_attempt_after_the_first() -> None:
    failure = RankFailure(1, 137, None)
    assert rank_verdict(failure, Attempts(1, 0), "f") == TrainerVerdict("failed", "rank 1 failed first (exit code 137)")
    assert rank_verdict(failure, Attempts(3, 2), "f") == TrainerVerdict(
        "failed", "rank 1 failed first (exit code 137) (attempt 3)"
    )
    assert rank_verdict(None, Attempts(2, 1), "the Job failed") == TrainerVerdict(
        "failed", "the Job failed (attempt 2)"
    )


SUSPEND = "finetune.aidaptiv.io/requested-suspend"
ATTEMPT = "finetune.aidaptiv.io/attempt"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def test_slim_job_keeps_what_the_controller_reads_as_plain_copies() -> None:
    owner = {"kind": "FineTuneJob", "name": "run", "uid": "u", "controller": True}
    body = MappingProxyType(
        {
            "metadata": MappingProxyType(
                {
                    "name": "run",
                    "namespace": "ns",
                    "uid": "job-uid",
                    "creationTimestamp": "t",
                    "labels": {"finetune.aidaptiv.io/name": "run"},
                    "resourceVersion": "42",
                    "managedFields": [{"manager": "kube-controller-manager"}],
                    "ownerReferences": (MappingProxyType(owner),),
                    "annotations": {SUSPEND: "false", ATTEMPT: "2", "other": "x"},
                }
            ),
            "spec": {"suspend": False, "parallelism": 2, "completions": 2, "template": {"spec": {}}},
            "status": MappingProxyType({"active": 2, "conditions": (MappingProxyType({"type": "Suspended"}),)}),
        }
    )
    slim = slim_job(body)
    assert slim == {
        "metadata": {
            "name": "run",
            "namespace": "ns",
            "uid": "job-uid",
            "creationTimestamp": "t",
            "labels": {"finetune.aidaptiv.io/name": "run"},
            "ownerReferences": [owner],
            "annotations": {SUSPEND: "false", ATTEMPT: "2"},
        },
        "spec": {"suspend": False, "parallelism": 2, "completions": 2},
        "status": {"active": 2, "conditions": [{"type": "Suspended"}]},
    }
    # Plain dicts and lists the controller may change (kopf's views are read-only).
    assert type(slim["metadata"]["ownerReferences"][0]) is dict
    assert type(slim["status"]) is dict and type(slim["status"]["conditions"]) is list
    assert type(slim["status"]["conditions"][0]) is dict


def test_slim_job_of_a_bare_job() -> None:
    assert slim_job({"metadata": {"name": "run"}}) == {
        "metadata": {
            "name": "run",
            "namespace": None,
            "uid": None,
            "creationTimestamp": None,
            "labels": None,
            "ownerReferences": [],
            "annotations": {},
        },
        "spec": {"suspend": None, "parallelism": None, "completions": None},
        "status": {},
    }


def test_slim_body_drops_managed_fields_and_kubectls_copy_only() -> None:
    spec = {"numNodes": 2, "volumes": ({"name": "data"},)}
    body = MappingProxyType(
        {
            "metadata": {
                "name": "run",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {LAST_APPLIED: "{...}", "team": "ml"},
            },
            "spec": MappingProxyType(spec),
        }
    )
    slim = slim_body(body)
    assert slim == {
        "metadata": {"name": "run", "annotations": {"team": "ml"}},
        "spec": {"numNodes": 2, "volumes": [{"name": "data"}]},
    }
    slim["spec"]["volumes"][0]["name"] = "changed"
    assert spec["volumes"][0] == {"name": "data"}  # a copy, not a view
    only_copy = slim_body({"metadata": {"name": "run", "annotations": {LAST_APPLIED: "{...}"}}})
    assert only_copy == {"metadata": {"name": "run", "annotations": {}}}
    assert slim_body({"metadata": {"name": "run"}}) == {"metadata": {"name": "run"}}
