"""A hostile tenant: "alice" may create FineTuneJobs in her namespace and nothing else (no Secrets, no
PVCs, no pods). The operator must never do for her what she may not do herself.

The chart's ValidatingAdmissionPolicy runs on the real API server with the requesting user's rights
(kubectl --as); the operator (the session's, admin rights) refuses what goes beyond a Pod Security
"baseline" pod; and a pod someone else makes with the FineTuneJob's labels is neither read for its
status nor published under a rank's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, condition, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob
from tests.toolchain import run_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "finetune-operator"
ALLOWED_NFS = "nfs.allowed.local"
AUTHOR_RULES = [
    {"apiGroups": ["finetune.aidaptiv.io"], "resources": ["finetunejobs"], "verbs": ["create", "get", "list", "delete"]}
]


def policy_objects() -> list[dict[str, Any]]:
    """The chart's admission policy and its binding, as `helm template` renders them."""
    text = run_tool(
        "helm",
        "template",
        "tenants",
        str(CHART),
        "--show-only",
        "templates/admissionpolicy.yaml",
        "--set",
        f"admissionPolicy.allowedNfsServers={{{ALLOWED_NFS}}}",
    ).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def policy(cluster: lc.Cluster, crd: None) -> Iterator[None]:
    objects = policy_objects()
    cluster.apply(objects)
    try:
        yield
    finally:
        for obj in objects:
            cluster.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)


def grant(cluster: lc.Cluster, namespace: str, user: str, rules: list[dict[str, Any]]) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": user}, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cluster.apply([role, binding], namespace=namespace)


@pytest.fixture
def tenants(cluster: lc.Cluster, namespace: str, policy: None) -> str:
    """alice: FineTuneJobs only; bob: and may get Secrets and PVCs; carol: and may create pods."""
    grant(cluster, namespace, "alice", AUTHOR_RULES)
    grant(
        cluster,
        namespace,
        "bob",
        [*AUTHOR_RULES, {"apiGroups": [""], "resources": ["secrets", "persistentvolumeclaims"], "verbs": ["get"]}],
    )
    grant(cluster, namespace, "carol", [*AUTHOR_RULES, {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}])
    return namespace


def create_as(cluster: lc.Cluster, user: str, namespace: str, name: str, spec: dict[str, Any]) -> tuple[bool, str]:
    proc = cluster.kubectl(
        "--as", user, "create", "-n", namespace, "-f", "-", input=json.dumps(finetunejob(spec, name=name)), check=False
    )
    return proc.returncode == 0, proc.stderr.strip()


def wait_policy_active(cluster: lc.Cluster, namespace: str) -> None:
    """A new policy is loaded by the API server within moments: wait until it refuses what it must."""
    spec = {**LIGHT, "suspend": True, "imagePullSecrets": [{"name": "probe"}]}

    def refused() -> bool | None:
        made, said = create_as(cluster, "alice", namespace, "probe", spec)
        if made:
            cluster.kubectl("delete", "ftj", "probe", "-n", namespace, "--wait=true")
            return None
        return True if "ValidatingAdmissionPolicy" in said else None

    cluster.wait_for(refused, what="the admission policy to be active", timeout=60, interval=1)


SECRET_SPEC = {
    **LIGHT,
    "suspend": True,
    "output": {"image": {"repository": "registry.local/team/out", "pushSecretName": "team-registry"}},
}
PULL_SPEC = {**LIGHT, "suspend": True, "imagePullSecrets": [{"name": "team-pull"}]}
PVC_SPEC = {
    **LIGHT,
    "suspend": True,
    "volumes": [{"name": "data", "mountPath": "/mnt/data", "persistentVolumeClaim": {"claimName": "team-data"}}],
}


def nfs_spec(server: str) -> dict[str, Any]:
    volume = {"name": "data", "mountPath": "/mnt/data", "nfs": {"server": server, "path": "/exports/x"}}
    return {**LIGHT, "suspend": True, "volumes": [volume]}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (
            SECRET_SPEC,
            "spec.output.image.pushSecretName: alice may not get Secret team-registry in namespace {ns}, and the "
            "trainer would be given it",
        ),
        (PULL_SPEC, "spec.imagePullSecrets: alice may not get Secret team-pull in namespace {ns}"),
        (
            PVC_SPEC,
            "spec.volumes: alice may not get PersistentVolumeClaim team-data in namespace {ns}, and the trainer "
            "would mount it",
        ),
        (
            nfs_spec("nfs.other.local"),
            "spec.volumes: NFS server nfs.other.local is not among the servers this cluster allows to users who "
            "may not create pods (Helm value admissionPolicy.allowedNfsServers), and alice may not create pods in "
            "namespace {ns}",
        ),
    ],
    ids=["push-secret", "pull-secret", "pvc", "nfs"],
)
def test_alice_cannot_name_what_she_may_not_use(
    cluster: lc.Cluster, tenants: str, spec: dict[str, Any], said: str
) -> None:
    wait_policy_active(cluster, tenants)
    made, error = create_as(cluster, "alice", tenants, "sneaky", spec)
    assert not made
    assert said.format(ns=tenants) in error, error
    assert cluster.get_json("finetunejob", "sneaky", "-n", tenants) is None


