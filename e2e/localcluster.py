"""A local Kubernetes control plane for the e2e tests, run as plain processes.

``LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok on 127.0.0.1 (free ports, one work dir per cluster, certificates made with openssl),
then creates fake GPU nodes that kwok keeps Ready. ``Cluster`` is a handle on any cluster
reachable through a kubeconfig (the local one, or e.g. kind through ``E2E_KUBECONFIG``)
with small kubectl helpers for tests; its kwok helpers (fake logs, held or failing pods)
need the local cluster.

Pod lifecycle on the fake nodes (see ``e2e/kwok/stages.yaml``), driven by pod annotations:

* ``e2e.finetune.aidaptiv.io/start-delay``  Pending -> Running after this Go duration.
* ``e2e.finetune.aidaptiv.io/run-duration`` Running -> Succeeded after this duration
  (pods with restartPolicy Never/OnFailure, i.e. Job pods; others stay Running).
* ``e2e.finetune.aidaptiv.io/fail: "true"`` ends Failed instead (``exit-code``, default 1;
  ``fail-message``).
* ``e2e.finetune.aidaptiv.io/hold: "true"`` stays Running until the annotation is removed.

Standard library only (the tests may use more).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from . import build_toolchain

E2E_DIR = Path(__file__).resolve().parent

T = TypeVar("T")

PREFIX = "e2e.finetune.aidaptiv.io"
START_DELAY_ANNOTATION = f"{PREFIX}/start-delay"
RUN_DURATION_ANNOTATION = f"{PREFIX}/run-duration"
FAIL_ANNOTATION = f"{PREFIX}/fail"
EXIT_CODE_ANNOTATION = f"{PREFIX}/exit-code"
FAIL_MESSAGE_ANNOTATION = f"{PREFIX}/fail-message"
HOLD_ANNOTATION = f"{PREFIX}/hold"
#: Label put on cluster-scoped objects a test helper creates for a namespace (for cleanup).
NAMESPACE_LABEL = f"{PREFIX}/namespace"
#: Annotation kwok selects its nodes by.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_PRESENT_LABEL = "phison.com/ai100-present"

#: Selector keys of the namespace lists in the pod stages (see e2e/kwok/stages.yaml).
HOLD_NAMESPACES_KEY = ".metadata.namespace"
FAIL_NAMESPACES_KEY = ".metadata | .namespace"
POD_END_STAGES = ("e2e-pod-complete", "e2e-pod-fail", "e2e-pod-fail-namespace")

ENV_MARKER = "FTO_E2E_CLUSTER_DIR"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """The cluster could not be started, reached or stopped; the message says why."""


class ProcessExited(ClusterError):
    """A process of the cluster exited while it should run (``wait_until`` stops at once)."""


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def clusters_root() -> Path:
    override = os.environ.get("FTO_CLUSTERS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "finetune-operator" / "clusters"


def parse_duration_ms(text: str) -> int:
    """``"3s"``, ``"500ms"``, ``"2m"`` or a bare number of seconds -> milliseconds."""
    text = text.strip()
    units = (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000))
    for suffix, factor in units:
        if text.endswith(suffix) and not (suffix == "s" and text.endswith("ms")):
            return round(float(text[: -len(suffix)]) * factor)
    return round(float(text) * 1000)


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float = 120.0,
    interval: float = 0.5,
    what: str = "condition",
    state: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``.

    ``state`` is called on timeout and its text goes into the error, to show the objects.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            detail = ""
            if state is not None:
                try:
                    detail = "\n" + state()
                except Exception as exc:
                    detail = f"\n(could not get state: {exc})"
            if last_error is not None:
                detail += f"\nlast error: {last_error}"
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------- fake log files


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


# --------------------------------------------------------------------------- manifests

#: Image of test pods: never pulled on kwok nodes, but real for a kind cluster.
DEFAULT_IMAGE = "busybox:1.36"


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


# --------------------------------------------------------------------------- cluster handle


@dataclass
class Cluster:
    """A cluster reachable through ``kubeconfig``, with kubectl helpers.

    ``local`` is True for a cluster made by ``LocalCluster`` (kwok plays the nodes and the
    kwok helpers below work); False for an external one (``E2E_KUBECONFIG``).
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

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]] | str, namespace: str | None = None) -> str:
        """``kubectl apply`` a manifest (dict, list of dicts, or YAML/JSON text)."""
        if isinstance(manifest, list):
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest})
        elif isinstance(manifest, dict):
            text = json.dumps(manifest)
        else:
            text = manifest
        args = ["apply", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        return self.kubectl(*args, input=text).stdout

    def create(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kubectl create`` without raising (so tests can look at a refusal's message)."""
        text = json.dumps(manifest) if isinstance(manifest, dict) else manifest
        args = ["create", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        return self.kubectl(*args, input=text, check=False)

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
            for item in items:
                if item and item.get("status", {}).get("phase") in wanted:
                    return item
            return None

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

    # -- kwok helpers (local cluster only) ------------------------------------------------

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
        path = str(Path(logs_file).resolve())
        entry: dict[str, Any] = {"logsFile": path, "follow": True}
        if containers:
            entry["containers"] = list(containers)
        if previous_logs_file is not None:
            entry["previousLogsFile"] = str(Path(previous_logs_file).resolve())
        if pod:
            obj = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Logs",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"logs": [entry]},
            }
        else:
            name = f"e2e-logs-{namespace}"
            obj = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {"name": name, "labels": {NAMESPACE_LABEL: namespace}},
                "spec": {"selector": {"matchNamespaces": [namespace]}, "logs": [entry]},
            }
        self.apply(obj)
        return str(obj["metadata"]["name"])  # type: ignore[index]

    def _set_namespace_in_stages(self, namespace: str, key: str, present: bool) -> None:
        for stage in POD_END_STAGES:
            for _attempt in range(10):
                obj = self.get_json("stages.kwok.x-k8s.io", stage)
                if obj is None:
                    raise ClusterError(f"kwok Stage {stage} is missing")
                changed = False
                for expr in obj["spec"]["selector"]["matchExpressions"]:
                    if expr.get("key") != key:
                        continue
                    current = list(expr.get("values") or [])
                    wanted = set(current) | {"-"}
                    wanted = wanted | {namespace} if present else wanted - {namespace}
                    if sorted(wanted) != current:
                        expr["values"] = sorted(wanted)
                        changed = True
                if not changed:
                    break
                proc = self.kubectl("replace", "-f", "-", input=json.dumps(obj), check=False)
                if proc.returncode == 0:
                    break
                if "Conflict" not in proc.stderr and "modified" not in proc.stderr:
                    raise ClusterError(f"could not update kwok Stage {stage}: {proc.stderr.strip()}")
            else:
                raise ClusterError(f"could not update kwok Stage {stage}: kept conflicting")

    def touch_pods(self, namespace: str, selector: str | None = None) -> None:
        """Annotate pods so kwok looks at them again (after a stage or hold change)."""
        args = ["annotate", "pods", "--overwrite", "-n", namespace]
        args += ["-l", selector] if selector else ["--all"]
        self.kubectl(*args, f"{PREFIX}/touched={time.time_ns()}", check=False)

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

    def hold_pod(self, namespace: str, pod: str) -> None:
        """Set the hold annotation on a pod (best set in the pod template instead: no race)."""
        self.kubectl("annotate", "pod", "-n", namespace, pod, "--overwrite", f"{HOLD_ANNOTATION}=true")

    def release_pod(self, namespace: str, pod: str | None = None, selector: str | None = None) -> None:
        """Remove the hold annotation from one pod, or from the pods matching ``selector``."""
        target = [pod] if pod else (["-l", selector] if selector else ["--all"])
        self.kubectl("annotate", "pods", "-n", namespace, *target, f"{HOLD_ANNOTATION}-")

    def fake_nodes(self) -> list[dict[str, Any]]:
        data = self.get_json("nodes", "-l", f"{GPU_PRESENT_LABEL}=true")
        return list(data["items"]) if data else []


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


# --------------------------------------------------------------------------- local cluster


@dataclass
class NodeCapacity:
    """Capacity (= allocatable) of each fake node."""

    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    ai100: int = 4
    vgpu: int = 8
    vgpumem: int = 8 * 24576  # MiB: 8 vGPUs of 24 GiB
    vgpumem_percentage: int = 8 * 100

    def resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "phison.com/ai100": str(self.ai100),
            "otterscale.com/vgpu": str(self.vgpu),
            "otterscale.com/vgpumem": str(self.vgpumem),
            "otterscale.com/vgpumem-percentage": str(self.vgpumem_percentage),
        }


@dataclass
class ClusterConfig:
    name: str = "e2e"
    nodes: int = 2
    node_prefix: str = "fake-gpu"
    capacity: NodeCapacity = field(default_factory=NodeCapacity)
    #: Default Pending -> Running delay of a pod (annotation start-delay overrides).
    start_delay: str = "1s"
    #: Default Running -> Succeeded/Failed delay (annotation run-duration overrides).
    run_duration: str = "3s"
    #: Scheduler names served by the kube-scheduler (one profile each).
    scheduler_names: tuple[str, ...] = ("default-scheduler", "hami-scheduler")
    workdir: Path | None = None
    #: Build the toolchain first when a binary is missing.
    build: bool = True
    ready_timeout: float = 180.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _proc_has_marker(pid: int, marker: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def _proc_name(pid: int) -> str:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return ""
    return Path(argv0.decode(errors="replace")).name


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_pki(pki: Path) -> None:
    """CA, apiserver/kwok serving certs, admin and front-proxy client certs, service-account keys."""
    if shutil.which("openssl") is None:
        raise ClusterError("openssl is needed to make the cluster's certificates")
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
        "-subj", "/CN=finetune-operator-e2e-ca", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip
    leaves = {
        "apiserver": (
            "/CN=kube-apiserver",
            "serverAuth",
            "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
        ),
        "kwok": ("/CN=kwok", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
        "admin": ("/O=system:masters/CN=kubernetes-admin", "clientAuth", None),
        "front-proxy-client": ("/CN=front-proxy-client", "clientAuth", None),
    }
    for name, (subject, usage, san) in leaves.items():
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
        ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        ext.append(f"extendedKeyUsage={usage}")
        if san:
            ext.append(f"subjectAltName={san}")
        (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650", "-sha256",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=pki,
        )  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, name: str) -> None:
    ctx = f"fto-{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx, "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": f"{ctx}-admin",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": f"{ctx}-admin"}}],
        "current-context": ctx,
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid YAML


