"""What GitOps tools say of FineTuneJobs the operator took to each phase on the real control plane:
kstatus (the real library, as Flux, kpt and Config Sync run it), Argo CD's health check and the Flux
expressions agree with the table of deploy/gitops/README.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e import kstatus
from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.gitops_checks import argocd_health, flux_check, flux_status
from tests.rule_cases import finetunejob
from tests.toolchain import tool

# name -> (phase it reaches, Argo CD, plain kstatus, Flux with the healthCheckExprs)
TABLE = {
    "pending": ("Pending", "Progressing", "InProgress", "InProgress"),
    "running": ("Running", "Progressing", "InProgress", "InProgress"),
    "queued": ("Queued", "Progressing", "InProgress", "InProgress"),
    "suspended": ("Suspended", "Suspended", "Current", "InProgress"),
    "succeeded": ("Succeeded", "Healthy", "Current", "Current"),
    "failed": ("Failed", "Degraded", "Failed", "Failed"),
    "invalid": ("Failed", "Degraded", "Failed", "Failed"),
}


@pytest.fixture
def held(local_cluster: lc.Cluster) -> Iterator[str]:
    namespace = local_cluster.create_namespace()
    local_cluster.hold_namespace(namespace)
    yield namespace
    local_cluster.release_namespace(namespace)
    local_cluster.delete_namespace(namespace)


@pytest.fixture
def failing(local_cluster: lc.Cluster) -> Iterator[str]:
    namespace = local_cluster.create_namespace()
    local_cluster.fail_namespace(namespace)
    yield namespace
    local_cluster.fail_namespace(namespace, fail=False)
    local_cluster.delete_namespace(namespace)


def _wait_reason(cluster: lc.Cluster, namespace: str, name: str, kind: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, name) or {}
        found = [c for c in (ftj.get("status") or {}).get("conditions") or [] if c["type"] == kind]
        return ftj if found and found[0]["reason"] == reason else None

    return cluster.wait_for(reached, what=f"{name}: {kind} {reason}", timeout=60)


def test_gitops_tools_agree_on_finetunejobs_in_every_phase(
    local_cluster: lc.Cluster, namespace: str, held: str, failing: str, running: OperatorProcess
) -> None:
    binary = tool("kstatus")
    cluster = local_cluster
    placed = {
        "pending": (held, {**LIGHT, "nodeSelector": {"example.com/no-such-node": "true"}}),
        "running": (held, LIGHT),
        "queued": (held, LIGHT),
        "suspended": (held, {**LIGHT, "suspend": True}),
        "succeeded": (namespace, LIGHT),
        "failed": (failing, {**LIGHT, "backoffLimit": 0}),
        # Accepted by the API server, refused by the models: InvalidSpec.
        "invalid": (namespace, {**LIGHT, "expConfig": {"runSettings": {"lora": {"loraTargetModules": 7}}}}),
    }
    for name, (where, spec) in placed.items():
        cluster.apply(finetunejob(spec, name=name), namespace=where)
    objects = {}
    for name, (where, _) in placed.items():
        if name != "queued":
            objects[name] = wait_phase(cluster, where, name, TABLE[name][0], running)
    # A queue controller takes the running Job back, as Kueue does on preemption: it waits for admission.
    cluster.kubectl("patch", "job", "queued", "-n", held, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    objects["queued"] = _wait_reason(cluster, held, "queued", "Suspended", "WaitingForAdmission")
    objects["pending"] = get_ftj(cluster, held, "pending") or {}  # the latest, with its conditions

    judged = dict(zip(objects, kstatus.compute(list(objects.values()), binary=binary), strict=True))
    check = flux_check()
    seen = {
        name: (obj["status"]["phase"], argocd_health(obj)[0], judged[name][0], flux_status(obj, check))
        for name, obj in objects.items()
    }
    assert seen == TABLE
