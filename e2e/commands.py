"""Command lines of the control plane's processes, from ports and paths (pure: no I/O).

Each builder returns a ``Component``: the argv, the environment it adds, and the URL that
says it is healthy. ``LocalCluster`` starts them in order; a restart reuses the recorded one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from .common import KWOK_NODE_ANNOTATION, parse_duration_ms

#: How a health URL is reached: plain HTTP (etcd), as the admin (API server), as the admin with the
#: server's certificate checked against the cluster's CA but not its name (the API server through the
#: real node's relay on the bridge address, which its certificate does not name), or unverified TLS
#: (controller-manager, scheduler and kwok serve certificates nobody signed).
HealthTLS = Literal["none", "admin", "admin-ca", "insecure"]

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    """The ports a cluster listens on, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)

    @classmethod
    def from_dict(cls, ports: dict[str, int]) -> Ports:
        return cls(**{name: int(ports[name]) for name in cls.names()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Where a cluster's binaries and files are."""

    bins: Path
    workdir: Path

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def scheduler_config(self) -> Path:
        return self.workdir / "kube-scheduler.yaml"

    @property
    def kwok_home(self) -> Path:
        return self.workdir / "kwok-home"


@dataclass(frozen=True)
class Component:
    """One process of the control plane, as it is started."""

    name: str
    argv: list[str]
    health_url: str
    health_tls: HealthTLS
    env: dict[str, str] = field(default_factory=dict)


#: The signature of the builders below.
ComponentBuilder = Callable[[Layout, Ports], Component]


def etcd_client_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.etcd_client}"


def etcd_peer_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.etcd_peer}"


def apiserver_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd(layout: Layout, ports: Ports) -> Component:
    client, peer = etcd_client_url(ports), etcd_peer_url(ports)
    argv = [
        str(layout.bins / "etcd"),
        "--name=node0",
        f"--data-dir={layout.workdir / 'etcd-data'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node0={peer}",
        # Throwaway data: the tests' speed matters more than surviving a power cut.
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]
    return Component("etcd", argv, f"{client}/health", "none")


def apiserver(layout: Layout, ports: Ports) -> Component:
    pki = layout.pki
    argv = [
        str(layout.bins / "kube-apiserver"),
        f"--etcd-servers={etcd_client_url(ports)}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # kubectl logs goes API server -> kwok's kubelet endpoint, as the admin.
        f"--kubelet-client-certificate={pki / 'admin.crt'}",
        f"--kubelet-client-key={pki / 'admin.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        # Pods never really run here, so the `kubernetes` Service needs no endpoints.
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
    ]
    return Component("kube-apiserver", argv, f"{apiserver_url(ports)}/readyz", "admin")


def client_flags(kubeconfig: Path) -> list[str]:
    """Flags the controller-manager shares with the scheduler's config: one replica, fast clients."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        "--leader-elect=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--profiling=false",
    ]


def controller_manager(layout: Layout, ports: Ports) -> Component:
    pki = layout.pki
    argv = [
        str(layout.bins / "kube-controller-manager"),
        *client_flags(layout.kubeconfig),
        f"--secure-port={ports.controller_manager}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        "--use-service-account-credentials=false",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        # Level 2: the Job controller's failed pod creates and expectations, for a stuck Job's report.
        "--v=2",
    ]
    url = f"https://{LOOPBACK}:{ports.controller_manager}/healthz"
    return Component("kube-controller-manager", argv, url, "insecure")


def scheduler_config(kubeconfig: Path, scheduler_names: Sequence[str]) -> str:
    """One kube-scheduler serving several scheduler names (one profile each), so pods asking
    for e.g. "hami-scheduler" (the chart's default) are scheduled too."""
    profiles = "".join(f"- schedulerName: {json.dumps(name)}\n" for name in scheduler_names)
    return (
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {json.dumps(str(kubeconfig))}\n  qps: 200\n  burst: 400\n"
        "leaderElection:\n  leaderElect: false\n"
        f"profiles:\n{profiles}"
    )


def scheduler(layout: Layout, ports: Ports) -> Component:
    """The scheduler; its settings are in ``layout.scheduler_config`` (see ``scheduler_config``)."""
    argv = [
        str(layout.bins / "kube-scheduler"),
        f"--config={layout.scheduler_config}",
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
    ]
    return Component("kube-scheduler", argv, f"https://{LOOPBACK}:{ports.scheduler}/healthz", "insecure")


def kwok(layout: Layout, ports: Ports) -> Component:
    pki = layout.pki
    argv = [
        str(layout.bins / "kwok"),
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--node-ip={LOOPBACK}",
        "--node-name=localhost",
        f"--node-port={ports.kwok}",
        f"--server-address={LOOPBACK}:{ports.kwok}",
        f"--tls-cert-file={pki / 'kwok.crt'}",
        f"--tls-private-key-file={pki / 'kwok.key'}",
        "--enable-crds=Stage,Logs,ClusterLogs",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
    ]
    # kwok reads ~/.kwok/kwok.yaml when it exists (and then skips its defaults): an empty
    # home keeps a user's file from changing the cluster.
    env = {"HOME": str(layout.kwok_home)}
    return Component("kwok", argv, f"https://{LOOPBACK}:{ports.kwok}/healthz", "insecure", env)


def stages(template: str, start_delay: str, run_duration: str) -> str:
    """e2e/kwok/stages.yaml with the default delays of ``up`` filled in."""
    text = template.replace("@@START_DELAY_MS@@", str(parse_duration_ms(start_delay)))
    return text.replace("@@RUN_DURATION_MS@@", str(parse_duration_ms(run_duration)))
