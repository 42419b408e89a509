"""kwok helpers of ``Cluster``: fake logs, held and failing pods (local cluster only).

Pods made by the operator cannot carry test annotations, so holds and failures also work per
namespace, by editing the namespace lists of kwok's Stage objects (see e2e/kwok/stages.yaml).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import (
    FAIL_NAMESPACES_KEY,
    GPU_PRESENT_LABEL,
    HOLD_ANNOTATION,
    HOLD_NAMESPACES_KEY,
    NAMESPACE_LABEL,
    POD_END_STAGES,
    PREFIX,
    ClusterError,
)
from .nodeconfig import NODE_KIND_LABEL

#: A kubelet's default --sync-frequency: how often it looks at each of its pods again, events or not.
KUBELET_SYNC_SECONDS = 60.0


class KwokHelpers:
    """Mixed into ``Cluster``; uses its kubectl helpers."""

    if TYPE_CHECKING:
        local: bool
        kubeconfig: Path

        def kubectl(
            self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
        ) -> subprocess.CompletedProcess[str]: ...

        def get_json(self, *args: str) -> Any: ...

        def apply(self, manifest: dict[str, Any] | list[dict[str, Any]] | str, namespace: str | None = None) -> str: ...

    def _require_local(self, what: str) -> None:
        if not self.local:
            raise ClusterError(f"{what} needs the local kwok cluster (e2e/cluster), not {self.kubeconfig}")

    def fake_logs(
        self,
        namespace: str,
        logs_file: str | os.PathLike[str],
        pod: str | None = None,
        containers: Sequence[str] = (),
        previous_logs_file: str | os.PathLike[str] | None = None,
    ) -> str:
        """Make ``kubectl logs`` of pods on fake nodes return ``logs_file``.

        With ``pod``: a kwok ``Logs`` object for that pod (named like it, in its namespace).
        Without: a ``ClusterLogs`` object for every pod of ``namespace`` (deleted with the
        namespace by ``delete_namespace``). ``containers`` limits it to those containers.
        The file must be in CRI log format: write it with ``append_log``. kwok reads the
        file at each request, so lines appended later show up on the next read.
        Returns the name of the object made.
        """
        self._require_local("fake_logs")
        entry: dict[str, Any] = {"logsFile": str(Path(logs_file).resolve()), "follow": True}
        if containers:
            entry["containers"] = list(containers)
        if previous_logs_file is not None:
            entry["previousLogsFile"] = str(Path(previous_logs_file).resolve())
        obj = _pod_logs(namespace, pod, entry) if pod else _namespace_logs(namespace, entry)
        self.apply(obj)
        return str(obj["metadata"]["name"])

    def _set_namespace_in_stages(self, namespace: str, key: str, present: bool) -> None:
        for stage in POD_END_STAGES:
            self._set_namespace_in_stage(stage, namespace, key, present)

    def _set_namespace_in_stage(self, stage: str, namespace: str, key: str, present: bool) -> None:
        for _attempt in range(10):  # kwok and other tests write the same Stage: retry conflicts
            obj = self.get_json("stages.kwok.x-k8s.io", stage)
            if obj is None:
                raise ClusterError(f"kwok Stage {stage} is missing")
            if not _edit_namespace_list(obj, namespace, key, present):
                return
            proc = self.kubectl("replace", "-f", "-", input=json.dumps(obj), check=False)
            if proc.returncode == 0:
                return
            if "Conflict" not in proc.stderr and "modified" not in proc.stderr:
                raise ClusterError(f"could not update kwok Stage {stage}: {proc.stderr.strip()}")
        raise ClusterError(f"could not update kwok Stage {stage}: kept conflicting")

    def touch_pods(self, namespace: str, selector: str | None = None) -> None:
        """Annotate pods so kwok looks at them again (after a stage or hold change)."""
        args = ["annotate", "pods", "--overwrite", "-n", namespace]
        args += ["-l", selector] if selector else ["--all"]
        self.kubectl(*args, f"{PREFIX}/touched={time.time_ns()}", check=False)

    def sync_stuck_pods(self, namespace: str, after: float = KUBELET_SYNC_SECONDS) -> list[str]:
        """Do for pods stuck on fake nodes what a kubelet's periodic sync does for its pods: look again.

        kwok (v0.8.0, pod_controller.go playStage/shouldRetry) retries a stage only after a refused
        connection, a timeout, 503 or 429; any other error while the API server or etcd is killed (500,
        a reset connection) drops the stage, and the pod stays Pending until it changes again. A
        kubelet would sync it again within its --sync-frequency (1 minute by default). Touches the
        scheduled pods of ``namespace`` Pending for longer than ``after`` seconds; returns their names."""
        fake = {node["metadata"]["name"] for node in self.fake_nodes()}
        data = self.get_json("pods", "-n", namespace)
        now = datetime.now(UTC)
        stuck = [
            pod["metadata"]["name"]
            for pod in (data or {}).get("items", [])
            if (pod.get("status") or {}).get("phase") == "Pending"
            and (pod.get("spec") or {}).get("nodeName") in fake
            and (now - _scheduled_at(pod)).total_seconds() > after
        ]
        for name in stuck:
            self.kubectl("annotate", "pod", name, "-n", namespace, "--overwrite", f"{PREFIX}/synced={time.time_ns()}")
        return stuck

    def hold_namespace(self, namespace: str) -> None:
        """Keep every pod of ``namespace`` Running (no completion) until ``release_namespace``.

        Call it before the pods start running: a completion kwok already queued still happens.
        """
        self._require_local("hold_namespace")
        self._set_namespace_in_stages(namespace, HOLD_NAMESPACES_KEY, present=True)

    def release_namespace(self, namespace: str) -> None:
        """Let the pods of ``namespace`` finish (after their run duration from now)."""
        self._require_local("release_namespace")
        self._set_namespace_in_stages(namespace, HOLD_NAMESPACES_KEY, present=False)
        self.touch_pods(namespace)

    def fail_namespace(self, namespace: str, fail: bool = True) -> None:
        """Make every Job pod of ``namespace`` end Failed (exit code 1) instead of Succeeded."""
        self._require_local("fail_namespace")
        self._set_namespace_in_stages(namespace, FAIL_NAMESPACES_KEY, present=fail)
        self.touch_pods(namespace)

    def release_pod(self, namespace: str, pod: str | None = None, selector: str | None = None) -> None:
        """Remove the hold annotation from one pod, or from the pods matching ``selector``."""
        target = [pod] if pod else (["-l", selector] if selector else ["--all"])
        self.kubectl("annotate", "pods", "-n", namespace, *target, f"{HOLD_ANNOTATION}-")

    def fake_nodes(self) -> list[dict[str, Any]]:
        """The nodes with fake GPUs: kwok's (a real node of e2e/realnode.py is not one of them)."""
        data = self.get_json("nodes", "-l", f"{GPU_PRESENT_LABEL}=true,{NODE_KIND_LABEL}!=real")
        return list(data["items"]) if data else []


