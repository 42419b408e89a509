"""Which pod of a Job carries the training, and what its container said when it ended."""

from __future__ import annotations

from typing import Any

from finetune_operator.api.base import TRAINER_CONTAINER

STARTED_PHASES = ("Running", "Succeeded", "Failed")


def training_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest started pod of the Job (a retry replaces the one before)."""
    candidates = [p for p in pods if (p.get("status") or {}).get("phase") in STARTED_PHASES]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def termination_message(pod: dict[str, Any] | None) -> str | None:
    """The entrypoint's summary in the trainer container's termination message, if it ended."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != TRAINER_CONTAINER:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated and terminated.get("message"):
                return str(terminated["message"])
    return None


def slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a pod: enough to choose the training pod and read its end."""
    return {
        "metadata": {k: body["metadata"].get(k) for k in ("name", "creationTimestamp", "uid")},
        "status": {k: (body.get("status") or {}).get(k) for k in ("phase", "containerStatuses")},
    }
