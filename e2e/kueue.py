"""The real Kueue (its manager, built from the Go module proxy by e2e/build_toolchain.py) beside a local
cluster: its CRDs, its webhooks and its manager as a process on 127.0.0.1.

The manager runs on the host, as the API server does, so its webhooks are registered by URL
(``https://127.0.0.1:<port>/<path>``) with a certificate of the cluster's CA for 127.0.0.1, and the
CRDs Kueue converts between versions get a conversion webhook the same way. Only Kueue's own kinds and
batch/v1 Jobs are kept of its webhooks, and the Job ones only in namespaces labelled
``MANAGED_NAMESPACE_LABEL``: no other test's Job waits on Kueue. Leader election, internal certificates
and the visibility server (it binds 0.0.0.0) are off; health and metrics listen on 127.0.0.1.

With its internal certificates off, Kueue's metrics server reads a fixed
``/etc/kueue/metrics/certs/tls.{crt,key}`` and the manager exits without it. Nothing is written to this
host's /etc: the manager runs in a mount namespace of its own (``unshare``) whose /etc is an overlay
on a tmpfs, where the files are put before the manager starts; the namespace ends with the process.
"""

from __future__ import annotations

import base64
import copy
import json
import os
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
from .pki import serving_certificate

NAMESPACE = "kueue-system"
#: Jobs of namespaces with this label go through Kueue's Job webhooks; other tests' Jobs never meet them.
MANAGED_NAMESPACE_LABEL = "e2e.finetune.aidaptiv.io/kueue"
WEBHOOK_CONFIGURATIONS = {
    "MutatingWebhookConfiguration": "fto-e2e-kueue-mutating",
    "ValidatingWebhookConfiguration": "fto-e2e-kueue-validating",
}
#: The CRDs Kueue's kustomization gives a conversion webhook (config/components/crd/kustomization.yaml).
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
KEPT_GROUPS = ("kueue.x-k8s.io", "batch")

#: Run by /bin/sh in the manager's own mount namespace: $1 a directory for the tmpfs, $2 the metrics
#: certificate's directory, then the manager's command line.
OVERLAY_ETC = """\
set -eu
scratch=$1; certs=$2; shift 2
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
mkdir -p /etc/kueue/metrics/certs
cp "$certs/tls.crt" "$certs/tls.key" /etc/kueue/metrics/certs/
exec "$@"
"""


@dataclass(frozen=True)
class Ports:
    webhook: int
    health: int
    metrics: int


def unsupported_reason() -> str | None:
    """Why Kueue cannot run here (None: it can): its own mount namespace needs root."""
    if os.geteuid() != 0:
        return "Kueue's manager runs in a mount namespace of its own (its fixed metrics cert path): needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def manager_config(ports: Ports, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.metrics}"},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


def webhook_configurations(shipped: list[dict[str, Any]], port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, by URL on 127.0.0.1, for its own kinds and batch/v1 Jobs only."""
    made = []
    for configuration in shipped:
        kind = configuration["kind"]
        webhooks = []
        for webhook in configuration.get("webhooks") or []:
            groups = {group for rule in webhook.get("rules") or [] for group in rule.get("apiGroups") or []}
            if not groups or not groups <= set(KEPT_GROUPS):
                continue
            hook = copy.deepcopy(webhook)
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            if "batch" in groups:
                hook["namespaceSelector"] = {"matchLabels": {MANAGED_NAMESPACE_LABEL: "true"}}
            webhooks.append(hook)
        made.append(
            {
                "apiVersion": configuration["apiVersion"],
                "kind": kind,
                "metadata": {"name": WEBHOOK_CONFIGURATIONS[kind]},
                "webhooks": webhooks,
            }
        )
    return made


def crds(shipped: list[dict[str, Any]], port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's CRDs; those it converts between versions get its conversion webhook by URL."""
    made = []
    for crd in shipped:
        crd = copy.deepcopy(crd)
        if crd["spec"]["names"]["plural"] in CONVERTED:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": f"https://127.0.0.1:{port}/convert", "caBundle": ca_bundle},
                    "conversionReviewVersions": ["v1"],
                },
            }
        made.append(crd)
    return made


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class Kueue:
    """The manager of one local cluster, started once (``start``) and stopped with the cluster."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.home = local.workdir / "kueue"
        self.files = build_toolchain.kueue_dir()
        self.record: processes.ProcessRecord | None = None
        self.ports: Ports | None = None

    def start(self, timeout: float = 120.0) -> None:
        reason = unsupported_reason()
        if reason is not None:
            raise ClusterError(f"Kueue cannot run here: {reason}")
        cluster = self.local.handle()
        self.home.mkdir(parents=True, exist_ok=True)
        certs = self._certificates()
        ca_bundle = base64.b64encode((self.local.pki / "ca.crt").read_bytes()).decode()
        found = processes.free_ports(("webhook", "health", "metrics"))
        ports = self.ports = Ports(found["webhook"], found["health"], found["metrics"])
        shipped_crds = self._shipped_crds()
        self._apply(cluster, "crds", crds(shipped_crds, ports.webhook, ca_bundle))
        cluster.wait_established(*(crd["metadata"]["name"] for crd in shipped_crds))
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        config = self.home / "config.yaml"
        config.write_text(yaml.safe_dump(manager_config(ports, certs)))
        scratch = self.home / "etc-overlay"
        scratch.mkdir(exist_ok=True)
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "/bin/sh", "-c", OVERLAY_ETC, "kueue-etc", str(scratch), str(certs),
            str(build_toolchain.bin_dir() / "kueue"), f"--config={config}",
        ]  # fmt: skip
        component = Component(
            "kueue", argv, f"http://127.0.0.1:{ports.health}/readyz", "none", {"KUBECONFIG": str(self.local.kubeconfig)}
        )
        self.record = self.local.start_process(component)
        processes.wait_healthy(self.record, None, timeout)
        shipped = _load_all(self.files / "manifests.yaml")
        self._apply(cluster, "webhooks", webhook_configurations(shipped, ports.webhook, ca_bundle))
        self._wait_webhooks(cluster, timeout)
        log(f"Kueue is up (pid {self.record.pid}, webhooks on 127.0.0.1:{ports.webhook})")

    def _certificates(self) -> Path:
        """The serving certificate of its webhooks and metrics: the cluster's CA, for 127.0.0.1."""
        return serving_certificate(self.local.pki, "kueue", self.home / "certs")

    def _shipped_crds(self) -> list[dict[str, Any]]:
        return [doc for path in sorted((self.files / "bases").glob("*.yaml")) for doc in _load_all(path)]

    def _apply(self, cluster: Any, name: str, objects: list[dict[str, Any]]) -> None:
        path = self.home / f"{name}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))

    def _wait_webhooks(self, cluster: Any, timeout: float) -> None:
        """Until the API server reaches the webhooks: a server-side dry run of a ResourceFlavor passes them."""
        flavor = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "probe"}}
        path = self.home / "probe.json"
        path.write_text(json.dumps(flavor))
        deadline = time.monotonic() + timeout
        while True:
            assert self.record is not None
            processes.check_running(self.record)
            done = cluster.kubectl("create", "--dry-run=server", "-f", str(path), check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"Kueue's webhooks not reachable after {timeout:.0f}s: {done.stderr.strip()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Its webhooks go first (no object waits on a manager that is gone), then the manager."""
        cluster = self.local.handle()
        for kind, name in WEBHOOK_CONFIGURATIONS.items():
            cluster.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
        if self.record is not None and processes.is_same_process(self.record.pid, self.record.starttime):
            processes.stop_pids([self.record.pid])
        self.record = None
