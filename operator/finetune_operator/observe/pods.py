"""Which pod of a Job carries the training, and what its container said when it ended; and what the
operator keeps of the objects it watches (only what it reads: the rest is memory thousands of times)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from finetune_operator.api.base import LOADER_CONTAINER, TRAINER_CONTAINER
from finetune_operator.observe.containers import ends

STARTED_PHASES = ("Running", "Succeeded", "Failed")
# Set by the Job controller on each pod of an Indexed Job: the rank, with numNodes > 1.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def rank_of(pod: dict[str, Any]) -> int | None:
    index = ((pod.get("metadata") or {}).get("labels") or {}).get(COMPLETION_INDEX)
    return int(index) if isinstance(index, str) and index.isdigit() and len(index) < 4 else None


def training_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose log tells the training's progress: the newest started one (a retry replaces the
    one before), of rank 0 when there are ranks (rank 0 speaks for the group)."""
    candidates = [p for p in pods if (p.get("status") or {}).get("phase") in STARTED_PHASES]
    if any(rank_of(p) is not None for p in candidates):
        candidates = [p for p in candidates if rank_of(p) == 0]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p["metadata"].get("creationTimestamp") or "")


# Why a container can wait for ever: what the kubelet says of an image or a config it cannot use.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


def waiting_on(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first container of a pending pod that waits on what it cannot get (an
    image that does not exist, a missing Secret): the kubelet retries for ever, so nothing else says so."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            continue
        for kind in ("initContainerStatuses", "containerStatuses"):
            for container in status.get(kind) or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                if reason in STUCK_REASONS:
                    said = str(waiting.get("message") or reason)[:1000]
                    return reason, f"container {container.get('name')} cannot start: {said}"
    return None


def newest_phase(pods: list[dict[str, Any]]) -> str | None:
    """The phase of the newest of these pods (a retry's replacement is newer than the pod it replaces)."""
    if not pods:
        return None
    newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return (newest.get("status") or {}).get("phase")


def _terminated(
    pod: dict[str, Any], kind: str = "containerStatuses", name: str = TRAINER_CONTAINER
) -> dict[str, Any] | None:
    found = ends(pod, name, kind)
    return found[0] if found else None


def _ended(pod: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The container whose end ended the pod: the trainer, or the model copy that failed before it."""
    loader = _terminated(pod, "initContainerStatuses", LOADER_CONTAINER)
    if loader is not None and loader.get("exitCode") not in (0, None):
        return LOADER_CONTAINER, loader
    return TRAINER_CONTAINER, _terminated(pod)


@dataclass(frozen=True)
class RankFailure:
    """The rank that failed first, and how."""

    rank: int
    exit_code: int | None
    message: str | None  # the entrypoint's termination message (the model copy's last words)
    container: str = TRAINER_CONTAINER

    def describe(self) -> str:
        code = "" if self.exit_code is None else f" (exit code {self.exit_code})"
        who = "" if self.container == TRAINER_CONTAINER else f"'s {self.container}"
        return f"rank {self.rank}{who} failed first{code}"


def first_failed_rank(pods: list[dict[str, Any]]) -> RankFailure | None:
    """Of the ranks whose pod failed, the first to end: the cause; the others were ended with it."""
    failed = []
    for pod in pods:
        rank = rank_of(pod)
        container, terminated = _ended(pod)
        if rank is None or (pod.get("status") or {}).get("phase") != "Failed":
            continue
        finished = (terminated or {}).get("finishedAt") or "~"  # unknown times sort last
        failed.append((finished, rank, container, terminated or {}))
    if not failed:
        return None
    _, rank, container, terminated = min(failed, key=lambda item: item[:2])
    code = terminated.get("exitCode")
    message = terminated.get("message")
    return RankFailure(rank, code if isinstance(code, int) else None, message, container)


def termination_message(pod: dict[str, Any] | None) -> str | None:
    """The entrypoint's summary in the trainer container's termination message, if it ended."""
    said = [str(terminated["message"]) for terminated in ends(pod, TRAINER_CONTAINER) if terminated.get("message")]
    return said[0] if said else None


def slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a pod: enough to choose the training pod, know its rank, read its end."""
    rank = (body["metadata"].get("labels") or {}).get(COMPLETION_INDEX)
    owners = body["metadata"].get("ownerReferences") or []
    return {
        "metadata": {
            **{k: body["metadata"].get(k) for k in ("name", "creationTimestamp", "uid")},
            "labels": {} if rank is None else {COMPLETION_INDEX: rank},
            # Its controller only: whether it is the Job's own pod, not one that merely has our labels.
            "ownerReferences": [
                {k: ref.get(k) for k in ("kind", "name", "uid", "controller")}
                for ref in owners
                if ref.get("controller")
            ],
        },
        "status": {
            k: (body.get("status") or {}).get(k) for k in ("phase", "containerStatuses", "initContainerStatuses")
        },
    }


# Annotations the operator reads on a Job; a FineTuneJob's kubectl last-applied copy is never read.
_JOB_ANNOTATIONS = ("finetune.aidaptiv.io/requested-suspend", "finetune.aidaptiv.io/attempt")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_job(body: Any) -> dict[str, Any]:
    """A Job as the controller reads it: identity, owners, our annotations, the counts that matter."""
    metadata, spec = body["metadata"], body.get("spec") or {}
    annotations = metadata.get("annotations") or {}
    return {
        "metadata": {
            **{k: metadata.get(k) for k in ("name", "namespace", "uid", "creationTimestamp", "labels")},
            "ownerReferences": [dict(ref) for ref in metadata.get("ownerReferences") or []],
            "annotations": {k: annotations[k] for k in _JOB_ANNOTATIONS if k in annotations},
        },
        "spec": {k: spec.get(k) for k in ("suspend", "parallelism", "completions")},
        "status": _plain(body.get("status") or {}),
    }


def slim_body(body: Any) -> dict[str, Any]:
    """A FineTuneJob without its managedFields and kubectl's last-applied copy of itself."""
    plain: dict[str, Any] = _plain(body)
    metadata = plain["metadata"]
    metadata.pop("managedFields", None)
    if _LAST_APPLIED in (metadata.get("annotations") or {}):
        metadata["annotations"] = {k: v for k, v in metadata["annotations"].items() if k != _LAST_APPLIED}
    return plain


# A spec up to this size (as JSON) is kept with the FineTuneJob's body between passes; a larger one
# (up to the API server's object limit) is read again when a pass needs it: what the operator holds per
# FineTuneJob stays bounded whatever users store.
SPEC_KEPT_BYTES = 64 * 1024


def thin_body(body: Any) -> dict[str, Any]:
    """slim_body, without a spec larger than SPEC_KEPT_BYTES."""
    slim = slim_body(body)
    if "spec" in slim and len(json.dumps(slim["spec"], separators=(",", ":"))) > SPEC_KEPT_BYTES:
        del slim["spec"]
    return slim


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (kopf hands out read-only views)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
