"""``Cluster``: a handle on any cluster reachable through a kubeconfig, with kubectl helpers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import build_toolchain
from .common import FAIL_NAMESPACES_KEY, HOLD_NAMESPACES_KEY, NAMESPACE_LABEL, ClusterError, wait_until
from .kwok_helpers import KwokHelpers

T = TypeVar("T")

Manifest = dict[str, Any] | list[dict[str, Any]] | str


@dataclass
class Cluster(KwokHelpers):
    """A cluster reachable through ``kubeconfig``, with kubectl helpers.

    ``local`` is True for a cluster made by ``LocalCluster`` (kwok plays the nodes and the
    kwok helpers work); False for an external one (``E2E_KUBECONFIG``).
    """

    kubeconfig: Path
    kubectl_bin: str = "kubectl"
    local: bool = False
    name: str = "external"
    workdir: Path | None = None

    # -- kubectl -------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise ClusterError with stderr if it fails."""
        argv = [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig)]
        if self.workdir is not None:  # keep discovery caches of throwaway clusters out of ~/.kube
            argv.append(f"--cache-dir={self.workdir / 'kube-cache'}")
        argv += args
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr.strip() or proc.stdout}"
            )
        return proc

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json`` parsed; None if the object does not exist."""
        proc = self.kubectl("get", *args, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise ClusterError(f"kubectl get {' '.join(args)} failed:\n{proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def apply(self, manifest: Manifest, namespace: str | None = None) -> str:
        """``kubectl apply`` a manifest (dict, list of dicts, or YAML/JSON text)."""
        args = ["apply", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        return self.kubectl(*args, input=_manifest_text(manifest)).stdout

    def create(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kubectl create`` without raising (so tests can look at a refusal's message)."""
        args = ["create", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        return self.kubectl(*args, input=_manifest_text(manifest), check=False)

    def describe(self, *args: str) -> str:
        """``kubectl describe`` text (for failure messages); never raises."""
        proc = self.kubectl("describe", *args, check=False)
        return proc.stdout or proc.stderr

    def events(self, namespace: str) -> list[dict[str, Any]]:
        data = self.get_json("events", "-n", namespace)
        return list(data["items"]) if data else []

    def wait_for(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        timeout: float = 120.0,
        interval: float = 0.5,
        state: Callable[[], str] | None = None,
    ) -> T:
        return wait_until(check, timeout=timeout, interval=interval, what=what, state=state)

    # -- workloads -----------------------------------------------------------------------

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        data = self.get_json(*args)
        return list(data["items"]) if data else []

    def job_finished(self, namespace: str, name: str) -> str | None:
        """Return "Complete" or "Failed" once the Job has that condition True, else None."""
        job = self.get_json("job", name, "-n", namespace)
        for cond in (job or {}).get("status", {}).get("conditions", []):
            if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                return str(cond["type"])
        return None

    def wait_job_finished(self, namespace: str, name: str, timeout: float = 120.0) -> str:
        """Wait for the Job to be Complete or Failed; return which."""
        return self.wait_for(
            lambda: self.job_finished(namespace, name),
            what=f"Job {namespace}/{name} to finish",
            timeout=timeout,
            state=lambda: self.namespace_state(namespace),
        )

    def wait_pod_phase(
        self,
        namespace: str,
        phases: Iterable[str],
        selector: str | None = None,
        pod: str | None = None,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Wait for a pod (by name, or the first matching ``selector``) in one of ``phases``."""
        wanted = set(phases)

        def check() -> dict[str, Any] | None:
            items = [self.get_json("pod", pod, "-n", namespace)] if pod else self.pods(namespace, selector)
            return next((i for i in items if i and i.get("status", {}).get("phase") in wanted), None)

        return self.wait_for(
            check,
            what=f"pod {pod or selector or '*'} in {namespace} to be {'/'.join(sorted(wanted))}",
            timeout=timeout,
            state=lambda: self.namespace_state(namespace),
        )

    def namespace_state(self, namespace: str) -> str:
        """Jobs, pods and events of a namespace as text (for failure messages)."""
        parts = [
            self.kubectl("get", "jobs,pods", "-n", namespace, "-o", "wide", check=False).stdout,
            self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout,
        ]
        return "\n".join(p for p in parts if p)

    def wait_established(self, *crds: str, timeout: float = 60.0) -> None:
        """Wait until these CRDs (names; none: every CRD) are Established. Not `kubectl wait`: it fails at
        once on a CRD so new that it has no conditions yet ("<nil> is of the type <nil>"), seen in CI."""

        def established() -> bool | None:
            found = [self.get_json("crd", name) for name in crds] if crds else self.get_json("crd")["items"]
            done = all(
                any(c.get("type") == "Established" and c.get("status") == "True" for c in _conditions_of(crd))
                for crd in found
            )
            return True if done else None

        self.wait_for(established, what=f"CRDs {', '.join(crds) or '(all)'} Established", timeout=timeout)

    def stuck_report(self, namespace: str, names: Iterable[str], log_lines: int = 40) -> str:
        """Why these FineTuneJobs are behind, object by object: each one's status and conditions, its
        Job's spec.suspend, status and conditions, its pods, the Events of all of them, and the
        kube-controller-manager's log lines that name the Job (for a wait's timeout message)."""
        events = self.events(namespace)
        return "\n".join(self._stuck_one(namespace, name, events, log_lines) for name in names)

    def _stuck_one(self, namespace: str, name: str, events: list[dict[str, Any]], log_lines: int) -> str:
        ftj = self.get_json("finetunejob", name, "-n", namespace) or {}
        job = self.get_json("job", name, "-n", namespace) or {}
        pods = self.pods(namespace, f"finetune.aidaptiv.io/name={name}")
        uids = {o["metadata"]["uid"] for o in (ftj, job, *pods) if o.get("metadata")}
        told = [
            f"    {e.get('lastTimestamp') or e.get('eventTime')} {e['involvedObject'].get('kind')} "
            f"{e.get('type')} {e.get('reason')}: {e.get('message')} [{e['metadata'].get('name')}]"
            for e in sorted(events, key=lambda e: int(e["metadata"].get("resourceVersion") or 0))
            if e["involvedObject"].get("uid") in uids
        ]
        pod_lines = [
            f"    {p['metadata']['name']} uid={p['metadata']['uid']} phase={p.get('status', {}).get('phase')} "
            f"node={p.get('spec', {}).get('nodeName')} conditions={_conditions(p)}"
            for p in pods
        ]
        job_line = "  Job: none"
        if job:
            job_line = (
                f"  Job: uid={job['metadata'].get('uid')} suspend={job.get('spec', {}).get('suspend')} "
                f"status={json.dumps(job.get('status'), sort_keys=True)}"
            )
        controller_lines = self.component_log_lines("kube-controller-manager", f"{namespace}/{name}")[-log_lines:]
        kwok_lines = [
            line for pod in pods for line in self.component_log_lines("kwok", pod["metadata"]["name"])[-log_lines:]
        ]
        lines = [
            f"--- FineTuneJob {namespace}/{name}: status {json.dumps(ftj.get('status'), sort_keys=True)}",
            job_line,
            "  pods:" if pods else "  pods: none",
            *pod_lines,
            "  events:" if told else "  events: none",
            *told,
            f"  kube-controller-manager on {namespace}/{name}:" if controller_lines else "  kube-controller-manager: -",
            *(f"    {line}" for line in controller_lines),
            "  kwok on its pods:" if kwok_lines else "  kwok: -",
            *(f"    {line}" for line in kwok_lines),
        ]
        return "\n".join(lines)

    def component_log_lines(self, component: str, needle: str) -> list[str]:
        """Lines of a local cluster component's log that contain ``needle`` (none on an external cluster)."""
        if self.workdir is None:
            return []
        path = self.workdir / "logs" / f"{component}.log"
        if not path.exists():
            return []
        with path.open(errors="replace") as text:
            return [line.rstrip("\n") for line in text if needle in line]

    # -- namespaces ----------------------------------------------------------------------

    def create_namespace(self, name: str | None = None, labels: dict[str, str] | None = None) -> str:
        """Create a namespace (unique name by default) and wait for its default ServiceAccount."""
        name = name or f"e2e-{uuid.uuid4().hex[:8]}"
        meta: dict[str, Any] = {"name": name, "labels": {NAMESPACE_LABEL: name, **(labels or {})}}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        # Pods are refused until the service-account controller made "default".
        wait_until(
            lambda: self.get_json("serviceaccount", "default", "-n", name),
            timeout=60,
            what=f"ServiceAccount default in namespace {name}",
        )
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        """Delete a namespace and the cluster-scoped helpers made for it (ClusterLogs, holds)."""
        if self.local:
            self.kubectl("delete", "clusterlogs", "-l", f"{NAMESPACE_LABEL}={name}", "--ignore-not-found", check=False)
            with contextlib.suppress(ClusterError):
                self._set_namespace_in_stages(name, HOLD_NAMESPACES_KEY, present=False)
                self._set_namespace_in_stages(name, FAIL_NAMESPACES_KEY, present=False)
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}", check=False)


