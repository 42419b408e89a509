"""The real node's settings and command lines, from paths, ports and its network (pure: no I/O).

One real node per cluster: containerd (its CRI plugin runs the pods with runc), the kubelet, CoreDNS
for cluster names, kube-proxy for ClusterIP Services, our fake device plugin and an in-memory OCI
registry that every image name maps to. The node's network is a private bridge with its own /24
(``NodeNetwork``; several real nodes on one machine get different slots): the kubelet, CoreDNS and
the API server's relay listen on the bridge's address, which only this host and its pods reach;
everything else listens on 127.0.0.1. Pods get no default route, so no address off this machine is
reachable from them.

kube-proxy runs in a network namespace of its own (a "service router" on the bridge, address
``.2``), not in the host's: its nftables table (``ip kube-proxy``, a fixed name) would otherwise be
shared by every real node of this machine (each cluster's kube-proxy would delete the others'
Services), and its rules, conntrack entries and forwarding setting vanish with the namespace. Pods
route the Service range to it; it DNATs (and masquerades, so replies come back through it) to the
endpoints on the bridge. Its namespace's only route is the bridge's /24: a Service whose endpoint is
anywhere else is dropped there, so Services add no way off this machine either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .commands import LOOPBACK, SERVICE_CIDR, Component

NODE_NAME = "real-node"
#: Real and kwok nodes are told apart by this label (values "real", "kwok") ...
NODE_KIND_LABEL = "finetune.aidaptiv.io/node-kind"
#: ... and the real node carries this taint: only pods that tolerate it run there.
REAL_NODE_TAINT = "finetune.aidaptiv.io/real-node"
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
#: Resources the device plugin advertises as devices (the kubelet allocates device IDs) ...
DEVICE_RESOURCES = ("phison.com/ai100", "otterscale.com/vgpu")
#: ... and quantities that are not devices (HAMi publishes no devices for memory): the node-status
#: patch the Kubernetes docs describe ("Advertise Extended Resources for a Node").
PATCHED_RESOURCES = ("otterscale.com/vgpumem", "otterscale.com/vgpumem-percentage")
#: Where a pod that gets phison.com/ai100 finds its NVMe swap space (the aiDAPTIV plugin's job).
NVME_MOUNT = "/mnt/nvme0"
#: The kernel's limit of a unix socket path (108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
#: Subnets of the node bridges: slot k gets 10.245.k.0/24 (outside kwok's 10.244.0.0/16).
SUBNET_PREFIX = "10.245"
MAX_SLOTS = 32
#: kube-proxy's health port, on its own namespace's bridge address (nothing else listens there).
KUBE_PROXY_HEALTHZ_PORT = 10256
#: kube-proxy's metrics port, on its own namespace's loopback (reachable from nowhere else).
KUBE_PROXY_METRICS_PORT = 10249
#: The identity of kube-proxy's client certificate: the built-in ClusterRoleBinding
#: ``system:node-proxier`` grants this user what kube-proxy reads (Services, EndpointSlices, Nodes).
KUBE_PROXY_USER = "system:kube-proxy"
#: Who manages the ``kubernetes`` Service's EndpointSlice (the API server runs with
#: ``--endpoint-reconciler-type=none``: it writes none itself).
ENDPOINTS_MANAGER = "e2e.finetune.aidaptiv.io"


@dataclass(frozen=True)
class NodeNetwork:
    """The private bridge of one real node (slot 0..MAX_SLOTS-1 on this machine)."""

    slot: int

    @property
    def bridge(self) -> str:
        return f"fto-br{self.slot}"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.slot}.0/24"

    @property
    def node_ip(self) -> str:
        """The bridge's address: the node's InternalIP, the kubelet's and CoreDNS's listen address."""
        return f"{SUBNET_PREFIX}.{self.slot}.1"

    @property
    def proxy_ip(self) -> str:
        """kube-proxy's namespace's address on the bridge: the pods' gateway to the Service range."""
        return f"{SUBNET_PREFIX}.{self.slot}.2"

    @property
    def proxy_link(self) -> str:
        """The host's end of the veth pair into kube-proxy's namespace (a port of the bridge)."""
        return f"fto-kp{self.slot}"

    @property
    def range_start(self) -> str:
        return f"{SUBNET_PREFIX}.{self.slot}.10"

    @property
    def range_end(self) -> str:
        return f"{SUBNET_PREFIX}.{self.slot}.250"


