"""Test inputs for pods on fake nodes: CRI log files kwok serves, and plain Job manifests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

#: Image of test pods: never pulled on kwok nodes, but real for a kind cluster.
DEFAULT_IMAGE = "busybox:1.36"


def cri_log_lines(text: str, stream: str = "stdout", when: datetime | None = None) -> str:
    """Format ``text`` as CRI log lines, the format kwok's log server reads.

    kwok serves ``kubectl logs`` through the kubelet's CRI log reader, so each line of a
    fake log file must look like ``2026-01-02T03:04:05.000000000Z stdout F message``;
    ``kubectl logs`` then returns only the messages.
    """
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    lines = text.splitlines() or [""]
    return "".join(f"{stamp} {stream} F {line}\n" for line in lines)


def append_log(path: str | os.PathLike[str], text: str, stream: str = "stdout") -> None:
    """Append ``text`` (one or more lines) to a fake container log file in CRI format."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(cri_log_lines(text, stream))
        handle.flush()


def job_manifest(
    name: str,
    resources: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ttl: int | None = None,
    backoff_limit: int = 0,
    image: str = DEFAULT_IMAGE,
    command: Sequence[str] = ("sh", "-c", "echo done"),
) -> dict[str, Any]:
    """A one-pod batch/v1 Job; ``resources`` go to requests and limits, ``annotations`` to the pod."""
    limits = dict(resources or {})
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {
            "metadata": {"annotations": dict(annotations or {})},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "command": list(command),
                        "resources": {"requests": dict(limits), "limits": dict(limits)},
                    }
                ],
            },
        },
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}
