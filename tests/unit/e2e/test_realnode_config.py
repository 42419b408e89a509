"""The real node's pure parts: its settings and command lines, the host listings' parsing, the OCI
archives, and its toolchain targets (no processes, no root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from e2e.nodeconfig import NodeCapacity, NodeLayout, NodeNetwork, NodePorts

from e2e import build_toolchain, node_build, nodeconfig, nodehost, ociarchive

LAYOUT = NodeLayout(Path("/tc/bin"), Path("/w/c1"))
PORTS = NodePorts(
    kubelet_healthz=20001,
    containerd_metrics=20002,
    coredns_ready=20003,
    coredns_health=20004,
    device_plugin=20005,
    registry=20006,
    apiserver_relay=20007,
)
NET = NodeNetwork(3)


def test_the_network_of_a_slot() -> None:
    assert (NET.bridge, NET.subnet, NET.node_ip, NET.range_start, NET.range_end) == (
        "fto-br3",
        "10.245.3.0/24",
        "10.245.3.1",
        "10.245.3.10",
        "10.245.3.250",
    )
    # kube-proxy's namespace: below the pods' range, its veth named after the slot too.
    assert (NET.proxy_ip, NET.proxy_link) == ("10.245.3.2", "fto-kp3")


def test_the_cni_bridge_has_no_gateway_role_masquerade_or_route_but_the_service_range() -> None:
    conf = nodeconfig.cni_conflist(LAYOUT, NET)
    (bridge,) = conf["plugins"]
    assert bridge == {
        "type": "bridge",
        "bridge": "fto-br3",
        "isGateway": False,
        "isDefaultGateway": False,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [
                [
                    {
                        "subnet": "10.245.3.0/24",
                        "rangeStart": "10.245.3.10",
                        "rangeEnd": "10.245.3.250",
                        "gateway": "10.245.3.1",
                    }
                ]
            ],
            "routes": [{"dst": "10.96.0.0/16", "gw": "10.245.3.2"}],
            "dataDir": "/w/c1/node/cni/ipam",
        },
    }


def test_containerd_pulls_every_name_from_the_nodes_registry() -> None:
    assert nodeconfig.hosts_toml(PORTS) == (
        'server = "http://127.0.0.1:20006"\n\n[host."http://127.0.0.1:20006"]\n  capabilities = ["pull", "resolve"]\n'
    )


def test_containerd_config() -> None:
    text = nodeconfig.containerd_config(LAYOUT, PORTS, "localhost/fto/pause:1", "/usr/sbin/runc", "/usr/lib/cni")
    lines = [line.strip() for line in text.splitlines()]
    for expected in (
        "version = 3",
        'root = "/w/c1/node/containerd/root"',
        'state = "/w/c1/node/containerd/state"',
        'address = "/w/c1/node/containerd/containerd.sock"',
        'address = "/w/c1/node/containerd/containerd.sock.ttrpc"',
        'address = "127.0.0.1:20002"',
        'sandbox = "localhost/fto/pause:1"',
        'config_path = "/w/c1/node/containerd/certs.d"',
        "restrict_oom_score_adj = true",
        "netns_mounts_under_state_dir = true",
        'runtime_path = "/tc/bin/containerd-shim-runc-v2"',
        'BinaryName = "/usr/sbin/runc"',
        'Root = "/w/c1/node/containerd/runc"',
        "SystemdCgroup = false",
        'bin_dirs = ["/usr/lib/cni"]',
        'conf_dir = "/w/c1/node/cni/net.d"',
        'stream_server_address = "127.0.0.1"',
    ):
        assert expected in lines, expected
    assert '"io.containerd.nri.v1.nri"' in text  # NRI's socket is machine-wide: off


def test_kubelet_config() -> None:
    config = nodeconfig.kubelet_config(LAYOUT, PORTS, NET, Path("/w/c1/pki"), "c1")
    picked = {
        key: config[key]
        for key in (
            "address", "port", "readOnlyPort", "healthzBindAddress", "healthzPort", "clusterDNS", "resolvConf",
            "cgroupDriver", "cgroupRoot", "failCgroupV1", "containerRuntimeEndpoint", "podLogsDir",
            "volumePluginDir", "registerWithTaints", "makeIPTablesUtilChains", "oomScoreAdj", "maxOpenFiles",
        )
    }  # fmt: skip
    assert picked == {
        "address": "10.245.3.1",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 20001,
        "clusterDNS": ["10.245.3.1"],
        "resolvConf": "",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": "/fto-node-c1",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": "unix:///w/c1/node/containerd/containerd.sock",
        "podLogsDir": "/w/c1/node/pod-logs",
        "volumePluginDir": "/w/c1/node/volume-plugins",
        "registerWithTaints": [{"key": "finetune.aidaptiv.io/real-node", "value": "true", "effect": "NoSchedule"}],
        "makeIPTablesUtilChains": False,
        "oomScoreAdj": 0,
        "maxOpenFiles": 16384,
    }
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["x509"] == {"clientCAFile": "/w/c1/pki/ca.crt"}
    assert config["authorization"]["mode"] == "Webhook"
    assert (config["tlsCertFile"], config["tlsPrivateKeyFile"]) == ("/w/c1/pki/kubelet.crt", "/w/c1/pki/kubelet.key")


def test_corefile_answers_cluster_zones_only() -> None:
    text = nodeconfig.corefile(NET, Path("/w/c1/kubeconfig"), "fto-c1", PORTS)
    assert text == (
        "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {\n"
        "    bind 10.245.3.1\n"
        "    errors\n"
        "    health 127.0.0.1:20004\n"
        "    ready 127.0.0.1:20003\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        '        kubeconfig "/w/c1/kubeconfig" fto-c1\n'
        "        pods insecure\n"
        "        ttl 5\n"
        "    }\n"
        "    loadbalance\n"
        "}\n"
    )
    assert "forward" not in text


def test_command_lines_of_the_node() -> None:
    kubelet = nodeconfig.kubelet(LAYOUT, PORTS, NET, "c1")
    assert kubelet.argv == [
        "/tc/bin/kubelet",
        "--config=/w/c1/node/kubelet.yaml",
        "--kubeconfig=/w/c1/node/kubelet.kubeconfig",
        "--hostname-override=real-node",
        "--node-ip=10.245.3.1",
        "--node-labels=finetune.aidaptiv.io/node-kind=real,phison.com/ai100-present=true",
        "--root-dir=/w/c1/kubelet",
        "--cert-dir=/w/c1/kubelet/pki",
        "--v=2",
    ]
    assert kubelet.health_url == "http://127.0.0.1:20001/healthz"
    plugin = nodeconfig.device_plugin(LAYOUT, PORTS, NodeCapacity(ai100=2, vgpu=3))
    assert plugin.argv[1:] == [
        "--registry-dir=/w/c1/kubelet/plugins_registry",
        "--socket-dir=/w/c1/node/device-plugins",
        "--health-port=20005",
        "--nvme-host-path=/w/c1/node/nvme0",
        "--nvme-container-path=/mnt/nvme0",
        "--resource=phison.com/ai100=2",
        "--resource=otterscale.com/vgpu=3",
    ]
    assert nodeconfig.containerd(LAYOUT, PORTS).health_url == "http://127.0.0.1:20002/v1/metrics"
    assert nodeconfig.coredns(LAYOUT, PORTS).argv == ["/tc/bin/coredns", "-conf", "/w/c1/node/Corefile"]
    assert nodeconfig.registry(LAYOUT, PORTS).argv == ["/tc/bin/oci-registry", "--port=20006", "--quiet"]


def test_kube_proxy_runs_in_its_namespace_and_touches_nothing_machine_wide() -> None:
    proxy = nodeconfig.kube_proxy(LAYOUT, NET)
    assert proxy.argv == [
        "nsenter",
        "--net=/w/c1/node/kube-proxy.netns",
        "--",
        "/tc/bin/kube-proxy",
        "--config=/w/c1/node/kube-proxy.yaml",
        "--v=2",
    ]
    assert (proxy.name, proxy.health_url, proxy.health_tls) == (
        "kube-proxy",
        "http://10.245.3.2:10256/healthz",
        "none",
    )
    assert nodeconfig.kube_proxy_config(LAYOUT, NET) == {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/w/c1/node/kube-proxy.kubeconfig", "qps": 50, "burst": 100},
        "hostnameOverride": "real-node",
        "mode": "nftables",
        "nftables": {"masqueradeAll": True},
        "detectLocalMode": "ClusterCIDR",
        "clusterCIDR": "10.245.3.0/24",
        "healthzBindAddress": "10.245.3.2:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": ["10.245.3.2/32"],
        "oomScoreAdj": 0,
        # 0: kube-proxy leaves the host's conntrack table size and timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "configSyncPeriod": "15m",
    }
    kubeconfig = nodeconfig.kube_proxy_kubeconfig(NET, PORTS, Path("/w/c1/pki"))
    assert kubeconfig["clusters"] == [
        {
            "name": "local",
            "cluster": {
                "server": "https://10.245.3.1:20007",
                "certificate-authority": "/w/c1/pki/ca.crt",
                "tls-server-name": "kubernetes.default.svc",
            },
        }
    ]
    assert kubeconfig["users"][0]["user"]["client-certificate"] == "/w/c1/pki/kube-proxy.crt"


def test_the_kubernetes_service_ends_at_the_relay_on_the_bridge() -> None:
    relay = nodeconfig.apiserver_relay(NET, PORTS, 6443, "/usr/bin/python3")
    assert relay.argv == [
        "/usr/bin/python3",
        str(Path(nodeconfig.__file__).resolve().parent / "tcprelay.py"),
        "--listen",
        "10.245.3.1:20007",
        "--connect",
        "127.0.0.1:6443",
    ]
    assert (relay.health_url, relay.health_tls) == ("https://10.245.3.1:20007/readyz", "admin-ca")
    assert nodeconfig.kubernetes_endpoint_slice(NET, PORTS) == {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "e2e.finetune.aidaptiv.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.245.3.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": 20007, "protocol": "TCP"}],
    }


def test_the_non_device_quantities_are_patched_into_the_status() -> None:
    assert nodeconfig.status_patch(NodeCapacity(vgpumem=1000, vgpumem_percentage=200)) == [
        {"op": "add", "path": "/status/capacity/otterscale.com~1vgpumem", "value": "1000"},
        {"op": "add", "path": "/status/capacity/otterscale.com~1vgpumem-percentage", "value": "200"},
    ]


def test_socket_paths_of_a_usual_work_dir_fit() -> None:
    usual = NodeLayout(Path("/tc/bin"), Path("/root/.cache/finetune-operator/clusters/pytest-4194304"))
    assert max(len(str(p)) for p in usual.sockets()) <= nodeconfig.MAX_SOCKET_PATH


# -- the host listings' parsing --------------------------------------------------------------------

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
100 22 0:50 / /w/c1/kubelet/pods/u/volumes/kubernetes.io~empty-dir/m rw - tmpfs tmpfs rw
101 22 0:51 / /w/c1/node/containerd/state/netns/cni-1 rw - nsfs nsfs rw
102 22 0:52 / /w/c10/kubelet/x rw - tmpfs tmpfs rw
103 22 0:53 / /w/c1/with\\040space rw - tmpfs tmpfs rw
"""


