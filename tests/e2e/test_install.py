"""The operator's Helm chart on the real API server: its RBAC is enough for the operator and no more.

The operator runs locally (no image can be built here) but as the chart's ServiceAccount: its
kubeconfig holds a token of that ServiceAccount from the TokenRequest API, so every call it makes
is authorized by the chart's Role or ClusterRole exactly as it would be in the pod.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob
from tests.toolchain import run_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "finetune-operator"


def helm(cluster: lc.Cluster, *args: str) -> str:
    return run_tool("helm", "--kubeconfig", str(cluster.kubeconfig), *args).stdout


def service_account_kubeconfig(cluster: lc.Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a short-lived token."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": server["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Release:
    """An installed release of the operator chart and the ServiceAccount it made."""

    def __init__(self, cluster: lc.Cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.account = f"{name}-finetune-operator"
        self.peering = name

    def can_i(self, kubeconfig: Path, *args: str) -> bool:
        checker = lc.Cluster(kubeconfig, kubectl_bin=self.cluster.kubectl_bin, workdir=self.cluster.workdir)
        answer = checker.kubectl("auth", "can-i", *args, check=False).stdout.strip()
        assert answer in ("yes", "no"), answer
        return answer == "yes"


Installer = Callable[..., Release]


@pytest.fixture
def install(cluster: lc.Cluster, crd: None, without_shared_operator: None) -> Iterator[Installer]:
    """install(*settings) -> Release; every release is uninstalled after the test."""
    installed: list[Release] = []

    def _install(*settings: str) -> Release:
        namespace = cluster.create_namespace()
        release = Release(cluster, namespace, f"fto-{uuid.uuid4().hex[:6]}")
        # On kwok the Deployment's pods "run" without an image; a real cluster (E2E_KUBECONFIG) has
        # no image of this checkout to pull, so there the Deployment is installed scaled to zero.
        scale = () if cluster.local else ("replicaCount=0",)
        options = [f"peering.name={release.peering}", *settings, *scale]
        sets = [arg for setting in options for arg in ("--set", setting)]
        helm(cluster, "install", release.name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s", *sets)
        installed.append(release)
        return release

    yield _install
    for release in installed:
        helm(cluster, "uninstall", release.name, "-n", release.namespace, "--wait")
        cluster.delete_namespace(release.namespace)


def run_as(release: Release, kubeconfig: Path, log_dir: Path, *args: str) -> OperatorProcess:
    process = OperatorProcess(
        kubeconfig,
        log_dir,
        ("--peering", release.peering, "--log-interval", "1", "--metrics-address", "127.0.0.1", *args),
    )
    process.start()
    return process


def assert_no_refusal(process: OperatorProcess) -> None:
    log = process.log_path.read_text(errors="replace")
    assert "Forbidden" not in log and "forbidden" not in log, log[-6000:]


def test_cluster_wide_install_runs_a_finetunejob_as_its_service_account(
    cluster: lc.Cluster, install: Installer, namespace: str, tmp_path: Path
) -> None:
    release = install("networkPolicy.enabled=true")
    deployment = cluster.get_json("deployment", f"{release.name}-finetune-operator", "-n", release.namespace)
    assert deployment is not None
    if cluster.local:
        assert deployment["status"].get("availableReplicas") == 2

    kubeconfig = service_account_kubeconfig(cluster, release.namespace, release.account, tmp_path / "sa.kubeconfig")
    operator = run_as(release, kubeconfig, tmp_path)
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "basic.yaml"))
        wait_phase(cluster, namespace, "finetune-llama-job", "Succeeded", operator)
        assert_no_refusal(operator)
    finally:
        operator.stop()

    # Least privilege: the operator's identity reads no Secret and changes no RBAC anywhere.
    assert not release.can_i(kubeconfig, "get", "secrets", "-n", namespace)
    assert not release.can_i(kubeconfig, "list", "secrets", "--all-namespaces")
    assert not release.can_i(kubeconfig, "create", "rolebindings", "-n", namespace)
    assert not release.can_i(kubeconfig, "update", "finetunejobs", "-n", namespace)
    assert release.can_i(kubeconfig, "patch", "finetunejobs", "--subresource=status", "-n", namespace)
    refused = lc.Cluster(kubeconfig, kubectl_bin=cluster.kubectl_bin, workdir=cluster.workdir).kubectl(
        "get", "secrets", "-n", namespace, check=False
    )
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stderr


def test_namespaced_install_acts_only_in_its_namespaces(
    cluster: lc.Cluster, install: Installer, namespace: str, tmp_path: Path
) -> None:
    release = install(f"watchNamespaces={{{namespace}}}", "replicaCount=1")
    kubeconfig = service_account_kubeconfig(cluster, release.namespace, release.account, tmp_path / "sa.kubeconfig")
    assert not release.can_i(kubeconfig, "list", "finetunejobs", "--all-namespaces")
    assert not release.can_i(kubeconfig, "create", "jobs", "-n", release.namespace)
    assert release.can_i(kubeconfig, "create", "jobs", "-n", namespace)

    operator = run_as(release, kubeconfig, tmp_path, "--namespace", namespace)
    try:
        cluster.apply(finetunejob(LIGHT, name="scoped"), namespace=namespace)
        wait_phase(cluster, namespace, "scoped", "Succeeded", operator)
        assert_no_refusal(operator)
    finally:
        operator.stop()


def test_two_shards_on_disjoint_namespaces_never_touch_each_others_objects(
    cluster: lc.Cluster, install: Installer, tmp_path: Path
) -> None:
    """Sharding as the chart supports it: one release per set of namespaces, each with its own
    ServiceAccount, Roles, peering and admission binding. Each shard's operator runs its own FineTuneJobs
    and knows nothing of the other's, and could not act on them if it tried."""
    spaces = {"a": [cluster.create_namespace(), cluster.create_namespace()], "b": [cluster.create_namespace()]}
    releases, operators = {}, {}
    try:
        for shard, namespaces in spaces.items():
            releases[shard] = install(f"watchNamespaces={{{','.join(namespaces)}}}", "replicaCount=1")
            kubeconfig = service_account_kubeconfig(
                cluster, releases[shard].namespace, releases[shard].account, tmp_path / f"{shard}.kubeconfig"
            )
            watch = [arg for namespace in namespaces for arg in ("--namespace", namespace)]
            operators[shard] = run_as(releases[shard], kubeconfig, tmp_path / shard, *watch)
        for namespaces in spaces.values():
            for namespace in namespaces:
                cluster.apply(finetunejob(LIGHT, name="sharded"), namespace=namespace)
        for shard, namespaces in spaces.items():
            for namespace in namespaces:
                wait_phase(cluster, namespace, "sharded", "Succeeded", operators[shard])
        for shard, other in (("a", "b"), ("b", "a")):
            operator = operators[shard]
            assert operator.known_finetunejobs() == len(spaces[shard])
            assert_no_refusal(operator)
            log = operator.log_path.read_text(errors="replace")
            assert not [namespace for namespace in spaces[other] if namespace in log], log[-4000:]
            kubeconfig = tmp_path / f"{shard}.kubeconfig"
            for namespace in spaces[other]:
                assert not releases[shard].can_i(kubeconfig, "create", "jobs", "-n", namespace)
                assert not releases[shard].can_i(kubeconfig, "list", "finetunejobs", "-n", namespace)
        # Each shard's admission policy checks its own namespaces only (not every FineTuneJob twice).
        for shard, namespaces in spaces.items():
            name = f"{releases[shard].name}-finetune-operator-references"
            binding = cluster.get_json("validatingadmissionpolicybinding", name)
            assert binding is not None
            selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
            assert selector == [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]
    finally:
        for operator in operators.values():
            operator.stop()


def test_plain_manifests_install_as_they_are(cluster: lc.Cluster, crd: None) -> None:
    manifests = ROOT / "deploy" / "manifests"
    # As the README says: the CRDs first (a CRD and its objects cannot go in one kubectl apply), then all.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifests / "crds.yaml"))
    cluster.wait_established()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(manifests))
    try:
        if cluster.local:  # elsewhere there is no image of this checkout to run
            rollout = ("rollout", "status", "deployment/finetune-operator", "-n", "finetune-system", "--timeout=120s")
            cluster.kubectl(*rollout)
        role = cluster.get_json("clusterrole", "finetune-operator")
        assert role is not None and all("secrets" not in rule["resources"] for rule in role["rules"])
        assert cluster.get_json("validatingadmissionpolicy", "finetune-operator-references") is not None
    finally:
        # Everything but the CRDs, which the rest of the session still uses.
        selector = "app.kubernetes.io/instance=finetune-operator"
        kinds = "clusterrole,clusterrolebinding,clusterkopfpeering"
        kinds += ",validatingadmissionpolicy,validatingadmissionpolicybinding"
        cluster.kubectl("delete", kinds, "-l", selector)
        cluster.delete_namespace("finetune-system")
