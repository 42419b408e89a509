"""spec.model on the real node: a model image pushed to the node's registry, mounted read-only as an
image volume where the trainer reads it, or copied to local disk first by the model-loader."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e import localcluster as lc
from tests.e2e.helpers import get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode, push_image
from tests.e2e.realnode.test_finetunejob import pods_of, trainer_spec
from tests.rule_cases import finetunejob

MODEL = {
    "config.json": json.dumps({"model_type": "pushed-llama"}).encode(),
    "model.safetensors": b"weights pushed by the test\n",
}
PROBE = """\
if touch /data/model/written 2>/dev/null; then echo "probe model writable"; else echo "probe model read-only"; fi
export PHISONAI2_STANDIN_STEP_SECONDS=0.1
"""


def _trainer_log(cluster: lc.Cluster, namespace: str, name: str) -> str:
    (pod,) = pods_of(cluster, namespace, name)
    return cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "--all-containers").stdout


def test_the_model_image_is_mounted_read_only_where_the_trainer_reads_it(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    reference = push_image(real_node, f"{namespace}/model:v1", MODEL, tmp_path)
    _, claim = host_volumes("out")
    spec = trainer_spec(real_node, claim, PROBE, model={"image": {"reference": reference}})
    cluster.apply(finetunejob(spec, "mounted", namespace))
    wait_phase(cluster, namespace, "mounted", "Succeeded", running, timeout=120)
    log = _trainer_log(cluster, namespace, "mounted")
    assert "probe model read-only" in log
    assert "[INFO] [create_hf_model] init from pretrained /data/model (model_type pushed-llama)" in log


def test_copy_to_local_copies_the_model_before_the_trainer_starts(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    reference = push_image(real_node, f"{namespace}/model:v1", MODEL, tmp_path)
    _, claim = host_volumes("out")
    spec = trainer_spec(real_node, claim, "", model={"image": {"reference": reference}, "copyToLocal": True})
    cluster.apply(finetunejob(spec, "copied", namespace))
    wait_phase(cluster, namespace, "copied", "Succeeded", running, timeout=120)
    log = _trainer_log(cluster, namespace, "copied")
    assert "model-loader: copying /data/model to /local/model\nmodel-loader: done\n" in log
    assert "[INFO] [create_hf_model] init from pretrained /local/model (model_type pushed-llama)" in log


@pytest.mark.parametrize("missing", ["model image", "model image, copied", "trainer image"])
def test_an_image_that_does_not_exist_is_reported(
    cluster: lc.Cluster, namespace: str, real_node: RealNode, running: OperatorProcess, missing: str
) -> None:
    absent = f"{real_node.registry}/{namespace}/absent:v1"
    resources = {"phison.com/ai100": 1}
    spec = trainer_spec(real_node, "unused", "")
    spec.update(volumes=[], envConfig={}, resources={"requests": resources, "limits": resources})
    if missing == "trainer image":
        spec["image"] = {"repository": absent.rsplit(":", 1)[0], "tag": "v1", "pullPolicy": "IfNotPresent"}
    else:
        spec["model"] = {"image": {"reference": absent}, "copyToLocal": missing.endswith("copied")}
    cluster.apply(finetunejob(spec, "absent", namespace))

    def reported() -> bool:
        status = (get_ftj(cluster, namespace, "absent") or {}).get("status") or {}
        said = " ".join(c.get("message", "") for c in status.get("conditions", []))
        return status.get("phase") == "Failed" or "absent:v1" in said

    # The kubelet reports ErrImagePull ("... absent:v1: not found") within seconds of the pod's start.
    cluster.wait_for(reported, what=f"the missing {missing} reported", timeout=30)
