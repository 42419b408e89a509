"""The real node itself: how it is told apart from kwok's, what `status` says, and that `down` leaves
nothing of it on this host (checked by exact listings: processes, mounts, links, cgroups, kube-proxy's
network namespace, the host's netfilter rules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import localcluster as lc
from e2e import nodeconfig, nodehost, realnode
from tests.e2e.realnode.nodes import RealNode, describe_pod, pod

REPO = Path(__file__).resolve().parents[3]


def test_real_and_kwok_nodes_are_told_apart_by_label_and_taint(cluster: lc.Cluster, real_node: RealNode) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get_json("nodes")["items"]}
    kinds = {name: n["metadata"]["labels"].get(nodeconfig.NODE_KIND_LABEL) for name, n in nodes.items()}
    assert kinds[real_node.name] == "real"
    assert {kind for name, kind in kinds.items() if name != real_node.name} == {"kwok"}
    node = nodes[real_node.name]
    assert node["spec"]["taints"] == [{"key": nodeconfig.REAL_NODE_TAINT, "value": "true", "effect": "NoSchedule"}]
    assert [a for a in node["status"]["addresses"] if a["type"] == "InternalIP"] == [
        {"type": "InternalIP", "address": real_node.node_ip}
    ]
    allocatable = node["status"]["allocatable"]
    assert {k: v for k, v in allocatable.items() if "/" in k} == {
        "phison.com/ai100": "4",
        "otterscale.com/vgpu": "8",
        "otterscale.com/vgpumem": str(8 * 24576),
        "otterscale.com/vgpumem-percentage": "800",
    }
    assert real_node.name not in {n["metadata"]["name"] for n in cluster.fake_nodes()}


def test_status_shows_the_real_node(real_node: RealNode) -> None:
    local = real_node.cluster
    info = local.status()["real_node"]
    assert (info["name"], info["ready"], info["ip"], info["bridge"]) == (
        real_node.name,
        True,
        real_node.node_ip,
        real_node.bridge,
    )
    cli = subprocess.run(
        [
            sys.executable,
            str(REPO / "e2e" / "cluster"),
            "--name",
            local.config.name,
            "--workdir",
            str(local.workdir),
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"  real node {real_node.name}: Ready; {real_node.node_ip} on {real_node.bridge};" in cli.stdout


@pytest.fixture
def own_cluster() -> Iterator[lc.LocalCluster]:
    """A second cluster with its own real node (another slot of this machine), for its teardown."""
    reason = realnode.unsupported_reason()
    if reason:
        pytest.skip(f"no real node on this machine: {reason}")
    lc.reap_stale_clusters("pytest-nd-")
    local = lc.LocalCluster(lc.ClusterConfig(name=f"pytest-nd-{os.getpid()}", nodes=1, real_node=True))
    try:
        yield local
    finally:
        if local.workdir.exists():
            local.down(quiet=True)


def test_down_leaves_no_process_mount_link_cgroup_or_netfilter_rule(own_cluster: lc.LocalCluster) -> None:
    alone = not any(name.startswith("fto-br") for name in nodehost.links())
    settings = nodehost.read_sysctls()
    host_rules = nodehost.netfilter_ruleset()
    handle = own_cluster.up()
    node = RealNode.of(own_cluster)
    namespace = handle.create_namespace()
    # A running pod with volumes the kubelet mounts (emptyDir, memory-backed emptyDir, a ConfigMap):
    # `down` must delete it through the API and unmount what is left.
    handle.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}, namespace)
    running = pod(
        "busy",
        node,
        "exec sleep 3600",
        container={
            "volumeMounts": [
                {"name": "e", "mountPath": "/e"},
                {"name": "m", "mountPath": "/m"},
                {"name": "c", "mountPath": "/c"},
            ]
        },
        volumes=[
            {"name": "e", "emptyDir": {}},
            {"name": "m", "emptyDir": {"medium": "Memory"}},
            {"name": "c", "configMap": {"name": "c"}},
        ],
    )
    handle.apply(running, namespace)
    handle.wait_pod_phase(namespace, ["Running"], pod="busy", timeout=120)
    state = own_cluster.load_state() or {}
    bridge, netns_inode = state["real_node"]["bridge"], state["real_node"]["netns_inode"]
    before = realnode.host_leftovers(own_cluster.workdir, own_cluster.config.name, bridge, netns_inode)
    veths = nodehost.bridge_ports(bridge)
    # kube-proxy's rules are in its own namespace, none in the host's (kube-proxy there would share its
    # fixed table name with every other real node's): the Service's map holds the kubernetes Service.
    proxy_rules = realnode.RealNode(own_cluster).nsenter("nft", "list", "map", "ip", "kube-proxy", "service-ips")
    assert "10.96.0.1 . tcp . 443 : goto service-" in proxy_rules, proxy_rules
    assert nodehost.netfilter_ruleset() == host_rules
    container_pids = nodehost.cgroup_pids(nodeconfig.cgroup_root(own_cluster.config.name))
    # The listings see what is there (else an empty listing after `down` would prove nothing).
    names = {line.split()[1] for line in before["processes"]}
    expected = {"containerd", "kubelet", "coredns", "fto-device-plugin", "kube-proxy", "kube-apiserver", "etcd"}
    assert expected <= names, before
    assert any(name.startswith("containerd-shim") for name in names), before
    assert any("/netns/" in m for m in before["mounts"]) and any(
        "kubernetes.io~empty-dir" in m for m in before["mounts"]
    )
    proxy_link = bridge.replace("fto-br", "fto-kp")
    assert before["links"] == sorted([bridge, proxy_link]) and proxy_link in veths, nodehost.links()
    assert before["cgroups"] and container_pids, describe_pod(handle, namespace, "busy")
    kube_proxy = next(int(line.split()[0]) for line in before["processes"] if line.split()[1] == "kube-proxy")
    netns_file = str(own_cluster.workdir / "node" / "kube-proxy.netns")
    assert {f"process {kube_proxy}", f"mount {netns_file}"} <= set(before["netns"]), before["netns"]

    own_cluster.down()

    after = realnode.host_leftovers(own_cluster.workdir, own_cluster.config.name, bridge, netns_inode)
    assert after == {"processes": [], "mounts": [], "links": [], "cgroups": [], "netns": []}
    # The host's netfilter rules and chains are as they were before the node (nftables and both
    # iptables back ends, listed exactly): kube-proxy added none there, and its namespace is gone.
    assert nodehost.netfilter_ruleset() == host_rules
    assert [pid for pid in sorted(container_pids) if Path(f"/proc/{pid}").exists()] == []
    assert not own_cluster.workdir.exists()
    assert [name for name in nodehost.links() if name in (bridge, *veths)] == []
    record = nodehost.RUN_DIR / "sysctls.json"
    held = json.loads(record.read_text())["holders"] if record.exists() else []
    assert str(own_cluster.workdir) not in held
    if alone:  # no other real node ran: the kernel settings the kubelet changed are back
        assert nodehost.read_sysctls() == settings