@dataclass
class ProcessRecord:
    name: str
    pid: int
    starttime: str | None
    argv: list[str]
    logfile: str


class LocalCluster:
    """A cluster of plain processes in a work dir; ``up``/``down``/``status``."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.workdir = (self.config.workdir or clusters_root() / self.config.name).resolve()
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.marker = f"{ENV_MARKER}={self.workdir}".encode()
        self.processes: list[ProcessRecord] = []
        self.ports: dict[str, int] = {}

    # -- state ---------------------------------------------------------------------------

    def _save_state(self, phase: str) -> None:
        state = {
            "name": self.config.name,
            "phase": phase,
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(build_toolchain.bin_dir()),
            "versions": build_toolchain.versions(),
            "ports": self.ports,
            "processes": [asdict(p) for p in self.processes],
            "config": {
                "nodes": self.config.nodes,
                "capacity": self.config.capacity.resources(),
                "scheduler_names": list(self.config.scheduler_names),
                "start_delay": self.config.start_delay,
                "run_duration": self.config.run_duration,
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def load_state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return None

    def handle(self) -> Cluster:
        state = self.load_state() or {}
        kubectl = Path(state.get("bin_dir") or build_toolchain.bin_dir()) / "kubectl"
        return Cluster(
            kubeconfig=self.kubeconfig,
            kubectl_bin=str(kubectl),
            local=True,
            name=self.config.name,
            workdir=self.workdir,
        )

    # -- processes -----------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> ProcessRecord:
        self.logs.mkdir(parents=True, exist_ok=True)
        logfile = self.logs / f"{name}.log"
        env = dict(os.environ)
        env[ENV_MARKER] = str(self.workdir)
        env.pop("KUBECONFIG", None)
        env.update(extra_env or {})
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record = ProcessRecord(name, proc.pid, _proc_starttime(proc.pid), argv, str(logfile))
        self.processes.append(record)
        self._save_state("starting")
        log(f"started {name} (pid {proc.pid}, log {logfile})")
        return record

    def _check_running(self, record: ProcessRecord) -> None:
        if not _pid_alive(record.pid):
            tail = "\n".join(Path(record.logfile).read_text(errors="replace").splitlines()[-30:])
            raise ProcessExited(f"{record.name} exited during start-up; last lines of {record.logfile}:\n{tail}")

    def _wait_http(self, record: ProcessRecord, url: str, context: ssl.SSLContext | None, timeout: float) -> None:
        def ok() -> bool:
            self._check_running(record)
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise ClusterError(f"{record.name} not healthy at {url} after {timeout:.0f}s (log {record.logfile})")
            time.sleep(0.3)

    def _admin_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    @staticmethod
    def _insecure_ssl() -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _recorded_pids(self) -> dict[str, int]:
        """Live pids of the processes recorded in state.json (a reused pid is left alone)."""
        pids: dict[str, int] = {}
        state = self.load_state() or {}
        for rec in state.get("processes", []):
            pid = int(rec["pid"])
            if _pid_alive(pid) and rec.get("starttime") in (None, _proc_starttime(pid)):
                pids[str(rec["name"])] = pid
        return pids

    def _our_pids(self) -> list[int]:
        """Pids of processes of this cluster: recorded ones and any carrying our env marker."""
        pids = set(self._recorded_pids().values())
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                pid = int(entry.name)
                if _proc_has_marker(pid, self.marker) and _pid_alive(pid):
                    pids.add(pid)
        return sorted(pids)

    def _stop_all(self) -> None:
        """Stop clients first, then the API server, then etcd (each exits quicker so)."""
        named: dict[int, str] = {pid: name for name, pid in self._recorded_pids().items()}
        for pid in self._our_pids():  # processes found by the env marker: name them by argv[0]
            named.setdefault(pid, _proc_name(pid))
        for group in (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",)):
            self._stop_pids([pid for pid, name in named.items() if name in group])
        self._stop_pids(self._our_pids())

    def _stop_pids(self, pids: Iterable[int], grace: float = 10.0) -> None:
        pids = [p for p in pids if _pid_alive(p)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if _pid_alive(pid):
                log(f"pid {pid} ignored SIGTERM; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)

    # -- public --------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop every process of this cluster (by pid) and remove its work dir."""
        pids = self._our_pids()  # also finds processes whose work dir was removed
        if not self.workdir.exists() and not pids:
            if not quiet:
                log(f"no cluster {self.config.name!r} at {self.workdir}")
            return
        if pids and not quiet:
            log(f"stopping pids {', '.join(map(str, pids))}")
        self._stop_all()
        left = [p for p in self._our_pids() if _pid_alive(p)]
        if left:
            raise ClusterError(f"processes {left} of cluster {self.config.name!r} did not stop")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if not quiet:
            log(f"cluster {self.config.name!r} is down; removed {self.workdir}")

    def is_healthy(self) -> bool:
        state = self.load_state()
        if not state or state.get("phase") != "ready":
            return False
        if not all(_pid_alive(int(p["pid"])) for p in state.get("processes", [])):
            return False
        try:
            url = f"https://127.0.0.1:{state['ports']['apiserver']}/readyz"
            with urllib.request.urlopen(url, context=self._admin_ssl(), timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, KeyError, ssl.SSLError):
            return False

    def up(self, reuse: bool = False) -> Cluster:
        """Start the cluster (replacing any leftover of the same name); return its handle."""
        if reuse and self.is_healthy():
            log(f"cluster {self.config.name!r} is already up; reusing it")
            return self.handle()
        started = time.monotonic()
        if self.workdir.exists() or self._our_pids():
            log(f"removing leftover cluster {self.config.name!r} at {self.workdir}")
            self.down(quiet=True)
        if not build_toolchain.is_built():
            if not self.config.build:
                raise ClusterError("the toolchain is not built: run e2e/cluster build")
            log("toolchain missing: building it first (the first build takes a while)")
            build_toolchain.build()
        bins = build_toolchain.bin_dir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = []
        try:
            self._up(bins)
        except BaseException:
            log("start-up failed; stopping what was started (work dir kept for its logs)")
            self._stop_all()
            with contextlib.suppress(OSError):
                self._save_state("failed")
            raise
        self._save_state("ready")
        log(f"cluster {self.config.name!r} is up in {time.monotonic() - started:.1f}s; kubeconfig {self.kubeconfig}")
        return self.handle()

    def _up(self, bins: Path) -> None:
        cfg = self.config
        make_pki(self.pki)
        names = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok")
        ports: dict[str, int] = {}
        while len(set(ports.values())) < len(names):
            ports = {name: _free_port() for name in names}
        self.ports = ports
        server = f"https://127.0.0.1:{ports['apiserver']}"
        write_kubeconfig(self.kubeconfig, server, self.pki, cfg.name)
        kubeconfig = str(self.kubeconfig)
        pki = self.pki

        etcd_client = f"http://127.0.0.1:{ports['etcd_client']}"
        etcd_peer = f"http://127.0.0.1:{ports['etcd_peer']}"
        etcd = self._start(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=node0",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=node0={etcd_peer}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--log-level=warn",
            ],
        )
        self._wait_http(etcd, f"{etcd_client}/health", None, 60)

        apiserver = self._start(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--endpoint-reconciler-type=none",
                # Front-proxy settings (aggregated APIs; also quiets component warnings).
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-allowed-names=front-proxy-client",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        self._wait_http(apiserver, f"{server}/readyz", self._admin_ssl(), cfg.ready_timeout)

        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--profiling=false",
        ]
        kcm = self._start(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                *common,
                f"--secure-port={ports['controller_manager']}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
            ],
        )
        # One kube-scheduler serving several scheduler names (profiles), so pods asking for
        # e.g. "hami-scheduler" (the chart's default) are scheduled too.
        profiles = "".join(f"- schedulerName: {json.dumps(n)}\n" for n in cfg.scheduler_names)
        scheduler_config = self.workdir / "kube-scheduler.yaml"
        scheduler_config.write_text(
            "apiVersion: kubescheduler.config.k8s.io/v1\n"
            "kind: KubeSchedulerConfiguration\n"
            f"clientConnection:\n  kubeconfig: {json.dumps(kubeconfig)}\n  qps: 200\n  burst: 400\n"
            "leaderElection:\n  leaderElect: false\n"
            f"profiles:\n{profiles}"
        )
        scheduler = self._start(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--config={scheduler_config}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
            ],
        )

        client = self.handle()
        client.kubectl_bin = str(bins / "kubectl")
        # kwok's CRDs (Stage, Logs, ClusterLogs) and the stages, before kwok starts.
        crds = build_toolchain.share_dir() / "kwok-crds"
        for crd in sorted(crds.glob("*.yaml")):
            client.kubectl("apply", "--server-side", "-f", str(crd))
        client.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        stages = (E2E_DIR / "kwok" / "stages.yaml").read_text()
        stages = stages.replace("@@START_DELAY_MS@@", str(parse_duration_ms(cfg.start_delay)))
        stages = stages.replace("@@RUN_DURATION_MS@@", str(parse_duration_ms(cfg.run_duration)))
        (self.workdir / "stages.yaml").write_text(stages)
        client.kubectl("apply", "-f", str(self.workdir / "stages.yaml"))
        # kwok reads ~/.kwok/kwok.yaml when it exists (and then skips its defaults): give it
        # an empty home so a user's file cannot change the cluster.
        kwok_home = self.workdir / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        kwok = self._start(
            "kwok",
            [
                str(bins / "kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                "--node-name=localhost",
                f"--node-port={ports['kwok']}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--tls-cert-file={pki / 'kwok.crt'}",
                f"--tls-private-key-file={pki / 'kwok.key'}",
                "--enable-crds=Stage,Logs,ClusterLogs",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.1/16",
            ],
            extra_env={"HOME": str(kwok_home)},
        )
        insecure = self._insecure_ssl()
        self._wait_http(kcm, f"https://127.0.0.1:{ports['controller_manager']}/healthz", insecure, 60)
        self._wait_http(scheduler, f"https://127.0.0.1:{ports['scheduler']}/healthz", insecure, 60)
        self._wait_http(kwok, f"https://127.0.0.1:{ports['kwok']}/healthz", insecure, 60)

        client.apply(self.node_manifests())
        want = cfg.nodes

        def nodes_ready() -> bool:
            for rec in self.processes:
                self._check_running(rec)
            data = client.get_json("nodes", "-l", f"{GPU_PRESENT_LABEL}=true")
            ready = [
                n
                for n in (data or {}).get("items", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
            ]
            return len(ready) >= want

        wait_until(
            nodes_ready,
            timeout=cfg.ready_timeout,
            what=f"{want} Ready fake nodes",
            state=lambda: client.kubectl("get", "nodes", "-o", "wide", check=False).stdout,
        )
        # The service-account controller runs: namespaces get their "default" ServiceAccount.
        wait_until(
            lambda: client.get_json("serviceaccount", "default", "-n", "default"),
            timeout=cfg.ready_timeout,
            what="ServiceAccount default/default",
        )

    def node_manifests(self) -> list[dict[str, Any]]:
        resources = self.config.capacity.resources()
        nodes = []
        for i in range(self.config.nodes):
            name = f"{self.config.node_prefix}-{i}"
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            GPU_PRESENT_LABEL: "true",
                        },
                    },
                    "spec": {},
                    "status": {"capacity": dict(resources), "allocatable": dict(resources)},
                }
            )
        return nodes

    def status(self) -> dict[str, Any]:
        """What is known about this cluster: processes alive, API ready, nodes."""
        state = self.load_state()
        if state is None:
            return {"name": self.config.name, "exists": self.workdir.exists(), "running": False}
        procs = {p["name"]: {"pid": p["pid"], "alive": _pid_alive(int(p["pid"]))} for p in state["processes"]}
        healthy = self.is_healthy()
        info: dict[str, Any] = {
            "name": state["name"],
            "phase": state["phase"],
            "workdir": state["workdir"],
            "kubeconfig": state["kubeconfig"],
            "api": f"https://127.0.0.1:{state['ports'].get('apiserver')}",
            "processes": procs,
            "api_ready": healthy,
            "running": healthy,
        }
        if healthy:
            nodes = self.handle().fake_nodes()
            info["nodes"] = [
                {"name": n["metadata"]["name"], "allocatable": n["status"].get("allocatable", {})} for n in nodes
            ]
        return info


def reap_stale_clusters(prefix: str = "pytest-") -> list[str]:
    """Tear down clusters named ``<prefix><pid>`` whose owning process ``pid`` is gone.

    Test sessions name their cluster after their own pid, so concurrent sessions do not
    share one, and a session killed before its teardown is cleaned up by the next one.
    """
    reaped: list[str] = []
    root = clusters_root()
    if not root.is_dir():
        return reaped
    for workdir in sorted(root.iterdir()):
        owner = workdir.name.removeprefix(prefix)
        if workdir.name.startswith(prefix) and owner.isdigit() and not _pid_alive(int(owner)):
            log(f"reaping leftover cluster {workdir.name!r} (its pytest process {owner} is gone)")
            LocalCluster(ClusterConfig(name=workdir.name, workdir=workdir)).down(quiet=True)
            reaped.append(workdir.name)
    return reaped


@contextlib.contextmanager
def running_cluster(config: ClusterConfig | None = None) -> Iterator[Cluster]:
    """``with running_cluster() as cluster:`` brings a local cluster up and down."""
    local = LocalCluster(config)
    cluster = local.up()
    try:
        yield cluster
    finally:
        local.down()
