"""The real peer beside a local cluster: Kubeflow Trainer v2 and JobSet, what a platform team would run
instead of the operator (TrainJob -> JobSet -> Jobs), their managers built from the Go module proxy by
e2e/build_toolchain.py and run as processes on 127.0.0.1.

The managers run on the host, as the API server does, so their webhooks are registered by URL
(``https://127.0.0.1:<port>/<path>``) with a certificate of the cluster's CA for 127.0.0.1 (``pki/peer.crt``).
Only the peer's own kinds go through them, and pods only where they belong to a JobSet (the
``objectSelector`` of JobSet's own kustomize patch): no other test's object meets them. Leader election
and the managers' own certificate management are off; health and metrics listen on 127.0.0.1.

JobSet reads its certificate from the ``webhook.certDir`` of its configuration. Trainer has no such option:
controller-runtime's default ``$TMPDIR/k8s-webhook-server/serving-certs`` is used, so Trainer runs with a
TMPDIR of its own holding the certificate.

``ClusterTrainingRuntime`` ``RUNTIME``: one node whose pod asks for 1 ``phison.com/ai100``, the resource the
local cluster's kwok GPU nodes advertise, so a TrainJob's pod is scheduled and run there as the
operator's pods are.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import build_toolchain, processes
from .commands import Component
from .common import ClusterError, log
from .controlplane import LocalCluster
from .handle import Cluster
from .pki import serving_certificate

TRAINER = "trainer.kubeflow.org"
TRAINER_VERSION = f"{TRAINER}/v1alpha1"
JOBSET_VERSION = "jobset.x-k8s.io/v1alpha2"
AI100 = "phison.com/ai100"
#: The runtime every TrainJob of the tests and the bench refers to.
RUNTIME = "fto-ai100"
#: The label JobSet puts on its pods; its pod webhooks see only pods that carry it.
JOBSET_POD_LABEL = "jobset.sigs.k8s.io/jobset-name"
#: (manager, kind) -> the name of its webhook configuration in the cluster.
WEBHOOK_CONFIGURATIONS = {
    ("jobset", "MutatingWebhookConfiguration"): "fto-e2e-peer-jobset-mutating",
    ("jobset", "ValidatingWebhookConfiguration"): "fto-e2e-peer-jobset-validating",
    ("trainer", "MutatingWebhookConfiguration"): "fto-e2e-peer-trainer-mutating",
    ("trainer", "ValidatingWebhookConfiguration"): "fto-e2e-peer-trainer-validating",
}
#: The peer's own API groups; pods ("") only of JobSets.
KEPT_GROUPS = {"jobset": ("jobset.x-k8s.io", ""), "trainer": (TRAINER,)}
#: The binary of each manager in the toolchain's bin dir.
BINARIES = {"jobset": "jobset", "trainer": "trainer-controller-manager"}


@dataclass(frozen=True)
class Ports:
    webhook: int
    health: int
    metrics: int


def jobset_config(ports: Ports, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.metrics}"},
    }


def trainer_config(ports: Ports) -> dict[str, Any]:
    return {
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.metrics}", "secureServing": False},
    }


def webhook_configurations(
    manager: str, shipped: list[dict[str, Any]], port: int, ca_bundle: str
) -> list[dict[str, Any]]:
    """A manager's webhook configurations by URL on 127.0.0.1: its own kinds, and pods only of JobSets."""
    made = []
    for configuration in shipped:
        kind = configuration["kind"]
        webhooks = []
        for webhook in configuration.get("webhooks") or []:
            groups = {group for rule in webhook.get("rules") or [] for group in rule.get("apiGroups") or []}
            if not groups or not groups <= set(KEPT_GROUPS[manager]):
                continue
            hook = copy.deepcopy(webhook)
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            if "" in groups:  # JobSet's kustomize patch: its pod webhooks only for its own pods
                hook["objectSelector"] = {"matchExpressions": [{"key": JOBSET_POD_LABEL, "operator": "Exists"}]}
            webhooks.append(hook)
        made.append(
            {
                "apiVersion": configuration["apiVersion"],
                "kind": kind,
                "metadata": {"name": WEBHOOK_CONFIGURATIONS[(manager, kind)]},
                "webhooks": webhooks,
            }
        )
    return made


def cluster_training_runtime(name: str = RUNTIME) -> dict[str, Any]:
    """One node (torch, as Trainer's own torch-distributed runtime) whose pod asks for 1 ai100; kwok runs it."""
    resources = {"requests": {"cpu": "1m", AI100: "1"}, "limits": {"cpu": "10m", AI100: "1"}}
    container = {"name": "node", "image": "aidaptiv", "command": ["train"], "resources": resources}
    replicated = {
        "name": "node",
        "template": {
            "metadata": {"labels": {f"{TRAINER}/trainjob-ancestor-step": "trainer"}},
            "spec": {"template": {"spec": {"containers": [container]}}},
        },
    }
    return {
        "apiVersion": TRAINER_VERSION,
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {f"{TRAINER}/framework": "torch"}},
        "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [replicated]}}},
    }


def trainjob(name: str, suspend: bool = False, runtime: str = RUNTIME) -> dict[str, Any]:
    spec: dict[str, Any] = {"runtimeRef": {"name": runtime}}
    if suspend:
        spec["suspend"] = True
    return {"apiVersion": TRAINER_VERSION, "kind": "TrainJob", "metadata": {"name": name}, "spec": spec}


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _crd_files(directory: Path) -> list[Path]:
    return [path for path in sorted(directory.glob("*.yaml")) if path.name != "kustomization.yaml"]


