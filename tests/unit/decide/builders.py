"""Small builders of what a pass observes, for the decide tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from finetune_operator.api.base import ANNOTATION_ATTEMPT, ANNOTATION_REQUESTED_SUSPEND
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.decide.decision import Snapshot
from finetune_operator.observe.attempts import Attempts
from finetune_operator.observe.status import job_verdict
from finetune_operator.render.plan import Facts, Plan

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
T0 = "2026-12-05T11:00:00Z"  # the Job's start
T1 = "2026-12-05T11:59:00Z"  # its end, a minute before NOW
INDEX = "batch.kubernetes.io/job-completion-index"


def facts(**given: Any) -> Facts:
    values: dict[str, Any] = {
        "num_nodes": 1,
        "suspend": False,
        "backoff_limit": 0,
        "ttl_seconds_after_finished": None,
        "ttl_seconds_after_failure": None,
        "ttl_policy": "DeleteChildren",
        "max_iter": -1,
        "push_repository": None,
    }
    return Facts(**{**values, **given})


def plan(**given: Any) -> Plan:
    return Plan(facts=facts(**given))


def job(
    state: str = "running",
    name: str = "ft",
    uid: str = "job-1",
    ranks: int = 1,
    attempt: int | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A Job as the watch shows it: "created" (no status), "running", "succeeded", "failed", "held"."""
    annotations = {ANNOTATION_REQUESTED_SUSPEND: "true" if state == "held" else "false"}
    if attempt is not None:
        annotations[ANNOTATION_ATTEMPT] = str(attempt)
    found: dict[str, Any] = {
        "metadata": {"name": name, "uid": uid, "annotations": annotations, "creationTimestamp": T0},
        "spec": {"parallelism": ranks, "completions": ranks, "suspend": state == "held"},
        "status": {},
    }
    if state == "running":
        found["status"] = {"startTime": T0, "active": ranks, "ready": ranks}
    if state == "succeeded":
        complete = {"type": "Complete", "status": "True", "lastTransitionTime": T1}
        found["status"] = {"startTime": T0, "completionTime": T1, "succeeded": ranks, "conditions": [complete]}
    if state == "failed":
        failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": T1,
                  "message": "Job has reached the specified backoff limit"}  # fmt: skip
        found["status"] = {"startTime": T0, "failed": 1, "conditions": [failed]}
    found["status"].update(status)
    return found


def pod(job_uid: str = "job-1", phase: str = "Running", rank: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"ft-{rank}-abcde",
            "labels": {INDEX: str(rank)},
            "annotations": {INDEX: str(rank)},
            "creationTimestamp": T0,
            "ownerReferences": [{"kind": "Job", "uid": job_uid, "controller": True, "name": "ft"}],
        },
        "status": {"phase": phase, **status},
    }


def snapshot(**given: Any) -> Snapshot:
    values: dict[str, Any] = {
        "namespace": "ml",
        "name": "ft",
        "uid": "ftj-uid-12345",
        "generation": 1,
        "now": NOW,
        "current": FineTuneJobStatus(),
        "stored": {},
        "plan": plan(),
        "job": None,
        "jobs": [],
        "pods": [],
        "attempts": Attempts(),
    }
    values |= given
    if values["job"] is not None and "job_result" not in given:  # as the controller computes it, once
        values["job_result"] = job_verdict(values["job"], values["plan"].facts.num_nodes if values["plan"].facts else 1)
    return Snapshot(**values)
