"""Names, labels and ownership of what a FineTuneJob makes: deterministic, so that a retry or a restart
finds its objects instead of making twins."""

from __future__ import annotations

from typing import Any

from finetune_operator.api.base import API_VERSION, KIND, LABEL_NAME
from finetune_operator.api.resource import FineTuneJob

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COPIED_LABELS = (QUEUE_LABEL, "kueue.x-k8s.io/priority-class")
# Kueue's own limit of a Job's admitted time, counted across its evictions: activeDeadlineSeconds told to
# the queue, which otherwise would readmit a preempted training with a fresh deadline each time.
MAX_EXEC_TIME_LABEL = "kueue.x-k8s.io/max-exec-time-seconds"


# A Job's name and `-<rank>` make each rank's host name, a DNS label of at most 63 characters.
MAX_ATTEMPT_JOB_NAME = 60


def job_name(ftj: FineTuneJob, attempt: int = 1) -> str:
    """The first attempt's Job keeps the FineTuneJob's name, as the chart's Job kept `job.name`. Each
    later attempt's Job has a name of its own, so that a failed attempt's Job, with its pods and their
    logs, stays beside the next one (until the FineTuneJob's cleanup); the uid's start keeps it apart
    from the Jobs of a FineTuneJob that happens to be named like it."""
    return attempt_job_name(ftj.metadata.name, ftj.metadata.uid, attempt)


def attempt_job_name(name: str, uid: str | None, attempt: int) -> str:
    if attempt == 1:
        return name
    suffix = f"-a{attempt}-{uid[:5]}" if uid else f"-a{attempt}"
    return name[: MAX_ATTEMPT_JOB_NAME - len(suffix)] + suffix


def config_map_name(ftj: FineTuneJob, attempt: int = 1) -> str:
    """With the uid's start: a FineTuneJob deleted and re-created under its name (as the immutability
    message advises) never meets the ConfigMap of the one before, still being garbage-collected; and
    with the attempt after the first, for the same reason between the attempts of one FineTuneJob."""
    uid = (ftj.metadata.uid or "")[:8]
    name = f"{ftj.metadata.name}-config-{uid}" if uid else f"{ftj.metadata.name}-config"
    return name if attempt == 1 else f"{name}-{attempt}"


def selector_labels(ftj: FineTuneJob) -> dict[str, str]:
    return {LABEL_NAME: ftj.metadata.name}


def child_labels(ftj: FineTuneJob) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "aidaptiv-finetune",
        "app.kubernetes.io/instance": ftj.metadata.name,
        "app.kubernetes.io/managed-by": "finetune-operator",
        **selector_labels(ftj),
    }
    for key in COPIED_LABELS:
        if key in ftj.metadata.labels:
            labels[key] = ftj.metadata.labels[key]
    return labels


def metadata(ftj: FineTuneJob, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": child_labels(ftj)}
    if ftj.metadata.namespace:
        meta["namespace"] = ftj.metadata.namespace
    if ftj.metadata.uid:
        owner = {"metadata": {"name": ftj.metadata.name, "uid": ftj.metadata.uid}}
        meta["ownerReferences"] = [owner_reference(API_VERSION, KIND, owner)]
    return meta


def owner_reference(api_version: str, kind: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