@dataclass(frozen=True)
class NodeLayout:
    """Where the node's files are: under ``<cluster work dir>/node``, the kubelet's in ``.../kubelet``."""

    bins: Path
    workdir: Path

    @property
    def root(self) -> Path:
        return self.workdir / "node"

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def certs_d(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's --root-dir: in the work dir itself, to keep its sockets' paths short."""
        return self.workdir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def plugins_registry(self) -> Path:
        """The kubelet's plugin watcher dir (<root dir>/plugins_registry)."""
        return self.kubelet_root / "plugins_registry"

    @property
    def device_plugin_dir(self) -> Path:
        return self.root / "device-plugins"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def kube_proxy_netns(self) -> Path:
        """kube-proxy's network namespace, bind-mounted on this file (so the unmount of everything
        under the work dir at `down` also frees it, with every nftables rule in it)."""
        return self.root / "kube-proxy.netns"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def nvme(self) -> Path:
        """Host side of the ai100 cards' swap spaces: nvme0/<device ID> is a pod's /mnt/nvme0."""
        return self.root / "nvme0"

    def sockets(self) -> list[Path]:
        """Unix sockets made under the work dir (their paths must fit MAX_SOCKET_PATH); the device
        plugin names its sockets after the resource's last part (fto-<name>-reg.sock, <name>.sock)."""
        names = [resource.rsplit("/", 1)[1] for resource in DEVICE_RESOURCES]
        return [
            self.containerd_socket,
            Path(f"{self.containerd_socket}.ttrpc"),
            *(self.plugins_registry / f"fto-{name}-reg.sock" for name in names),
            *(self.device_plugin_dir / f"{name}.sock" for name in names),
            self.kubelet_root / "pod-resources" / "kubelet.sock",
        ]


@dataclass(frozen=True)
class NodePorts:
    """The node's ports on 127.0.0.1 (the kubelet's API port is KUBELET_PORT on the bridge)."""

    kubelet_healthz: int
    containerd_metrics: int
    coredns_ready: int
    coredns_health: int
    device_plugin: int
    registry: int
    #: On the bridge address (not 127.0.0.1): the relay to the API server, the endpoint of the
    #: ``kubernetes`` Service.
    apiserver_relay: int

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)

    @classmethod
    def from_dict(cls, ports: dict[str, int]) -> NodePorts:
        return cls(**{name: int(ports[name]) for name in cls.names()})


@dataclass(frozen=True)
class NodeCapacity:
    """What the real node advertises (defaults: one node of the fake nodes' size)."""

    ai100: int = 4
    vgpu: int = 8
    vgpumem: int = 8 * 24576
    vgpumem_percentage: int = 8 * 100

    def devices(self) -> dict[str, int]:
        return {"phison.com/ai100": self.ai100, "otterscale.com/vgpu": self.vgpu}

    def patched(self) -> dict[str, int]:
        return {"otterscale.com/vgpumem": self.vgpumem, "otterscale.com/vgpumem-percentage": self.vgpumem_percentage}


def cgroup_root(cluster: str) -> str:
    """The kubelet's cgroupRoot (made in every cgroup v1 hierarchy before it starts)."""
    return f"/fto-node-{cluster}"


def registry_address(ports: NodePorts) -> str:
    return f"{LOOPBACK}:{ports.registry}"


def hosts_toml(ports: NodePorts) -> str:
    """``certs.d/_default/hosts.toml``: every registry name is pulled from the node's own registry,
    over plain HTTP on 127.0.0.1; no pull can leave this host."""
    url = f"http://{registry_address(ports)}"
    return f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'


