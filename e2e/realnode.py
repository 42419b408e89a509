"""A real node beside the kwok nodes: kubelet + containerd (runc) + CoreDNS + kube-proxy + a fake
device plugin.

``RealNode(local).up()`` starts it in a cluster that ``LocalCluster`` brought up (``e2e/cluster up
--real-node``, or ``ClusterConfig(real_node=True)``); ``down()`` undoes everything it did, in this
order (otherwise mounts and cgroups leak into the next run): cordon the node and delete its pods
(the kubelet stops their containers), delete the Node (the API server never dials its address
again) and the ``kubernetes`` Service's endpoint, stop the kubelet, remove what containers are left
(``ctr``), stop kube-proxy, the API server's relay, containerd, CoreDNS, the device plugin and the
node's registry by pid, unmount everything under the node's directory (kube-proxy's network
namespace too: the kernel then frees it with its nftables rules), delete the bridge (and the veth
into that namespace), remove the cgroups, put back the kernel settings the kubelet changed (when no
other real node runs) and the kubelet's machine-wide leftovers.

The node's settings are in ``e2e/nodeconfig.py``; the host changes in ``e2e/nodehost.py``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import build_toolchain, node_build, nodeconfig, nodehost, processes
from .commands import LOOPBACK
from .common import ENV_MARKER, ClusterError, log, wait_until
from .nodeconfig import NODE_NAME, NodeCapacity, NodeLayout, NodeNetwork, NodePorts
from .pki import add_leaf, kubeconfig
from .processes import ProcessRecord

if TYPE_CHECKING:
    import ssl

    from .commands import Component, HealthTLS
    from .config import ClusterConfig
    from .handle import Cluster


class ControlPlane(Protocol):
    """What the node needs of the LocalCluster it joins (which makes the node: it is not imported here)."""

    config: ClusterConfig
    workdir: Path
    pki: Path
    logs: Path
    kubeconfig: Path
    state_file: Path
    marker: bytes
    processes: list[ProcessRecord]
    ports: dict[str, int]
    real_node_state: dict[str, Any]

    def load_state(self) -> dict[str, Any] | None: ...
    def save_state(self) -> None: ...
    def start_process(self, component: Component) -> ProcessRecord: ...
    def tls(self, kind: HealthTLS) -> ssl.SSLContext | None: ...


#: How long `down` waits for the kubelet to stop the pods it runs before going on without it.
POD_DELETE_TIMEOUT = 90.0
NODE_READY_TIMEOUT = 120.0


def unsupported_reason() -> str | None:
    """Why a real node cannot run here (None: it can). Tests skip with this reason."""
    return node_build.unsupported_reason()


class RealNode:
    """The real node of one LocalCluster; its state lives in the cluster's state.json ("real_node")."""

    def __init__(self, local: ControlPlane, capacity: NodeCapacity | None = None) -> None:
        self.local = local
        self.capacity = capacity or NodeCapacity()
        self.layout = NodeLayout(build_toolchain.bin_dir(), local.workdir)
        self.cluster_name = local.config.name
        self.cgroup_root = nodeconfig.cgroup_root(self.cluster_name)

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return dict((self.local.load_state() or {}).get("real_node") or {})

    def _save(self, **values: Any) -> None:
        self.local.real_node_state.update(values)
        self.local.save_state()

    @property
    def network(self) -> NodeNetwork | None:
        slot = self.state().get("slot")
        return None if slot is None else NodeNetwork(int(slot))

    # -- up ------------------------------------------------------------------------------------

    def up(self, client: Cluster) -> None:
        reason = unsupported_reason()
        if reason:
            raise ClusterError(f"cannot start a real node here: {reason}")
        self._ensure_built()
        self._check_socket_paths()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        ports = NodePorts(**processes.free_ports(NodePorts.names()))
        with nodehost.machine_lock():
            network = NodeNetwork(nodehost.free_slot(nodeconfig.MAX_SLOTS))
            nodehost.create_bridge(network.bridge, f"{network.node_ip}/24")
            nodehost.run("ip", "link", "set", "dev", network.bridge, "alias", str(self.local.workdir))
            nodehost.hold_sysctls(str(self.local.workdir))
        images = node_build.images(build_toolchain.share_dir())
        self._save(
            slot=network.slot,
            bridge=network.bridge,
            node_ip=network.node_ip,
            node_name=NODE_NAME,
            cgroup_root=self.cgroup_root,
            ports=ports.__dict__,
            capacity=self.capacity.__dict__,
            images={kind: images[kind]["name"] for kind in node_build.IMAGE_KINDS},
        )
        log(f"real node: bridge {network.bridge} {network.node_ip}/24, cgroups {self.cgroup_root}")
        nodehost.create_cgroup_root(self.cgroup_root)
        self._write_files(network, ports, images["pause"]["name"])
        self._start(nodeconfig.registry(self.layout, ports), 30)
        self._start(nodeconfig.containerd(self.layout, ports), 60)
        for kind in node_build.IMAGE_KINDS:
            self.ctr("images", "import", "--snapshotter", "overlayfs", images[kind]["archive"], timeout=300)
        self._start(nodeconfig.coredns(self.layout, ports), 60)
        self._start(nodeconfig.kubelet(self.layout, ports, network, self.cluster_name), 120)
        self._start(nodeconfig.device_plugin(self.layout, ports, self.capacity), 60)
        self._wait_ready(client)
        self.advertise(client)
        self._start_service_proxy(client, network, ports)

    def _start_service_proxy(self, client: Cluster, network: NodeNetwork, ports: NodePorts) -> None:
        """ClusterIP Services for the node's pods: the API server's relay on the bridge, the
        ``kubernetes`` Service's endpoint on it, and kube-proxy in its own network namespace (see
        ``e2e/nodeconfig.py``), healthy once it has written the Services' rules."""
        lay = self.layout
        self._save(proxy_link=network.proxy_link, proxy_ip=network.proxy_ip, netns=str(lay.kube_proxy_netns))
        nodehost.create_proxy_netns(lay.kube_proxy_netns, network.proxy_link, network.bridge, f"{network.proxy_ip}/24")
        self._save(netns_inode=nodehost.netns_inode(lay.kube_proxy_netns))
        self._start(nodeconfig.apiserver_relay(network, ports, self.local.ports["apiserver"], sys.executable), 30)
        client.apply(nodeconfig.kubernetes_endpoint_slice(network, ports))
        add_leaf(self.local.pki, "kube-proxy", f"/CN={nodeconfig.KUBE_PROXY_USER}", "clientAuth")
        kube_proxy_kubeconfig = nodeconfig.kube_proxy_kubeconfig(network, ports, self.local.pki)
        lay.kube_proxy_kubeconfig.write_text(json.dumps(kube_proxy_kubeconfig, indent=2) + "\n")
        lay.kube_proxy_config.write_text(json.dumps(nodeconfig.kube_proxy_config(lay, network), indent=2) + "\n")
        self._start(nodeconfig.kube_proxy(lay, network), 60)

    def nsenter(self, *argv: str) -> str:
        """A command's output from inside kube-proxy's network namespace (e.g. ``nft list ruleset``)."""
        return nodehost.nsenter(self.layout.kube_proxy_netns, *argv).stdout

    def _ensure_built(self) -> None:
        if build_toolchain.is_node_built():
            return
        if not self.local.config.build:
            raise ClusterError("the real node's toolchain is not built: run e2e/cluster build")
        log("real node: its toolchain is missing: building it first")
        build_toolchain.build(node=True)

    def _check_socket_paths(self) -> None:
        too_long = [str(p) for p in self.layout.sockets() if len(str(p)) > nodeconfig.MAX_SOCKET_PATH]
        if too_long:
            raise ClusterError(
                f"the work dir {self.local.workdir} is too deep for unix socket paths ({too_long[0]} has "
                f"{len(too_long[0])} characters, at most {nodeconfig.MAX_SOCKET_PATH}): use a shorter --workdir"
            )

    def _write_files(self, network: NodeNetwork, ports: NodePorts, pause: str) -> None:
        lay = self.layout
        pki = self.local.pki
        for directory in (lay.containerd_dir, lay.cni_conf_dir, lay.kubelet_root, lay.pod_logs, lay.nvme):
            directory.mkdir(parents=True, exist_ok=True)
        add_leaf(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
        add_leaf(pki, "kubelet", f"/CN={NODE_NAME}", "serverAuth", f"IP:{network.node_ip},DNS:{NODE_NAME}")
        lay.containerd_config.write_text(
            nodeconfig.containerd_config(lay, ports, pause, node_build.RUNC, node_build.CNI_BIN_DIR)
        )
        default_hosts = lay.certs_d / "_default"
        default_hosts.mkdir(parents=True, exist_ok=True)
        (default_hosts / "hosts.toml").write_text(nodeconfig.hosts_toml(ports))
        conflist = nodeconfig.cni_conflist(lay, network)
        (lay.cni_conf_dir / "10-fto.conflist").write_text(json.dumps(conflist, indent=2) + "\n")
        config = nodeconfig.kubelet_config(lay, ports, network, pki, self.cluster_name)
        lay.kubelet_config.write_text(json.dumps(config, indent=2) + "\n")
        server = self._apiserver_url()
        node_kubeconfig = kubeconfig(server, pki, f"{self.cluster_name}-{NODE_NAME}")
        node_kubeconfig["users"] = [
            {
                "name": f"fto-{self.cluster_name}-{NODE_NAME}-admin",
                "user": {
                    "client-certificate": str(pki / "kubelet-client.crt"),
                    "client-key": str(pki / "kubelet-client.key"),
                },
            }
        ]
        lay.kubelet_kubeconfig.write_text(json.dumps(node_kubeconfig, indent=2) + "\n")
        context = f"fto-{self.cluster_name}"
        lay.corefile.write_text(nodeconfig.corefile(network, self.local.kubeconfig, context, ports))

    def _apiserver_url(self) -> str:
        return f"https://{LOOPBACK}:{self.local.ports['apiserver']}"

    def _start(self, component: Any, timeout: float) -> ProcessRecord:
        record = self.local.start_process(component)
        processes.wait_healthy(record, self.local.tls(record.health_tls), timeout)
        return record

    def _wait_ready(self, client: Cluster) -> None:
        def ready() -> bool:
            for record in self.local.processes:
                processes.check_running(record)
            node = client.get_json("node", NODE_NAME)
            conditions = (node or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(
            ready,
            timeout=NODE_READY_TIMEOUT,
            what=f"node {NODE_NAME} Ready",
            state=lambda: client.describe("node", NODE_NAME) + self._log_tail("kubelet"),
        )

    def advertise(self, client: Cluster) -> None:
        """Patch the non-device quantities into the node's status; wait until all four are allocatable
        (the device plugin's two come with its registration)."""
        client.kubectl(
            "patch", "node", NODE_NAME, "--subresource=status", "--type=json",
            "-p", json.dumps(nodeconfig.status_patch(self.capacity)),
        )  # fmt: skip
        want = {name: str(count) for name, count in {**self.capacity.devices(), **self.capacity.patched()}.items()}

        def advertised() -> bool:
            node = client.get_json("node", NODE_NAME) or {}
            allocatable = node.get("status", {}).get("allocatable", {})
            return all(allocatable.get(name) == value for name, value in want.items())

        wait_until(
            advertised,
            timeout=60,
            what=f"node {NODE_NAME} to advertise {want}",
            state=lambda: json.dumps((client.get_json("node", NODE_NAME) or {}).get("status", {}).get("allocatable")),
        )

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.local.logs / f"{name}.log"
        with contextlib.suppress(OSError):
            return f"\n--- last lines of {path} ---\n" + "\n".join(path.read_text().splitlines()[-lines:])
        return ""

    # -- ctr -----------------------------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.layout.bins / "ctr"), "--address", str(self.layout.containerd_socket), "-n", "k8s.io", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive (its ``org.opencontainers.image.ref.name`` or containerd's name
        annotation names it) into the node's containerd, where the kubelet finds it without a pull."""
        self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive), timeout=300)

    def conntrack(self) -> list[str]:
        """The connections kube-proxy's namespace tracks (``/proc/net/nf_conntrack`` read from inside
        it), e.g. a pod's to 10.96.0.1:443 and where it was DNATed to."""
        return self.nsenter("cat", "/proc/net/nf_conntrack").splitlines()

    # -- down ----------------------------------------------------------------------------------

    def down(self, client: Cluster | None) -> None:
        """Undo everything ``up`` did, in the order that leaves nothing behind (see the module doc).
        ``client`` is None when the API server is not reachable: the pods are then not deleted through
        it, and their containers are removed with ctr."""
        state = self.state()
        bridge = state.get("bridge") or self.bridge_by_alias()
        if client is not None:
            self._delete_pods(client)
            self._delete_endpoints(client)
        self._stop(("kubelet",))
        self._remove_containers()
        self._stop(("kube-proxy", "apiserver-relay", "fto-device-plugin", "coredns", "containerd", "node-registry"))
        self._stop_shims()
        # The kubelet's root dir, containerd's dirs and kube-proxy's namespace (its last holder: no
        # process is left in it, so the kernel frees it and its rules now).
        left = nodehost.unmount_under(self.local.workdir)
        if left:
            raise ClusterError(f"real node: still mounted after unmounting: {left}")
        with nodehost.machine_lock():
            if state.get("proxy_link"):
                nodehost.delete_proxy_netns(self.layout.kube_proxy_netns, str(state["proxy_link"]))
            if bridge:
                nodehost.delete_bridge(str(bridge))
            stuck = nodehost.remove_cgroups(self.cgroup_root)
            restored = nodehost.release_sysctls(str(self.local.workdir))
            if restored:
                log(f"real node: kernel settings put back: {restored}")
            if not nodehost.other_nodes_running(str(bridge or "")):
                nodehost.clean_shared_paths()
        if stuck:
            raise ClusterError(f"real node: cgroups could not be removed: {[str(p) for p in stuck]}")

    def present(self) -> bool:
        """Anything of this node on the host or in state.json (for `down`, also of a half-started node)."""
        return bool(self.state() or self.bridge_by_alias() or nodehost.cgroup_dirs(self.cgroup_root))

    def bridge_by_alias(self) -> str | None:
        """The bridge whose alias is this cluster's work dir (state.json may be gone)."""
        for name in nodehost.links():
            alias = Path("/sys/class/net", name, "ifalias")
            with contextlib.suppress(OSError):
                if name.startswith("fto-br") and alias.read_text().strip() == str(self.local.workdir):
                    return name
        return None

    def _delete_pods(self, client: Cluster) -> None:
        if client.get_json("node", NODE_NAME) is None:
            return
        client.kubectl("cordon", NODE_NAME, check=False)
        selector = f"spec.nodeName={NODE_NAME}"
        client.kubectl("delete", "pods", "-A", "--field-selector", selector, "--wait=false", check=False)

        def gone() -> bool:
            pods = client.get_json("pods", "-A", "--field-selector", selector)
            return not (pods or {}).get("items")

        try:
            wait_until(gone, timeout=POD_DELETE_TIMEOUT, what=f"the pods of {NODE_NAME} to be deleted")
        except TimeoutError as exc:
            log(f"real node: {exc}; removing their containers with ctr")
        client.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=true", check=False)

    def _delete_endpoints(self, client: Cluster) -> None:
        """The ``kubernetes`` Service's endpoint named this node's bridge: gone with it (the API server
        keeps none of its own here)."""
        slice_ = client.get_json("endpointslice", "kubernetes", "-n", "default") or {}
        labels = slice_.get("metadata", {}).get("labels", {})
        if labels.get("endpointslice.kubernetes.io/managed-by") == nodeconfig.ENDPOINTS_MANAGER:
            client.kubectl("delete", "endpointslice", "kubernetes", "-n", "default", "--ignore-not-found", check=False)

    def _records(self, names: tuple[str, ...]) -> list[ProcessRecord]:
        return [r for r in processes.StateFile(self.local.state_file).records() if r.name in names]

    def _stop(self, names: tuple[str, ...]) -> None:
        records = self._records(names)
        pids = [r.pid for r in records if processes.is_same_process(r.pid, r.starttime)]
        marked = [p for p in processes.marker_pids(self.local.marker) if processes.proc_name(p) in names]
        processes.stop_pids(sorted({*pids, *marked}))

    def _remove_containers(self) -> None:
        if not self.layout.containerd_socket.exists():
            return
        containerd = self._records(("containerd",))
        if not containerd or not processes.is_same_process(containerd[0].pid, containerd[0].starttime):
            return
        tasks = [line.split()[0] for line in self.ctr("tasks", "ls", "-q", check=False).stdout.split()]
        for task in tasks:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for task in tasks:
            for _ in range(50):
                if self.ctr("tasks", "delete", task, check=False).returncode == 0:
                    break
                time.sleep(0.2)
        containers = self.ctr("containers", "ls", "-q", check=False).stdout.split()
        if containers:
            self.ctr("containers", "rm", *containers, check=False)

    def _stop_shims(self) -> None:
        """containerd's shims carry its environment (the cluster's marker): any left are stopped."""
        shims = [
            p for p in processes.marker_pids(self.local.marker) if processes.proc_name(p).startswith("containerd-shim")
        ]
        processes.stop_pids(shims)

    # -- status --------------------------------------------------------------------------------

    def status(self, client: Cluster | None) -> dict[str, Any]:
        state = self.state()
        info: dict[str, Any] = {
            "name": state.get("node_name", NODE_NAME),
            "bridge": state.get("bridge"),
            "ip": state.get("node_ip"),
            "cgroup_root": state.get("cgroup_root"),
            "trainer_image": (state.get("images") or {}).get("trainer"),
        }
        if state.get("proxy_ip"):
            relay = f"{state.get('node_ip')}:{(state.get('ports') or {}).get('apiserver_relay')}"
            info["service_proxy"] = (
                f"kube-proxy (nftables) in {state.get('netns')} at {state['proxy_ip']}; "
                f"the kubernetes Service ends at {relay}"
            )
        if client is not None:
            node = client.get_json("node", NODE_NAME) or {}
            conditions = node.get("status", {}).get("conditions", [])
            info["ready"] = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            info["allocatable"] = node.get("status", {}).get("allocatable", {})
            info["taints"] = node.get("spec", {}).get("taints", [])
        return info


def host_leftovers(
    workdir: Path, cluster_name: str, bridge: str | None, netns_inode: int | None = None
) -> dict[str, list[str]]:
    """What a real node of ``workdir`` left on this host, by exact listing (empty lists: nothing):
    processes with its marker, mounts under the work dir, its bridge and the veth into kube-proxy's
    namespace, its cgroup directories, and what still holds kube-proxy's namespace (``netns_inode``)."""
    marker = f"{ENV_MARKER}={workdir}".encode()
    ours = set() if bridge is None else {bridge, bridge.replace("fto-br", "fto-kp", 1)}
    return {
        "processes": [f"{pid} {processes.proc_name(pid)}" for pid in sorted(processes.marker_pids(marker))],
        "mounts": nodehost.mounts_under(workdir),
        "links": [name for name in nodehost.links() if name in ours],
        "cgroups": [str(p) for p in nodehost.cgroup_dirs(nodeconfig.cgroup_root(cluster_name))],
        "netns": [] if netns_inode is None else nodehost.netns_holders(netns_inode),
    }
