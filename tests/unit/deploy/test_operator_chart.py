"""The operator's Helm chart: lint, least-privilege RBAC, pod security, and files kept in sync."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_operator.api.crd import crd_yaml
from finetune_operator.cli import build_parser
from tests.toolchain import run_tool, tool

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "finetune-operator"

# Exactly what the operator calls, per namespace: a new call needs a new line here and in the chart.
NAMESPACED_RULES = [
    {"apiGroups": ["finetune.aidaptiv.io"], "resources": ["finetunejobs"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["finetune.aidaptiv.io"], "resources": ["finetunejobs/status"], "verbs": ["patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    # get: to tell its own ConfigMap from a namesake; no delete: each goes with the Job that owns it.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]},
    # numNodes > 1: the ranks' headless Service (it stays with the FineTuneJob: no delete).
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # list: the Job controller's FailedCreate events, the only record of a pod it cannot create.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
    # Kueue's words on a held Job (list), and a suspend of a Job Kueue manages (patch: deactivate).
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list", "patch"]},
]


def peering_rules(resource: str) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": ["kopf.dev"],
            "resources": [resource],
            "resourceNames": ["finetune-operator"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["kopf.dev"], "resources": [resource], "verbs": ["list", "watch"]},
    ]


def render(*settings: str) -> list[dict[str, Any]]:
    args = [arg for setting in settings for arg in ("--set", setting)]
    text = run_tool("helm", "template", "fto", str(CHART), "--namespace", "ops", *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_the_chart_lints_clean() -> None:
    result = run_tool("helm", "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_the_chart_ships_the_generated_crd() -> None:
    assert (CHART / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml").read_text() == crd_yaml(), "run `make crd`"


def test_cluster_wide_rbac_is_exactly_what_the_operator_calls() -> None:
    objects = render()
    (role,) = of_kind(objects, "ClusterRole")
    assert role["rules"] == NAMESPACED_RULES + peering_rules("clusterkopfpeerings")
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fto-finetune-operator", "namespace": "ops"}]
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    (peering,) = of_kind(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "finetune-operator"


def test_namespaced_mode_grants_nothing_cluster_wide() -> None:
    objects = render("watchNamespaces={team-a,team-b}")
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = of_kind(objects, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert all(r["rules"] == NAMESPACED_RULES + peering_rules("kopfpeerings") for r in roles)
    assert [b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")] == ["team-a", "team-b"]
    assert [p["metadata"]["namespace"] for p in of_kind(objects, "KopfPeering")] == ["team-a", "team-b"]
    (deployment,) = of_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-4:] == ["--namespace", "team-a", "--namespace", "team-b"]


@pytest.mark.parametrize("settings", [(), ("watchNamespaces={team-a}",)])
def test_no_wildcards_and_no_secrets(settings: tuple[str, ...]) -> None:
    for role in of_kind(render(*settings), "ClusterRole") + of_kind(render(*settings), "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "secrets" not in rule["resources"]


def test_the_deployment_is_locked_down_and_probed() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 9090}
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["image"] == "finetune-operator:0.1.0"


def test_the_deployment_args_are_what_the_cli_accepts() -> None:
    (deployment,) = of_kind(render("watchNamespaces={ml}", "logInterval=5"), "Deployment")
    args = build_parser().parse_args(["run", *deployment["spec"]["template"]["spec"]["containers"][0]["args"]])
    assert (args.liveness, args.metrics_port, args.peering, args.peering_lifetime) == (
        "http://0.0.0.0:8080/healthz",
        9090,
        "finetune-operator",
        30,
    )
    assert (args.namespace, args.log_interval, args.priority) == (["ml"], 5.0, None)
    assert args.allow_privileged is False


def test_privileged_trainers_are_the_installers_choice() -> None:
    (deployment,) = of_kind(render("allowPrivilegedTrainers=true"), "Deployment")
    args = build_parser().parse_args(["run", *deployment["spec"]["template"]["spec"]["containers"][0]["args"]])
    assert args.allow_privileged is True


def test_several_replicas_without_peering_are_refused() -> None:
    result = run_tool("helm", "template", "fto", str(CHART), "--set", "peering.enabled=false", check=False)
    assert result.returncode != 0
    assert "replicaCount > 1 needs peering.enabled: true" in result.stderr
    single = render("peering.enabled=false", "replicaCount=1")
    (deployment,) = of_kind(single, "Deployment")
    assert "--peering" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert of_kind(single, "ClusterKopfPeering") == [] and of_kind(single, "PodDisruptionBudget") == []


def test_metrics_service_and_optional_service_monitor() -> None:
    objects = render("metrics.serviceMonitor.enabled=true")
    (service,) = of_kind(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert of_kind(render(), "ServiceMonitor") == []


def _render_manifests_module() -> Any:
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "scripts" / "render_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_manifests_are_in_sync_with_the_chart() -> None:
    wanted = _render_manifests_module().manifests(tool("helm"))
    on_disk = {p.name: p.read_text() for p in (ROOT / "deploy" / "manifests").iterdir()}
    assert on_disk == wanted, "deploy/manifests is stale: run `make manifests`"


def test_plain_manifests_build_with_kustomize() -> None:
    text = run_tool("kubectl", "kustomize", str(ROOT / "deploy" / "manifests")).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(text) if doc)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "ClusterKopfPeering",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    )


def _leaf_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value and key not in ("podSecurityContext", "securityContext", "resources"):
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    assert _leaf_keys(values) <= documented, sorted(_leaf_keys(values) - documented)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("watchNamespace={a}", "at '': additional properties 'watchNamespace' not allowed"),
        ("replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("watchNamespaces={Bad_NS}", "at '/watchNamespaces/0': 'Bad_NS' does not match pattern"),
        ("metrics.port=0", "at '/metrics/port': minimum: got 0, want 1"),
        ("peering.lifetime=1", "at '/peering/lifetime': minimum: got 1, want 5"),
    ],
)
def test_bad_values_are_refused_before_anything_is_rendered(setting: str, message: str) -> None:
    result = run_tool("helm", "template", "fto", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert message in result.stderr, result.stderr


def test_every_default_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


def test_network_policy_admits_only_metrics_scrapers() -> None:
    assert of_kind(render(), "NetworkPolicy") == []
    (policy,) = of_kind(
        render("networkPolicy.enabled=true", "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus"),
        "NetworkPolicy",
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
        }
    ]


def test_tolerating_every_taint_is_the_installers_choice() -> None:
    for setting, allowed in (("allowAnyToleration=false", False), ("allowAnyToleration=true", True)):
        (deployment,) = of_kind(render(setting), "Deployment")
        args = build_parser().parse_args(["run", *deployment["spec"]["template"]["spec"]["containers"][0]["args"]])
        assert args.allow_any_toleration is allowed


def test_the_admission_policy_is_on_by_default_and_bound_to_deny() -> None:
    objects = render()
    (policy,) = of_kind(objects, "ValidatingAdmissionPolicy")
    (binding,) = of_kind(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["finetune.aidaptiv.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE"],
            "resources": ["finetunejobs"],
        }
    ]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert variables["allowedNfsServers"] == "[]"
    assert not of_kind(render("admissionPolicy.enabled=false"), "ValidatingAdmissionPolicy")


def test_allowed_nfs_servers_reach_the_policy_as_cel_strings() -> None:
    (policy,) = of_kind(
        render("admissionPolicy.allowedNfsServers={nfs.example.com,10.0.0.1}"), "ValidatingAdmissionPolicy"
    )
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert variables["allowedNfsServers"] == '["nfs.example.com","10.0.0.1"]'