def containerd_config(layout: NodeLayout, ports: NodePorts, pause_image: str, runc: str, cni_bin_dir: str) -> str:
    """containerd's config.toml (version 3): its own root, state and sockets, the CRI settings this
    machine needs (no CAP_SYS_RESOURCE: restrict_oom_score_adj), network namespaces mounted under its
    state dir (so the node's teardown finds them), and no NRI (a machine-wide socket)."""
    d = layout.containerd_dir
    disabled = [
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.blockfile",
        "io.containerd.snapshotter.v1.erofs",
        "io.containerd.nri.v1.nri",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]
    q = json.dumps  # TOML basic strings are JSON strings for the paths used here
    lines = [
        "version = 3",
        f"root = {q(str(d / 'root'))}",
        f"state = {q(str(d / 'state'))}",
        f"temp = {q(str(d / 'tmp'))}",
        f"disabled_plugins = {json.dumps(disabled)}",
        "",
        "[grpc]",
        f"  address = {q(str(layout.containerd_socket))}",
        "",
        "[ttrpc]",
        f"  address = {q(str(layout.containerd_socket) + '.ttrpc')}",
        "",
        "[metrics]",
        f"  address = {q(f'{LOOPBACK}:{ports.containerd_metrics}')}",
        "",
        "[plugins]",
        "  [plugins.'io.containerd.internal.v1.opt']",
        f"    path = {q(str(d / 'opt'))}",
        "  [plugins.'io.containerd.cri.v1.images']",
        '    snapshotter = "overlayfs"',
        "    [plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"      sandbox = {q(pause_image)}",
        "    [plugins.'io.containerd.cri.v1.images'.registry]",
        f"      config_path = {q(str(layout.certs_d))}",
        "  [plugins.'io.containerd.cri.v1.runtime']",
        "    restrict_oom_score_adj = true",
        "    netns_mounts_under_state_dir = true",
        "    enable_cdi = false",
        "    cdi_spec_dirs = []",
        "    [plugins.'io.containerd.cri.v1.runtime'.containerd]",
        '      default_runtime_name = "runc"',
        "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        '        runtime_type = "io.containerd.runc.v2"',
        f"        runtime_path = {q(str(layout.bins / 'containerd-shim-runc-v2'))}",
        "        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        f"          BinaryName = {q(runc)}",
        f"          Root = {q(str(d / 'runc'))}",  # runc's state, not /run/containerd/runc
        "          SystemdCgroup = false",
        "    [plugins.'io.containerd.cri.v1.runtime'.cni]",
        f"      bin_dirs = [{q(cni_bin_dir)}]",
        f"      conf_dir = {q(str(layout.cni_conf_dir))}",
        "      max_conf_num = 1",
        "  [plugins.'io.containerd.grpc.v1.cri']",
        f"    stream_server_address = {q(LOOPBACK)}",
        '    stream_server_port = "0"',
        "",
    ]
    return "\n".join(lines)


def cni_conflist(layout: NodeLayout, network: NodeNetwork) -> dict[str, Any]:
    """A bridge the node made itself (with its address): no gateway role for the plugin (it would turn
    on IP forwarding), no masquerade, one route: pods reach the bridge's /24 and, through kube-proxy's
    namespace, the Service range, and nothing else."""
    return {
        "cniVersion": "1.0.0",
        "name": f"fto-{network.slot}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": network.subnet,
                                "rangeStart": network.range_start,
                                "rangeEnd": network.range_end,
                                "gateway": network.node_ip,
                            }
                        ]
                    ],
                    # The Service range goes to kube-proxy's namespace (the bridge's .2), nothing else
                    # beyond the /24: a pod still has no default route.
                    "routes": [{"dst": SERVICE_CIDR, "gw": network.proxy_ip}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            }
        ],
    }