def rss_kb(pid: int) -> int:
    """Resident set size of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peer:
    """JobSet's and Trainer's managers beside one local cluster: ``start``, ``kill`` (a crash: the webhooks
    stay), ``launch`` again, ``stop`` (webhooks first, then the processes, by pid)."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.home = local.workdir / "peer"
        self.records: dict[str, processes.ProcessRecord] = {}
        found = processes.free_ports([f"{m}-{p}" for m in BINARIES for p in ("webhook", "health", "metrics")])
        self.ports = {m: Ports(found[f"{m}-webhook"], found[f"{m}-health"], found[f"{m}-metrics"]) for m in BINARIES}
        self.installed = False

    @property
    def cluster(self) -> Cluster:
        return self.local.handle()

    def pids(self) -> list[int]:
        return [record.pid for record in self.records.values()]

    def rss_kb(self) -> dict[str, int]:
        """RSS of each manager, in KB."""
        return {name: rss_kb(record.pid) for name, record in self.records.items()}

    # -- installation ---------------------------------------------------------------------

    def install(self) -> None:
        """Certificates, configurations and CRDs (once); no process yet."""
        if self.installed:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        certs = self._certificates()
        (self.home / "jobset.yaml").write_text(yaml.safe_dump(jobset_config(self.ports["jobset"], certs)))
        (self.home / "trainer.yaml").write_text(yaml.safe_dump(trainer_config(self.ports["trainer"])))
        trainer_certs = self.home / "trainer-tmp" / "k8s-webhook-server" / "serving-certs"
        trainer_certs.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(certs / name, trainer_certs / name)
        crds = [
            doc
            for manager, directory in (("jobset", "bases"), ("trainer", "crds"))
            for path in _crd_files(build_toolchain.peer_dir(manager) / directory)
            for doc in _load_all(path)
        ]
        self._apply("crds", crds)
        self.cluster.wait_established(*(crd["metadata"]["name"] for crd in crds))
        self.installed = True

    def _certificates(self) -> Path:
        """The serving certificate of both managers' webhooks: the cluster's CA, for 127.0.0.1."""
        return serving_certificate(self.local.pki, "peer", self.home / "certs")

    def _apply(self, name: str, objects: list[dict[str, Any]]) -> None:
        path = self.home / f"{name}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))

    # -- processes ------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Install (once), start both managers, register their webhooks and the runtime; until they answer."""
        self.install()
        self.launch()
        self.wait_ready(timeout)
        log(f"the peer is up (JobSet pid {self.records['jobset'].pid}, Trainer pid {self.records['trainer'].pid})")

    def launch(self) -> None:
        """Start both managers and return at once (the caller measures how soon they serve)."""
        bins = build_toolchain.bin_dir()
        env = {"KUBECONFIG": str(self.local.kubeconfig)}
        components = [
            Component(
                "jobset",
                [str(bins / BINARIES["jobset"]), f"--config={self.home / 'jobset.yaml'}"],
                f"http://127.0.0.1:{self.ports['jobset'].health}/readyz",
                "none",
                env,
            ),
            Component(
                "trainer",
                [str(bins / BINARIES["trainer"]), f"--config={self.home / 'trainer.yaml'}"],
                f"http://127.0.0.1:{self.ports['trainer'].health}/readyz",
                "none",
                {**env, "TMPDIR": str(self.home / "trainer-tmp")},
            ),
        ]
        for component in components:
            self.records[component.name] = self.local.start_process(component)

    def wait_ready(self, timeout: float = 120.0) -> None:
        for record in self.records.values():
            processes.wait_healthy(record, None, timeout)
        ca_bundle = base64.b64encode((self.local.pki / "ca.crt").read_bytes()).decode()
        hooks = [
            made
            for manager in BINARIES
            for made in webhook_configurations(
                manager,
                _load_all(build_toolchain.peer_dir(manager) / "manifests.yaml"),
                self.ports[manager].webhook,
                ca_bundle,
            )
        ]
        self._apply("webhooks", hooks)
        self._until_accepted(cluster_training_runtime(), timeout)

    def _until_accepted(self, body: dict[str, Any], timeout: float) -> None:
        """Apply through the webhooks, again until the API server reaches them (the runtime passes Trainer's)."""
        path = self.home / "runtime.json"
        path.write_text(json.dumps(body))
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records.values():
                processes.check_running(record)
            done = self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the peer's webhooks not reachable after {timeout:.0f}s: {done.stderr.strip()}")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL both managers, as a crash would; their webhooks stay registered."""
        for record in self.records.values():
            processes.kill(record)

    def stop(self, keep_webhooks: bool = False) -> None:
        """The webhooks go first (no object waits on a manager that is gone), then the managers, by pid.
        ``keep_webhooks``: the managers only (the bench stops them between its phases and creates the
        peer's kinds only while they run)."""
        if not keep_webhooks:
            cluster = self.cluster
            for (_, kind), name in WEBHOOK_CONFIGURATIONS.items():
                cluster.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
        alive = [r.pid for r in self.records.values() if processes.is_same_process(r.pid, r.starttime)]
        processes.stop_pids(alive)
        self.records = {}
