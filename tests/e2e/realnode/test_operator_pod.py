"""The operator itself as a pod on the real node (issue 21, part 4): its image (`make image`) imported into
the node's containerd, installed by its Helm chart, logging in with the in-cluster config (its
ServiceAccount's token, KUBERNETES_SERVICE_HOST=10.96.0.1 routed by kube-proxy to the API server),
acting with the chart's RBAC, and taking a FineTuneJob on the real node to Succeeded; its `/metrics`
read through its Service's ClusterIP from another pod."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import localcluster as lc
from e2e import node_build, realnode
from tests.e2e.helpers import condition, get_ftj
from tests.e2e.realnode.nodes import NODE_SELECTOR, TOLERATIONS, RealNode, describe_pod, logs, pod
from tests.e2e.realnode.test_finetunejob import pods_of, trainer_spec
from tests.e2e.test_install import CHART, helm
from tests.rule_cases import finetunejob

#: What the metrics say once the operator took the FineTuneJob to Succeeded.
SUCCEEDED_METRIC = 'finetune_operator_finetunejobs{phase="Succeeded"} 1.0'


class PodRelease:
    """The chart installed in a namespace of its own, its operator pods on the real node."""

    def __init__(self, cluster: lc.Cluster, image: str) -> None:
        self.cluster = cluster
        self.namespace = cluster.create_namespace()
        self.name = f"fto-{uuid.uuid4().hex[:6]}"
        self.account = f"{self.name}-finetune-operator"
        self.metrics_service = f"{self.name}-finetune-operator-metrics"
        repository, tag = image.rsplit(":", 1)
        # Only what the real node asks differs from the chart's defaults: its label and taint, the
        # image imported into its containerd (never pulled), a peering of this release's own name,
        # and a 1 s log interval (the test reads progress, not the default 15 s cadence).
        self.values = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "nodeSelector": NODE_SELECTOR,
            "tolerations": TOLERATIONS,
            "peering": {"name": self.name},
            "logInterval": 1,
        }

    def install(self, values_file: Path) -> None:
        values_file.write_text(yaml.safe_dump(self.values))
        # --wait: until both replicas are Ready (the kubelet's probe of /healthz on the pod's address).
        args = ("-n", self.namespace, "-f", str(values_file), "--wait", "--timeout", "180s")
        helm(self.cluster, "install", self.name, str(CHART), *args)

    def pods(self) -> list[dict[str, Any]]:
        return self.cluster.pods(self.namespace, f"app.kubernetes.io/instance={self.name}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p['metadata']['name']} ---\n" + logs(self.cluster, self.namespace, p["metadata"]["name"])
            for p in self.pods()
        )

    def uninstall(self) -> None:
        helm(self.cluster, "uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "120s")
        self.cluster.delete_namespace(self.namespace)


@pytest.fixture
def operator_pods(
    cluster: lc.Cluster, real_node: RealNode, crd: None, without_shared_operator: None, operator_image: str
) -> Iterator[PodRelease]:
    realnode.RealNode(real_node.cluster).import_image(node_build.operator_image_archive(operator_image))
    release = PodRelease(cluster, operator_image)
    try:
        yield release
    finally:
        release.uninstall()


def _scraper(url: str) -> str:
    """A program for a pod: GET ``url`` until the operator's metrics say the FineTuneJob succeeded
    (the Service picks one of the two replicas at random: the standby does not count it); bounded."""
    return textwrap.dedent(
        f"""\
        import json, sys, time, urllib.request
        answers = []
        for attempt in range(120):
            with urllib.request.urlopen({url!r}, timeout=10) as response:
                body = response.read().decode()
            answers.append(response.status)
            if {SUCCEEDED_METRIC!r} in body.splitlines():
                lines = [l for l in body.splitlines() if l.startswith("finetune_operator_finetunejobs")]
                print(json.dumps({{"statuses": answers, "lines": lines}}))
                sys.exit(0)
            time.sleep(0.5)
        print(json.dumps({{"statuses": answers, "last": body[-3000:]}}))
        sys.exit(1)
        """
    )


def test_the_operator_as_a_pod_from_its_image_and_chart_takes_a_finetunejob_to_succeeded(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    operator_pods: PodRelease,
    host_volumes: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    release = operator_pods
    release.install(tmp_path / "values.yaml")
    operators = release.pods()
    assert len(operators) == 2 and {p["spec"]["nodeName"] for p in operators} == {real_node.name}, operators
    for operator in operators:
        # In-cluster config: no kubeconfig, the chart's ServiceAccount and its token mounted by the kubelet,
        # and the API server's Service address, which only kube-proxy makes reachable from a pod.
        spec = operator["spec"]
        assert spec["serviceAccountName"] == release.account
        (container,) = spec["containers"]
        assert not [e for e in container.get("env", []) if e["name"] == "KUBECONFIG"]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in {m["mountPath"] for m in container["volumeMounts"]}
        env = cluster.kubectl(
            "exec", "-n", release.namespace, operator["metadata"]["name"], "--", "printenv", "KUBERNETES_SERVICE_HOST"
        ).stdout.split()
        assert env == ["10.96.0.1"]

    directory, claim = host_volumes("out")
    cluster.apply(finetunejob(trainer_spec(real_node, claim), "by-pod", namespace))

    def succeeded() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, "by-pod") or {}
        return ftj if (ftj.get("status") or {}).get("phase") == "Succeeded" else None

    done = cluster.wait_for(
        succeeded,
        what="FineTuneJob by-pod Succeeded by the operator pods",
        timeout=180,
        state=lambda: cluster.describe("ftj", "by-pod", "-n", namespace) + release.logs()[-6000:],
    )
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    (trainer,) = pods_of(cluster, namespace, "by-pod")
    assert trainer["spec"]["nodeName"] == real_node.name
    assert (directory / "run" / "checkpoint-epoch-2" / "model.safetensors").is_file()

    # The operator pods did it, each with the chart's RBAC and nothing refused: the peering's peers
    # are the two pods (kopf names a peer after POD_NAME), and no call was Forbidden.
    peering = cluster.get_json("clusterkopfpeering", release.name) or {}
    peers = sorted((peering.get("status") or {}).keys())
    names = sorted(p["metadata"]["name"] for p in operators)
    assert [peer.split("/", 1)[0] for peer in peers] == names, peers
    operator_logs = release.logs()
    assert "Forbidden" not in operator_logs and "forbidden" not in operator_logs, operator_logs[-6000:]

    # Their connections to 10.96.0.1:443 went through kube-proxy's namespace, DNATed to the relay of
    # the API server on the bridge (conntrack there: original direction, then the reply's).
    ips = {p["status"]["podIP"] for p in operators}
    node = realnode.RealNode(real_node.cluster)
    state = node.state()
    reply = f"src={real_node.node_ip} dst={state['proxy_ip']} sport={state['ports']['apiserver_relay']} "

    def source(line: str) -> str:
        return line.split(" src=", 1)[1].split()[0]

    tracked = node.conntrack()
    through = {
        source(line) for line in tracked if " dst=10.96.0.1 " in line and " dport=443 " in line and reply in line
    }
    assert ips <= through, tracked

    # /metrics through the chart's Service (its ClusterIP, by name through CoreDNS) from a pod.
    url = f"http://{release.metrics_service}.{release.namespace}.svc:9090/metrics"
    service = cluster.get_json("service", release.metrics_service, "-n", release.namespace)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["clusterIP"].startswith("10.96.")
    cluster.apply(pod("scrape", real_node, "", container={"command": ["python3", "-c", _scraper(url)]}), namespace)
    cluster.wait_pod_phase(namespace, ["Succeeded", "Failed"], pod="scrape", timeout=120)
    scraped = json.loads(logs(cluster, namespace, "scrape").strip().splitlines()[-1])
    phase = cluster.get_json("pod", "scrape", "-n", namespace)["status"]["phase"]
    assert phase == "Succeeded", (scraped, describe_pod(cluster, namespace, "scrape"))
    assert set(scraped["statuses"]) == {200}
    assert SUCCEEDED_METRIC in scraped["lines"]