@pytest.mark.parametrize(
    ("user", "spec"),
    [
        ("bob", SECRET_SPEC),
        ("bob", PULL_SPEC),
        ("bob", PVC_SPEC),
        ("carol", nfs_spec("nfs.other.local")),  # she could mount it in a pod of her own
        ("alice", nfs_spec(ALLOWED_NFS)),
        ("alice", {**LIGHT, "suspend": True}),
    ],
    ids=["bob-push-secret", "bob-pull-secret", "bob-pvc", "carol-nfs", "alice-allowed-nfs", "alice-plain"],
)
def test_what_the_author_may_use_is_accepted(
    cluster: lc.Cluster, tenants: str, user: str, spec: dict[str, Any]
) -> None:
    wait_policy_active(cluster, tenants)
    made, error = create_as(cluster, user, tenants, "fine", spec)
    assert made, error


@pytest.mark.parametrize(
    ("spec", "field", "flag"),
    [
        ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "spec.securityContext", "--allow-privileged"),
        ({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}, "spec.securityContext", "--allow-privileged"),
        (
            {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}},
            "spec.securityContext",
            "--allow-privileged",
        ),
        ({"tolerations": [{"operator": "Exists"}]}, "spec.tolerations", "--allow-any-toleration"),
    ],
    ids=["seccomp", "selinux", "apparmor", "tolerations"],
)
def test_what_baseline_refuses_ends_invalid_with_nothing_made(
    cluster: lc.Cluster, tenants: str, running: OperatorProcess, spec: dict[str, Any], field: str, flag: str
) -> None:
    made, error = create_as(cluster, "alice", tenants, "powers", {**LIGHT, **spec})
    assert made, error
    ftj = wait_phase(cluster, tenants, "powers", "Failed", running)
    failed = condition(ftj, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith(f"{field}: ") and flag in failed["message"]
    assert cluster.get_json("job", "powers", "-n", tenants) is None


def forged_pod(name: str, labels: dict[str, str], said: str, subdomain: str | None = None) -> dict[str, Any]:
    """A pod with a FineTuneJob's labels that ends with a forged termination message (kwok runs it)."""
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": lc.DEFAULT_IMAGE}]}
    if subdomain is not None:
        spec.update(hostname=f"{subdomain}-0", subdomain=subdomain)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {lc.COMPLETE_MESSAGE_ANNOTATION: said, lc.RUN_DURATION_ANNOTATION: "1s"},
        },
        "spec": spec,
    }


def test_a_pod_with_the_finetunejobs_label_is_not_its_pod(
    cluster: lc.Cluster, tenants: str, running: OperatorProcess
) -> None:
    """carol (who may create pods) makes a pod labelled as alice's training, whose termination message
    claims a push to alice's repository: alice's status.output and Events never hear of it."""
    repository = "registry.local/alice/out"
    spec = {**LIGHT, "output": {"image": {"repository": repository, "format": "Image"}}}
    made, error = create_as(cluster, "alice", tenants, "trained", spec)
    assert made, error
    wait_phase(cluster, tenants, "trained", "Running", running)
    digest = "sha256:" + "ab" * 32
    said = (
        "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nevidence: training complete!\n"
        f"outputReference: {repository}:forged@{digest}\noutputDigest: {digest}\n"
    )
    pod = forged_pod("forged", {"finetune.aidaptiv.io/name": "trained"}, said)
    cluster.kubectl("--as", "carol", "create", "-n", tenants, "-f", "-", input=json.dumps(pod))
    cluster.wait_pod_phase(tenants, ["Succeeded"], pod="forged")
    ftj = wait_phase(cluster, tenants, "trained", "Succeeded", running)
    assert "output" not in ftj["status"]
    reasons = [e["reason"] for e in cluster.events(tenants) if e["involvedObject"].get("name") == "trained"]
    assert "OutputPushed" not in reasons


def test_a_pod_with_the_finetunejobs_labels_is_not_published_as_a_rank(
    cluster: lc.Cluster, tenants: str, running: OperatorProcess
) -> None:
    """The headless Service selects the Job's own pods (its controller-uid): carol's pod, labelled and
    named as rank 0, is not among the addresses the ranks resolve."""
    cluster.hold_namespace(tenants)
    made, error = create_as(cluster, "alice", tenants, "ranks", {**LIGHT, "numNodes": 2})
    assert made, error
    wait_phase(cluster, tenants, "ranks", "Running", running)
    labels = {"finetune.aidaptiv.io/name": "ranks", "batch.kubernetes.io/job-completion-index": "0"}
    pod = forged_pod("ranks-0-forged", labels, "", subdomain="ranks")
    cluster.kubectl("--as", "carol", "create", "-n", tenants, "-f", "-", input=json.dumps(pod))
    cluster.wait_pod_phase(tenants, ["Running", "Succeeded"], pod="ranks-0-forged")
    job = cluster.get_json("job", "ranks", "-n", tenants)
    own = {
        p["metadata"]["name"]
        for p in cluster.pods(tenants, "finetune.aidaptiv.io/name=ranks")
        if any(r.get("uid") == job["metadata"]["uid"] for r in p["metadata"].get("ownerReferences", []))
    }
    assert len(own) == 2
    service = cluster.get_json("service", "ranks", "-n", tenants)
    assert service["spec"]["selector"] == {
        "finetune.aidaptiv.io/name": "ranks",
        "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
    }

    def published() -> set[str] | None:
        slices = cluster.get_json("endpointslices", "-n", tenants, "-l", "kubernetes.io/service-name=ranks")
        names = {
            (e.get("targetRef") or {}).get("name")
            for item in (slices or {}).get("items", [])
            for e in item.get("endpoints") or []
        }
        return names if names >= own else None

    assert cluster.wait_for(published, what="the ranks published by the Service", timeout=60) == own
