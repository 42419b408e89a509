"""The pure parts of the local cluster: command lines, configs, durations, log lines (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from e2e import build_toolchain, commands, kwok_helpers, pki
from e2e import localcluster as lc

BINS = Path("/tc/bin")
WORK = Path("/w/c1")
LAYOUT = commands.Layout(BINS, WORK)
PORTS = commands.Ports(
    etcd_client=2379, etcd_peer=2380, apiserver=6443, controller_manager=10257, scheduler=10259, kwok=10250
)
ALL = (commands.etcd, commands.apiserver, commands.controller_manager, commands.scheduler, commands.kwok)


def flags(argv: list[str]) -> dict[str, str]:
    """--name=value flags of an argv (argv[0] left out)."""
    return dict(arg[2:].split("=", 1) for arg in argv[1:])


# -- command lines ---------------------------------------------------------------------------


def test_etcd_command_line() -> None:
    etcd = commands.etcd(LAYOUT, PORTS)
    assert etcd.argv == [
        "/tc/bin/etcd",
        "--name=node0",
        "--data-dir=/w/c1/etcd-data",
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=node0=http://127.0.0.1:2380",
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]
    assert (etcd.name, etcd.health_url, etcd.health_tls, etcd.env) == (
        "etcd",
        "http://127.0.0.1:2379/health",
        "none",
        {},
    )


def test_apiserver_command_line() -> None:
    api = commands.apiserver(LAYOUT, PORTS)
    assert api.argv[0] == "/tc/bin/kube-apiserver"
    got = flags(api.argv)
    assert got["etcd-servers"] == "http://127.0.0.1:2379"
    assert got["bind-address"] == "127.0.0.1"
    assert got["advertise-address"] == "127.0.0.1"
    assert got["secure-port"] == "6443"
    assert got["tls-cert-file"] == "/w/c1/pki/apiserver.crt"
    assert got["client-ca-file"] == "/w/c1/pki/ca.crt"
    assert got["service-account-signing-key-file"] == "/w/c1/pki/sa.key"
    assert got["service-account-key-file"] == "/w/c1/pki/sa.pub"
    assert got["authorization-mode"] == "Node,RBAC"
    assert got["service-cluster-ip-range"] == "10.96.0.0/16"
    assert got["kubelet-client-certificate"] == "/w/c1/pki/admin.crt"
    assert got["proxy-client-cert-file"] == "/w/c1/pki/front-proxy-client.crt"
    assert (api.health_url, api.health_tls) == ("https://127.0.0.1:6443/readyz", "admin")
    assert len(api.argv) == 1 + len(got)  # no flag given twice


def test_controller_manager_command_line() -> None:
    kcm = commands.controller_manager(LAYOUT, PORTS)
    got = flags(kcm.argv)
    assert kcm.argv[0] == "/tc/bin/kube-controller-manager"
    kubeconfigs = {got[f] for f in ("kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")}
    assert kubeconfigs == {"/w/c1/kubeconfig"}
    assert (got["bind-address"], got["secure-port"], got["leader-elect"]) == ("127.0.0.1", "10257", "false")
    assert got["cluster-signing-key-file"] == "/w/c1/pki/ca.key"
    assert got["service-account-private-key-file"] == "/w/c1/pki/sa.key"
    assert (kcm.health_url, kcm.health_tls) == ("https://127.0.0.1:10257/healthz", "insecure")


def test_scheduler_command_line_and_config() -> None:
    scheduler = commands.scheduler(LAYOUT, PORTS)
    assert scheduler.argv == [
        "/tc/bin/kube-scheduler",
        "--config=/w/c1/kube-scheduler.yaml",
        "--authentication-kubeconfig=/w/c1/kubeconfig",
        "--authorization-kubeconfig=/w/c1/kubeconfig",
        "--bind-address=127.0.0.1",
        "--secure-port=10259",
    ]
    assert scheduler.health_url == "https://127.0.0.1:10259/healthz"
    config = commands.scheduler_config(LAYOUT.kubeconfig, lc.ClusterConfig().scheduler_names)
    assert config == (
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        'clientConnection:\n  kubeconfig: "/w/c1/kubeconfig"\n  qps: 200\n  burst: 400\n'
        "leaderElection:\n  leaderElect: false\n"
        "profiles:\n"
        '- schedulerName: "default-scheduler"\n'
        '- schedulerName: "hami-scheduler"\n'
    )


def test_kwok_command_line_and_empty_home() -> None:
    kwok = commands.kwok(LAYOUT, PORTS)
    got = flags(kwok.argv)
    assert got["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    assert got["manage-all-nodes"] == "false"
    assert (got["node-ip"], got["node-port"], got["server-address"]) == ("127.0.0.1", "10250", "127.0.0.1:10250")
    assert got["enable-crds"] == "Stage,Logs,ClusterLogs"
    assert got["tls-cert-file"] == "/w/c1/pki/kwok.crt"
    assert kwok.env == {"HOME": "/w/c1/kwok-home"}
    assert (kwok.health_url, kwok.health_tls) == ("https://127.0.0.1:10250/healthz", "insecure")


@pytest.mark.parametrize("build", ALL, ids=lambda b: b.__name__)
def test_every_address_is_loopback(build: commands.ComponentBuilder) -> None:
    component = build(LAYOUT, PORTS)
    assert not [arg for arg in component.argv if "0.0.0.0" in arg or "[::]" in arg]
    addresses = [v for k, v in flags(component.argv).items() if k.endswith(("address", "-ip", "-urls", "servers"))]
    assert addresses and all("127.0.0.1" in a for a in addresses), addresses
    assert component.health_url.split("/")[2].startswith("127.0.0.1:")


def test_stages_fill_in_the_default_delays() -> None:
    template = (Path(lc.__file__).parent / "kwok" / "stages.yaml").read_text()
    text = commands.stages(template, "1s", "2500ms")
    assert not [line for line in text.splitlines() if "@@" in line and not line.startswith("#")]
    delays = [line.split(":")[1].strip() for line in text.splitlines() if "durationMilliseconds:" in line]
    assert delays.count("1000") == 1
    assert delays.count("2500") == 3


def test_ports_round_trip_through_the_state_file_dict() -> None:
    names = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok")
    assert commands.Ports.names() == names
    assert commands.Ports.from_dict(PORTS.as_dict()) == PORTS
    assert commands.apiserver_url(PORTS) == "https://127.0.0.1:6443"


# -- records, PKI, nodes -------------------------------------------------------------------


def test_a_record_starts_its_component_again_the_same_way() -> None:
    kwok = commands.kwok(LAYOUT, PORTS)
    record = lc.ProcessRecord("kwok", 42, "7", kwok.argv, "/w/c1/logs/kwok.log", kwok.env, kwok.health_url, "insecure")
    assert record.component() == kwok


def test_a_record_of_an_older_state_file_gets_defaults() -> None:
    old = {"name": "etcd", "pid": 1, "starttime": None, "argv": ["etcd"], "logfile": "l", "extra": True}
    record = lc.ProcessRecord.from_dict(old)
    assert (record.env, record.health_url, record.health_tls) == ({}, "", "none")
    assert lc.ProcessRecord.from_dict({**old, "health_tls": "bogus"}).health_tls == "none"


def test_admin_kubeconfig() -> None:
    config = pki.kubeconfig("https://127.0.0.1:6443", Path("/w/c1/pki"), "c1")
    assert config["current-context"] == "fto-c1"
    assert config["clusters"] == [
        {"name": "fto-c1", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "/w/c1/pki/ca.crt"}}
    ]
    assert config["users"] == [
        {
            "name": "fto-c1-admin",
            "user": {"client-certificate": "/w/c1/pki/admin.crt", "client-key": "/w/c1/pki/admin.key"},
        }
    ]


def test_leaf_certificate_extensions() -> None:
    assert pki.leaf_extensions("serverAuth", "IP:127.0.0.1") == (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
    )
    assert "subjectAltName" not in pki.leaf_extensions("clientAuth", None)


def test_fake_nodes() -> None:
    config = lc.ClusterConfig(nodes=3, capacity=lc.NodeCapacity(ai100=2))
    nodes = lc.node_manifests(config)
    assert [n["metadata"]["name"] for n in nodes] == ["fake-gpu-0", "fake-gpu-1", "fake-gpu-2"]
    node = nodes[1]
    assert node["metadata"]["annotations"][lc.KWOK_NODE_ANNOTATION] == "fake"
    assert node["metadata"]["labels"][lc.GPU_PRESENT_LABEL] == "true"
    assert (
        node["status"]["capacity"]
        == node["status"]["allocatable"]
        == {
            "cpu": "32",
            "memory": "256Gi",
            "pods": "110",
            "phison.com/ai100": "2",
            "otterscale.com/vgpu": "8",
            "otterscale.com/vgpumem": "196608",
            "otterscale.com/vgpumem-percentage": "800",
        }
    )


def test_namespace_lists_of_the_stages_keep_a_placeholder() -> None:
    stage = {"spec": {"selector": {"matchExpressions": [{"key": lc.HOLD_NAMESPACES_KEY, "values": ["-"]}]}}}
    assert kwok_helpers._edit_namespace_list(stage, "ns1", lc.HOLD_NAMESPACES_KEY, present=True)
    assert stage["spec"]["selector"]["matchExpressions"][0]["values"] == ["-", "ns1"]
    assert not kwok_helpers._edit_namespace_list(stage, "ns1", lc.HOLD_NAMESPACES_KEY, present=True)
    assert not kwok_helpers._edit_namespace_list(stage, "ns1", lc.FAIL_NAMESPACES_KEY, present=False)
    assert kwok_helpers._edit_namespace_list(stage, "ns1", lc.HOLD_NAMESPACES_KEY, present=False)
    assert stage["spec"]["selector"]["matchExpressions"][0]["values"] == ["-"]


# -- small helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("3s", 3000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000), ("1.5", 1500), (" 0s ", 0), ("0.25s", 250)],
)
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert lc.parse_duration_ms(text) == ms


def test_cri_log_lines() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert lc.cri_log_lines("a\nb c", when=when) == (
        "2026-01-02T03:04:05.123456000Z stdout F a\n2026-01-02T03:04:05.123456000Z stdout F b c\n"
    )
    assert lc.cri_log_lines("", "stderr", when) == "2026-01-02T03:04:05.123456000Z stderr F \n"


def test_append_log_appends(tmp_path: Path) -> None:
    path = tmp_path / "pod.log"
    lc.append_log(path, "one")
    lc.append_log(path, "two\nthree", stream="stderr")
    lines = path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["stdout F one", "stderr F two", "stderr F three"]


def test_job_manifest() -> None:
    job = lc.job_manifest("j", {"cpu": "1"}, {lc.HOLD_ANNOTATION: "true"}, ttl=5, backoff_limit=2)
    assert job["metadata"] == {"name": "j"}
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (2, 5)
    template = job["spec"]["template"]
    assert template["metadata"]["annotations"] == {"e2e.finetune.aidaptiv.io/hold": "true"}
    (container,) = template["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    assert (container["image"], template["spec"]["restartPolicy"]) == ("busybox:1.36", "Never")
    assert "ttlSecondsAfterFinished" not in lc.job_manifest("k")["spec"]


def test_wait_until_returns_the_first_truthy_answer_and_names_what_timed_out() -> None:
    answers = iter([None, 0, "yes"])
    assert lc.wait_until(lambda: next(answers), timeout=5, interval=0) == "yes"
    with pytest.raises(TimeoutError, match=r"waiting for the moon\nstate here"):
        lc.wait_until(lambda: None, timeout=0, what="the moon", state=lambda: "state here")


# -- what the rest of the repository relies on -------------------------------------------------


def test_public_names_and_removed_helpers() -> None:
    for name in ("Cluster", "LocalCluster", "ClusterConfig", "ClusterError", "external_cluster", "reap_stale_clusters"):
        assert hasattr(lc, name), name
    assert not hasattr(lc, "running_cluster")
    assert not hasattr(lc.Cluster, "hold_pod")
    assert {"kill_component", "start_component"} <= set(dir(lc.LocalCluster))


def test_the_toolchain_dir_is_named_by_the_cluster_components_only() -> None:
    pinned = build_toolchain.versions()
    assert "cli-utils" in pinned
    assert build_toolchain.version_key(pinned) == "-".join(
        pinned[name] for name in ("kubernetes", "etcd", "kwok", "helm")
    )
    kstatus = next(t for t in build_toolchain.targets() if t.binary == "kstatus")
    assert (kstatus.wrapper, kstatus.sources) == ("kstatus", ("main.go",))
    assert "kwokctl" not in {t.binary for t in build_toolchain.targets()}