def test_mounts_under_a_dir_are_listed_exactly() -> None:
    assert nodehost.mounts_under(Path("/w/c1"), MOUNTINFO) == [
        "/w/c1/kubelet/pods/u/volumes/kubernetes.io~empty-dir/m",
        "/w/c1/node/containerd/state/netns/cni-1",
        "/w/c1/with space",
    ]


def test_the_host_netfilter_listing_drops_comments_and_counters(tmp_path: Path) -> None:
    tool = tmp_path / "fake-iptables-save"
    tool.write_text(
        "#!/bin/sh\n"
        "echo '# Generated by iptables-save v1.8.9 on Thu Dec  3 10:00:00 2026'\n"
        "echo '*nat'\necho ':PREROUTING ACCEPT [12:3400]'\necho '-A PREROUTING -j KUBE-SERVICES'\necho COMMIT\n"
    )
    tool.chmod(0o755)
    assert nodehost.netfilter_ruleset(((str(tool),), (str(tmp_path / "absent"),))) == {
        str(tool): ["*nat", ":PREROUTING ACCEPT", "-A PREROUTING -j KUBE-SERVICES", "COMMIT"]
    }


def test_cgroup_hierarchies_are_found_in_the_mount_table() -> None:
    mounts = (
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
    )
    assert nodehost.cgroup_mounts(mounts) == [
        Path("/sys/fs/cgroup/cpu"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_the_kernel_settings_are_kept_for_the_last_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodehost, "RUN_DIR", tmp_path)
    monkeypatch.setattr(nodehost, "read_sysctls", lambda names=nodehost.KUBELET_SYSCTLS: dict.fromkeys(names, "0"))
    first, second = tmp_path / "c1", tmp_path / "c2"
    first.mkdir()
    second.mkdir()
    nodehost.hold_sysctls(str(first))
    monkeypatch.setattr(nodehost, "read_sysctls", lambda names=nodehost.KUBELET_SYSCTLS: dict.fromkeys(names, "1"))
    nodehost.hold_sysctls(str(second))  # the kubelet of c1 changed them: c2 must not record those
    state = json.loads((tmp_path / "sysctls.json").read_text())
    assert state["holders"] == [str(first), str(second)]
    assert set(state["original"].values()) == {"0"}
    assert nodehost.release_sysctls(str(first)) == {}  # c2 still runs: nothing is put back
    written: dict[str, str] = {}
    monkeypatch.setattr(Path, "write_text", lambda self, value: written.update({str(self): value}))
    assert set(nodehost.release_sysctls(str(second)).values()) == {"0"}
    assert written == {f"/proc/sys/{name}": "0" for name in nodehost.KUBELET_SYSCTLS}


# -- OCI archives ---------------------------------------------------------------------------------------


def test_an_archive_is_the_same_for_the_same_inputs_and_reads_back(tmp_path: Path) -> None:
    image = ociarchive.empty_image().add_layer([ociarchive.FileEntry("usr/bin/tool", b"#!/bin/sh\n", 0o755)], "test")
    image = image.with_config(Entrypoint=["/usr/bin/tool"])
    first = ociarchive.write_archive(image, "localhost/fto/tool:abc", tmp_path / "a.tar")
    second = ociarchive.write_archive(image, "localhost/fto/tool:abc", tmp_path / "b.tar")
    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        assert index["manifests"][0]["annotations"] == {
            "io.containerd.image.name": "localhost/fto/tool:abc",
            "org.opencontainers.image.ref.name": "abc",
        }
        assert index["manifests"][0]["digest"] == first
    again = ociarchive.read_archive(tmp_path / "a.tar")
    assert again.config == image.config
    ((layer, diff_id),) = again.layers
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        assert [(m.name, m.mode, m.mtime, m.uid) for m in tar.getmembers()] == [
            ("usr", 0o755, 0, 0),
            ("usr/bin", 0o755, 0, 0),
            ("usr/bin/tool", 0o755, 0, 0),
        ]
    assert diff_id == "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()


def test_a_layer_on_a_base_keeps_the_base_and_adds_its_diff_id(tmp_path: Path) -> None:
    base = ociarchive.empty_image().add_layer([ociarchive.FileEntry("etc/os-release", b"ID=debian\n")], "base")
    ociarchive.write_archive(base, "localhost/base:1", tmp_path / "base.tar")
    stacked = ociarchive.read_archive(tmp_path / "base.tar").add_layer([ociarchive.FileEntry("app", b"x")], "app")
    assert [blob.digest for blob, _ in stacked.layers[:1]] == [blob.digest for blob, _ in base.layers]
    assert len(stacked.config["rootfs"]["diff_ids"]) == 2
    assert stacked.config["history"][-1]["created_by"] == "app"


# -- the node's toolchain ----------------------------------------------------------------------------------


def test_the_node_targets_and_their_tags() -> None:
    by_name = {t.binary: t for t in build_toolchain.targets()}
    assert {name for name, t in by_name.items() if t.node} == set(build_toolchain.NODE_BINARIES)
    assert by_name["kubelet"].wrapper == "kubernetes"
    assert (by_name["kube-proxy"].wrapper, by_name["kube-proxy"].package) == (
        "kubernetes",
        "k8s.io/kubernetes/cmd/kube-proxy",
    )
    assert by_name["containerd"].tags == ("no_btrfs", "urfave_cli_no_docs", "osusergo", "netgo")
    assert by_name["containerd-shim-runc-v2"].tags[-1] == "no_grpc"
    assert "-X github.com/containerd/containerd/v2/version.Version=v2.4.2" in by_name["containerd"].ldflags
    assert by_name["fto-device-plugin"].sources == ("main.go",)
    assert build_toolchain.versions()["containerd"] == "v2.4.2"
    assert build_toolchain.versions()["coredns"] == "v1.15.0"


def test_a_target_without_tags_keeps_the_stamp_it_had() -> None:
    """Tags are hashed only when there are some: the stamps of the cluster's binaries did not change."""
    etcd = next(t for t in build_toolchain.targets() if t.binary == "etcd")
    wrapper = build_toolchain.WRAPPERS_DIR / "etcd"
    digest = hashlib.sha256()
    for part in (
        "go1.x",
        etcd.package,
        " ".join(etcd.ldflags),
        (wrapper / "go.mod").read_text(),
        (wrapper / "go.sum").read_text(),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    assert build_toolchain._stamp(etcd, "go1.x") == digest.hexdigest()


def test_a_machine_where_the_node_cannot_run_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTO_REAL_NODE", "0")
    assert node_build.unsupported_reason() == "FTO_REAL_NODE=0 turns it off"
    monkeypatch.delenv("FTO_REAL_NODE")
    monkeypatch.setattr(node_build.os, "geteuid", lambda: 1000)
    assert node_build.unsupported_reason() == (
        "not root: the kubelet and containerd need root (mounts, cgroups, network namespaces)"
    )


def test_the_trainer_images_model_is_what_the_stand_in_reads() -> None:
    files = node_build.model_files()
    assert json.loads(files["config.json"])["model_type"] == "llama"
    assert node_build.MODEL_DIR == "mnt/data/models/TinyLlama-1.1B-Chat-v1.0"  # the chart's default path