def _conditions_of(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def _conditions(obj: dict[str, Any]) -> list[str]:
    return [f"{c.get('type')}={c.get('status')}" for c in _conditions_of(obj)]


def _manifest_text(manifest: Manifest) -> str:
    if isinstance(manifest, list):
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest})
    return json.dumps(manifest) if isinstance(manifest, dict) else manifest


def find_kubectl() -> str:
    """The kubectl built with the toolchain, else the one on PATH."""
    built = build_toolchain.bin_dir() / "kubectl"
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    if not found:
        raise ClusterError("no kubectl: run e2e/cluster build")
    return found


def external_cluster(kubeconfig: str | os.PathLike[str]) -> Cluster:
    """Handle on an existing cluster (e.g. kind); kwok helpers work if it is a local one."""
    path = Path(kubeconfig).expanduser().resolve()
    if not path.exists():
        raise ClusterError(f"kubeconfig {path} does not exist")
    cluster = Cluster(kubeconfig=path, kubectl_bin=find_kubectl())
    # A kubeconfig of an e2e/cluster cluster lives in its work dir next to state.json.
    state = path.parent / "state.json"
    if state.exists():
        cluster.local = True
        cluster.workdir = path.parent
        cluster.name = json.loads(state.read_text()).get("name", "local")
    return cluster
