"""What a queue (Kueue) says of a training it holds, from the Workload it made for the Job: why it waits
(Kueue's own words: a quota short by how much in which flavor, a queue that does not exist), why it was
taken back (preempted by whom, deactivated), and the evictions so far. Pure: the controller reads the
Workload (by its ``kueue.x-k8s.io/job-uid`` label) only while the Job is held by its queue."""

from __future__ import annotations

from typing import Any

from finetune_operator.api.status import MAX_EVICTIONS, Eviction

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
WORKLOADS = ("kueue.x-k8s.io", "v1beta2", "workloads")  # group, version, plural
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # Kueue's label on the Workload of a Job
MESSAGE_LIMIT = 1024
# Why Kueue took a training back: reasons of our own for the two a user meets most; the others
# (PodsReadyTimeout, ClusterQueueStopped, NodeFailures, ...) are an eviction in Kueue's words.
PREEMPTED = "Preempted"
DEACTIVATED = "Deactivated"
EVICTED = "Evicted"
ADMISSION = "WaitingForAdmission"
QUEUE_REASONS = frozenset({ADMISSION, PREEMPTED, DEACTIVATED, EVICTED})


def _conditions(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = (workload.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): c for c in found if isinstance(c, dict)}


def _on(condition: dict[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _words(condition: dict[str, Any] | None) -> str:
    return str((condition or {}).get("message") or "")[:MESSAGE_LIMIT]


def queued_words(held: str, workload: dict[str, Any] | None) -> tuple[str, str] | None:
    """Reason and message of a Job its queue holds, in Kueue's words (``held``: what the Job alone says,
    "waiting for admission by queue lq"); None when the Workload adds nothing (or is not known)."""
    if workload is None:
        return None
    name = (workload.get("metadata") or {}).get("name", "")
    conditions = _conditions(workload)
    quota, evicted = conditions.get("QuotaReserved"), conditions.get("Evicted")
    waiting = _words(quota) if quota is not None and not _on(quota) else ""
    if (workload.get("spec") or {}).get("active") is False:
        message = (
            f"Workload {name} is deactivated (spec.active: false): the training will not run until it is "
            f'reactivated (kubectl patch workload {name} --type merge -p \'{{"spec":{{"active":true}}}}\')'
        )
        return DEACTIVATED, message
    if _on(evicted):
        cause = str((evicted or {}).get("reason") or EVICTED)
        message = f"evicted by Kueue ({cause}): {_words(evicted)}"
        if waiting:
            message += f"; waiting for admission again: {waiting}"
        return PREEMPTED if cause == PREEMPTED else EVICTED, message
    if waiting:
        return ADMISSION, f"{held}: {waiting}"
    return None


def evictions(recorded: list[Eviction] | None, workload: dict[str, Any] | None) -> list[Eviction] | None:
    """The evictions recorded so far, with the Workload's current one added once (the newest
    ``MAX_EVICTIONS`` kept); None while there is none."""
    kept = list(recorded or [])
    evicted = _conditions(workload).get("Evicted") if workload is not None else None
    when = (evicted or {}).get("lastTransitionTime")
    if _on(evicted) and isinstance(when, str) and not any(e.time == when for e in kept):
        reason = str((evicted or {}).get("reason") or EVICTED)[:128]
        kept.append(Eviction(time=when, reason=reason, message=_words(evicted)))
    return kept[-MAX_EVICTIONS:] or None


def newest_workload(found: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Of a Job's Workloads, the newest (Kueue keeps one; a replaced one may linger a moment)."""
    if not found:
        return None
    return max(found, key=lambda w: str((w.get("metadata") or {}).get("creationTimestamp") or ""))


def queue_name(job: dict[str, Any]) -> str | None:
    """The LocalQueue a Job was given to (its label), if any."""
    return ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
