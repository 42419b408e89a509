"""Golden files: what `render` makes of a few FineTuneJobs, byte for byte, so that any change of the
rendered objects shows up in review as a diff of tests/golden/. After an intended change:
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/render/test_golden.py` and read the diff."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_operator.api.resource import load_finetunejob
from finetune_operator.render.configs import dump_yaml
from finetune_operator.render.manifests import render

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"
UID = "0f1e2d3c-4b5a-4968-8776-65544332211f"


def _stored(path: str) -> dict[str, Any]:
    """An example as the API server stores it: with a namespace and a uid."""
    ftj: dict[str, Any] = yaml.safe_load((ROOT / path).read_text())
    ftj["metadata"].update(namespace="ml", uid=UID)
    return ftj


def _four_nodes() -> dict[str, Any]:
    ftj = _stored("examples/multi-gpu.yaml")
    ftj["metadata"]["name"] = "four-nodes"
    ftj["spec"]["numNodes"] = 4
    ftj["spec"]["expConfig"]["processSettings"].update(numGpus=8, specifyGpus=None, masterPort=29500)
    ftj["spec"]["expConfig"]["runSettings"]["perUpdateTotalBatchSize"] = 64
    ftj["spec"]["envConfig"] = {"pathSettings": {"multiNodeEnvPath": "/config/run/multi_node.env"}}
    ftj["spec"]["affinity"] = {"nodeAffinity": {}}
    return ftj


def _chart_model_loader() -> dict[str, Any]:
    """The 0.3.x chart's way, converted: the loader's own image carries the model; an Image pushed on a base."""
    ftj = _stored("examples/basic.yaml")
    ftj["metadata"]["name"] = "chart-loader"
    ftj["spec"]["model"] = {
        "sourcePath": "/models/llama",
        "copyToLocal": True,
        "localPath": "/data",
        "loader": {"image": {"repository": "registry.example.com/models/llama-loader", "tag": "v1"}},
    }
    ftj["spec"]["output"] = {
        "image": {
            "repository": "localhost:5000/team/llama-ft",
            "format": "Image",
            "baseImage": "busybox:1.36",
            "insecure": True,
            "workSizeLimit": "20Gi",
        }
    }
    return ftj


CASES: dict[str, tuple[Callable[[], dict[str, Any]], int]] = {
    "oci-model": (lambda: _stored("examples/oci-model.yaml"), 1),
    "chart-model-loader": (_chart_model_loader, 1),
    "basic": (lambda: _stored("examples/basic.yaml"), 1),
    "two-nodes": (lambda: _stored("examples/multi-node.yaml"), 1),
    "four-nodes-second-attempt": (_four_nodes, 2),
}


@pytest.mark.parametrize("name", CASES)
def test_rendering_matches_its_golden_file(name: str) -> None:
    make, attempt = CASES[name]
    rendered = "---\n".join(dump_yaml(manifest) for manifest in render(load_finetunejob(make()), attempt))
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert golden.exists(), f"{golden} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == golden.read_text(), f"{golden} differs: if intended, UPDATE_GOLDEN=1 and review the diff"
