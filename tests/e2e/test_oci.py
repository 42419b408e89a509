"""Models in and out as OCI artifacts on the real control plane: the API server takes the image volume,
the init containers and the push wiring; kwok plays the pod's end (the push itself is proven with the
real tools in tests/unit/render/test_push.py), and the operator turns it into status.output, an Event and the
wide column, or into OutputPushFailed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e import localcluster as lc
from finetune_operator.render.oci import EXIT_PUSH_FAILED
from tests.e2e.helpers import LIGHT, condition, ftj_events, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

PREFIX = "e2e.finetune.aidaptiv.io"
DIGEST = "sha256:" + "5e" * 32
SPEC: dict[str, Any] = {
    **LIGHT,
    "backoffLimit": 0,
    "model": {
        "image": {"reference": "registry.example.com/models/tinyllama:v1"},
        "copyToLocal": True,
        "localSizeLimit": "1Gi",
    },
    "output": {"image": {"repository": "registry.example.com/team/tinyllama-ft", "pushSecretName": "regcred"}},
}


@pytest.fixture
def held(local_cluster: lc.Cluster, namespace: str) -> Iterator[str]:
    local_cluster.hold_namespace(namespace)
    yield namespace
    local_cluster.release_namespace(namespace)


def _running_pod(cluster: lc.Cluster, namespace: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pods = cluster.pods(namespace, f"finetune.aidaptiv.io/name={name}")
        return next((p for p in pods if (p.get("status") or {}).get("phase") == "Running"), None)

    return cluster.wait_for(running, what=f"the pod of {name} running", timeout=90)


def _annotate(cluster: lc.Cluster, namespace: str, pod: dict[str, Any], annotations: dict[str, str]) -> None:
    pairs = [f"{PREFIX}/{key}={value}" for key, value in annotations.items()]
    cluster.kubectl("annotate", "pod", pod["metadata"]["name"], "-n", namespace, "--overwrite", *pairs)


def test_a_pushed_model_is_wired_and_lands_in_status(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess
) -> None:
    cluster, namespace = local_cluster, held
    cluster.apply(finetunejob(SPEC, name="oci"), namespace=namespace)
    pod = _running_pod(cluster, namespace, "oci")
    # What the API server stored (and so accepted): the image volume, the helpers, the push wiring.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["model"]["image"] == {
        "reference": "registry.example.com/models/tinyllama:v1",
        "pullPolicy": "IfNotPresent",
    }
    assert volumes["push-auth"]["secret"]["secretName"] == "regcred"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["push-tool-kit", "push-tool-crane", "model-loader"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    uid = get_ftj(cluster, namespace, "oci")["metadata"]["uid"]  # type: ignore[index]
    pushed_as = f"registry.example.com/team/tinyllama-ft:oci-{uid[:8]}"
    assert (env["FTO_PUSH_FORMAT"], env["FTO_PUSH_REFERENCE"]) == ("ModelKit", pushed_as)

    reference = f"{pushed_as}@{DIGEST}"
    said = (
        "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nstep: 2\nloss: 0.5\nevidence: training complete!\n"
        f"outputReference: {reference}\noutputDigest: {DIGEST}\npushedTime: 2026-11-29T10:00:00Z\n"
    )
    _annotate(cluster, namespace, pod, {"complete-message": said, "run-duration": "100ms"})
    cluster.release_namespace(namespace)
    ftj = wait_phase(cluster, namespace, "oci", "Succeeded")
    assert ftj["status"]["output"] == {"reference": reference, "digest": DIGEST, "pushedTime": "2026-11-29T10:00:00Z"}
    assert "OutputPushed" in ftj_events(cluster, namespace, "oci")
    wide = cluster.kubectl("get", "finetunejobs", "oci", "-n", namespace, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-1] == "OUTPUT" and wide.splitlines()[1].split()[-1] == reference


def test_a_failed_push_is_output_push_failed_not_a_retraining(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess
) -> None:
    cluster, namespace = local_cluster, held
    cluster.apply(finetunejob({**SPEC, "backoffLimit": 3}, name="oci-fail"), namespace=namespace)
    pod = _running_pod(cluster, namespace, "oci-fail")
    said = (
        f"verdict: failed\nreason: OutputPushFailed\nexitCode: {EXIT_PUSH_FAILED}\n"
        "evidence: training complete; push failed: crane: UNAUTHORIZED: authentication required\n"
    )
    annotations = {"fail": "true", "exit-code": str(EXIT_PUSH_FAILED), "fail-message": said, "run-duration": "100ms"}
    _annotate(cluster, namespace, pod, annotations)
    cluster.release_namespace(namespace)
    ftj = wait_phase(cluster, namespace, "oci-fail", "Failed")
    failed = condition(ftj, "Failed")
    assert failed["reason"] == "OutputPushFailed"
    assert failed["message"].startswith("training complete; push failed: crane: UNAUTHORIZED")
    # The FailJob rule on the push's exit code: one pod, not backoffLimit more trainings.
    assert len(cluster.pods(namespace, "finetune.aidaptiv.io/name=oci-fail")) == 1
