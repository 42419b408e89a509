"""Pod Security on the real API server: the training pod's defaults pass "baseline"; where "restricted"
refuses the pod, the FineTuneJob says so with the API server's words instead of waiting silently."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, condition, ftj_events, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob


@pytest.fixture
def enforcing(cluster: lc.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    level = request.param
    namespace = cluster.create_namespace(labels={"pod-security.kubernetes.io/enforce": level})
    yield namespace
    cluster.delete_namespace(namespace)


@pytest.mark.parametrize("enforcing", ["baseline"], indirect=True)
def test_the_default_training_pod_passes_baseline(
    cluster: lc.Cluster, enforcing: str, running: OperatorProcess
) -> None:
    cluster.apply(finetunejob(LIGHT, name="baseline"), namespace=enforcing)
    ftj = wait_phase(cluster, enforcing, "baseline", "Succeeded", running)
    assert all(c["type"] != "PodCreateFailed" for c in ftj["status"]["conditions"])
    pod = cluster.get_json("job", "baseline", "-n", enforcing)["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("enforcing", ["restricted"], indirect=True)
def test_a_pod_refused_by_pod_security_shows_why(cluster: lc.Cluster, enforcing: str, running: OperatorProcess) -> None:
    """Found by a probe: the Job controller could create no pod, and the FineTuneJob stayed Pending unexplained."""
    cluster.apply(finetunejob(LIGHT, name="refused"), namespace=enforcing)

    def explained() -> dict | None:
        ftj = get_ftj(cluster, enforcing, "refused") or {}
        found = [c for c in (ftj.get("status") or {}).get("conditions") or [] if c["type"] == "PodCreateFailed"]
        return ftj if found and found[0]["status"] == "True" else None

    ftj = cluster.wait_for(explained, what="the PodCreateFailed condition", timeout=90, state=running.log)
    failed = condition(ftj, "PodCreateFailed")
    assert failed["reason"] == "FailedCreate"
    assert 'violates PodSecurity "restricted:latest"' in failed["message"]
    assert "runAsNonRoot != true" in failed["message"]
    assert ftj["status"]["phase"] == "Pending"
    assert condition(ftj, "Reconciling")["status"] == "True"  # it may yet run, if the policy changes
    assert "PodCreateFailed" in ftj_events(cluster, enforcing, "refused")
    warnings = [e for e in cluster.events(enforcing) if e["reason"] == "PodCreateFailed"]
    assert warnings and warnings[0]["type"] == "Warning" and "violates PodSecurity" in warnings[0]["message"]