def kubelet_config(
    layout: NodeLayout, ports: NodePorts, network: NodeNetwork, pki: Path, cluster: str
) -> dict[str, Any]:
    """The KubeletConfiguration: serves on the bridge address with a certificate of the cluster's CA
    (so `kubectl logs`/`exec` work), cgroupfs on cgroup v1 under its own cgroupRoot, DNS from the
    node's CoreDNS, the taint that keeps other pods away, and nothing written outside its dirs that
    a setting can move (pod logs, volume plugins)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "10s"},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "5s"},
        },
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [network.node_ip],
        # No host resolv.conf: pods get the cluster's search path and nameserver only.
        "resolvConf": "",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(cluster),
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.pod_logs),
        "volumePluginDir": str(layout.volume_plugins),
        "registerNode": True,
        "registerWithTaints": [{"key": REAL_NODE_TAINT, "value": "true", "effect": "NoSchedule"}],
        "makeIPTablesUtilChains": False,
        # The machine grants no CAP_SYS_RESOURCE: lowering an OOM score or raising RLIMIT_NOFILE
        # past its hard limit (20000) is refused.
        "oomScoreAdj": 0,
        "maxOpenFiles": 16384,
        "maxPods": 32,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "evictionPressureTransitionPeriod": "10s",
        # Imported images are never pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False,
        "localStorageCapacityIsolation": True,
        "enforceNodeAllocatable": ["pods"],
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 3,
    }


def node_labels(cluster: str) -> dict[str, str]:
    del cluster  # one real node per cluster: the same labels everywhere
    return {NODE_KIND_LABEL: "real", "phison.com/ai100-present": "true"}


def corefile(network: NodeNetwork, kubeconfig: Path, context: str, ports: NodePorts) -> str:
    """Answers names of the cluster's zones from the API (Services, headless records of pods) on the
    bridge address; any other name is refused (no `forward`: nothing is asked upstream)."""
    return (
        f"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
        f"    bind {network.node_ip}\n"
        "    errors\n"
        f"    health {LOOPBACK}:{ports.coredns_health}\n"
        f"    ready {LOOPBACK}:{ports.coredns_ready}\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {json.dumps(str(kubeconfig))} {context}\n"
        "        pods insecure\n"
        "        ttl 5\n"
        "    }\n"
        "    loadbalance\n"
        "}\n"
    )


def containerd(layout: NodeLayout, ports: NodePorts) -> Component:
    argv = [str(layout.bins / "containerd"), f"--config={layout.containerd_config}", "--log-level=info"]
    health = f"http://{LOOPBACK}:{ports.containerd_metrics}/v1/metrics"
    return Component("containerd", argv, health, "none", {"PATH": f"{layout.bins}:/usr/sbin:/usr/bin:/sbin:/bin"})


def kubelet(layout: NodeLayout, ports: NodePorts, network: NodeNetwork, cluster: str) -> Component:
    labels = ",".join(f"{k}={v}" for k, v in node_labels(cluster).items())
    argv = [
        str(layout.bins / "kubelet"),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubelet_kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={network.node_ip}",
        f"--node-labels={labels}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
        "--v=2",
    ]
    return Component(
        "kubelet",
        argv,
        f"http://{LOOPBACK}:{ports.kubelet_healthz}/healthz",
        "none",
        {"PATH": f"{layout.bins}:/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def coredns(layout: NodeLayout, ports: NodePorts) -> Component:
    argv = [str(layout.bins / "coredns"), "-conf", str(layout.corefile)]
    return Component("coredns", argv, f"http://{LOOPBACK}:{ports.coredns_ready}/ready", "none")


def device_plugin(layout: NodeLayout, ports: NodePorts, capacity: NodeCapacity) -> Component:
    argv = [
        str(layout.bins / "fto-device-plugin"),
        f"--registry-dir={layout.plugins_registry}",
        f"--socket-dir={layout.device_plugin_dir}",
        f"--health-port={ports.device_plugin}",
        f"--nvme-host-path={layout.nvme}",
        f"--nvme-container-path={NVME_MOUNT}",
        *(f"--resource={name}={count}" for name, count in capacity.devices().items()),
    ]
    return Component("fto-device-plugin", argv, f"http://{LOOPBACK}:{ports.device_plugin}/healthz", "none")


def registry(layout: NodeLayout, ports: NodePorts) -> Component:
    argv = [str(layout.bins / "oci-registry"), f"--port={ports.registry}", "--quiet"]
    return Component("node-registry", argv, f"http://{registry_address(ports)}/v2/", "none")


def status_patch(capacity: NodeCapacity) -> list[dict[str, Any]]:
    """JSON patch of the node's status adding the non-device quantities (the documented way)."""
    return [
        {"op": "add", "path": f"/status/capacity/{name.replace('/', '~1')}", "value": str(value)}
        for name, value in capacity.patched().items()
    ]