def _pod_logs(namespace: str, pod: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Logs",
        "metadata": {"name": pod, "namespace": namespace},
        "spec": {"logs": [entry]},
    }


def _namespace_logs(namespace: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": f"e2e-logs-{namespace}", "labels": {NAMESPACE_LABEL: namespace}},
        "spec": {"selector": {"matchNamespaces": [namespace]}, "logs": [entry]},
    }


def _edit_namespace_list(stage: dict[str, Any], namespace: str, key: str, present: bool) -> bool:
    """Add or remove ``namespace`` in the Stage's list under ``key``; True if it changed.

    The lists always keep "-" (no namespace has that name), so they are never empty.
    """
    changed = False
    for expr in stage["spec"]["selector"]["matchExpressions"]:
        if expr.get("key") != key:
            continue
        current = list(expr.get("values") or [])
        wanted = set(current) | {"-"}
        wanted = wanted | {namespace} if present else wanted - {namespace}
        if sorted(wanted) != current:
            expr["values"] = sorted(wanted)
            changed = True
    return changed


def _scheduled_at(pod: dict[str, Any]) -> datetime:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("lastTransitionTime"):
            return datetime.fromisoformat(str(condition["lastTransitionTime"]).replace("Z", "+00:00"))
    return datetime.now(UTC)