def apiserver_relay(network: NodeNetwork, ports: NodePorts, apiserver_port: int, python: str) -> Component:
    """The API server on the bridge address (``e2e/tcprelay.py``), where kube-proxy's namespace and the
    pods reach it; the API server itself keeps listening on 127.0.0.1 only. Healthy when the API
    server answers through it (its certificate names 10.96.0.1 and kubernetes.default.svc, not the
    bridge address: checked against the cluster's CA, not by name)."""
    listen = f"{network.node_ip}:{ports.apiserver_relay}"
    argv = [python, str(Path(__file__).resolve().parent / "tcprelay.py"), "--listen", listen]
    argv += ["--connect", f"{LOOPBACK}:{apiserver_port}"]
    return Component("apiserver-relay", argv, f"https://{listen}/readyz", "admin-ca")


def kube_proxy_kubeconfig(network: NodeNetwork, ports: NodePorts, pki: Path) -> dict[str, Any]:
    """kube-proxy reaches the API server through the relay on the bridge (its namespace has no way to
    the host's 127.0.0.1), naming the server as the certificate does (``tls-server-name``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": f"https://{network.node_ip}:{ports.apiserver_relay}",
                    "certificate-authority": str(pki / "ca.crt"),
                    "tls-server-name": "kubernetes.default.svc",
                },
            }
        ],
        "users": [
            {
                "name": "kube-proxy",
                "user": {
                    "client-certificate": str(pki / "kube-proxy.crt"),
                    "client-key": str(pki / "kube-proxy.key"),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "kube-proxy"}}],
        "current-context": "local",
    }


def kube_proxy_config(layout: NodeLayout, network: NodeNetwork) -> dict[str, Any]:
    """The KubeProxyConfiguration: nftables mode (its own table; the kernel here has nf_tables built in,
    and Debian's nft 1.0.6), every Service connection masqueraded (the endpoint answers kube-proxy's
    namespace, which un-NATs the reply; without it a pod's reply would go straight back to a client
    that expects it from the Service's address), and nothing machine-wide touched: no conntrack
    table size or timeouts (kube-proxy would write the host's nf_conntrack_max and hash size), no
    OOM score (no CAP_SYS_RESOURCE here)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kube_proxy_kubeconfig), "qps": 50, "burst": 100},
        "hostnameOverride": NODE_NAME,
        "mode": "nftables",
        "nftables": {"masqueradeAll": True},
        "detectLocalMode": "ClusterCIDR",
        "clusterCIDR": network.subnet,
        "healthzBindAddress": f"{network.proxy_ip}:{KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"{LOOPBACK}:{KUBE_PROXY_METRICS_PORT}",
        "nodePortAddresses": [f"{network.proxy_ip}/32"],
        "oomScoreAdj": 0,
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "configSyncPeriod": "15m",
    }


def kube_proxy(layout: NodeLayout, network: NodeNetwork) -> Component:
    """kube-proxy, started inside its namespace by nsenter (which execs it: the pid is kube-proxy's)."""
    argv = [
        "nsenter",
        f"--net={layout.kube_proxy_netns}",
        "--",
        str(layout.bins / "kube-proxy"),
        f"--config={layout.kube_proxy_config}",
        "--v=2",
    ]
    health = f"http://{network.proxy_ip}:{KUBE_PROXY_HEALTHZ_PORT}/healthz"
    # nft (knftables runs it) and nsenter are in /usr/sbin and /usr/bin.
    return Component("kube-proxy", argv, health, "none", {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def kubernetes_endpoint_slice(network: NodeNetwork, ports: NodePorts) -> dict[str, Any]:
    """The endpoint of the ``kubernetes`` Service (10.96.0.1:443): the API server's relay on the bridge.
    An EndpointSlice may not name a loopback address, and kube-proxy must DNAT to an address the
    pods' packets can reach: the bridge's."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": ENDPOINTS_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [network.node_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": ports.apiserver_relay, "protocol": "TCP"}],
    }


#: Start order of the node's processes; the teardown stops them in reverse (after the kubelet).
NODE_COMPONENTS = (
    "node-registry",
    "containerd",
    "coredns",
    "kubelet",
    "fto-device-plugin",
    "apiserver-relay",
    "kube-proxy",
)


def host_volume_manifests(directory: Path, namespace: str, claim: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """A PersistentVolume on the real node's disk (hostPath) and a claim in ``namespace`` bound to it
    (the PV is named ``<namespace>-<claim>``)."""
    pv_name = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": labels},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv_name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
