"""A values.yaml of the `aidaptivcache-finetune` chart into a FineTuneJob.

The spec reuses the chart's values tree, so conversion moves the `job` block's fields up to the
spec, turns `job.name` into `metadata.name`, and otherwise copies what the user wrote (no defaults
are filled in: the FineTuneJob stays as short as the values file, and the models supply defaults).
"""

from __future__ import annotations

import copy
from typing import Any

from finetune_operator.api.base import API_VERSION, KIND
from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec.output import CRANE_PATH, KIT_IMAGE, KIT_PATH

# Top-level keys of the chart's values that map one to one onto spec fields.
SPEC_KEYS = (
    "image",
    "imagePullSecrets",
    "schedulerName",
    "securityContext",
    "prescript",
    "postscript",
    "expConfig",
    "envConfig",
    "trainDataConfig",
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
)
JOB_KEYS = ("backoffLimit", "restartPolicy", "ttlSecondsAfterFinished")
# The chart's 0.3.x blocks, each with `enabled`; they map onto spec.model and spec.output.image.
OCI_KEYS = ("modelImage", "initContainer", "outputImage")
# Where the chart's model-loader copied the model when sharedDataPath was left unset.
CHART_SHARED_DATA_PATH = "/data"
OUTPUT_FORMATS = {"crane": "Image", "kitops": "ModelPack"}  # the chart ran `kit pack --use-model-pack`


def values_to_finetunejob(
    values: dict[str, Any], name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The FineTuneJob for a chart values tree; InvalidFineTuneJob names what does not fit."""
    if not isinstance(values, dict):
        raise InvalidFineTuneJob(["the values file must be a YAML mapping"])
    unknown = sorted(set(values) - set(SPEC_KEYS) - set(OCI_KEYS) - {"job"})
    if unknown:
        raise InvalidFineTuneJob(
            [f"{key}: not a value of the aidaptivcache-finetune chart (unknown key)" for key in unknown]
        )
    job = values.get("job") or {}
    if not isinstance(job, dict):
        raise InvalidFineTuneJob(
            ["job: must be a mapping (name, backoffLimit, restartPolicy, ttlSecondsAfterFinished)"]
        )
    unknown_job = sorted(set(job) - set(JOB_KEYS) - {"name"})
    if unknown_job:
        raise InvalidFineTuneJob(
            [f"job.{key}: not a value of the chart's job block (unknown key)" for key in unknown_job]
        )
    resource_name = name or job.get("name")
    if not resource_name:
        raise InvalidFineTuneJob(["no name: pass --name, or set job.name in the values"])

    spec: dict[str, Any] = copy.deepcopy({key: values[key] for key in SPEC_KEYS if key in values})
    spec.update({key: job[key] for key in JOB_KEYS if key in job})
    _normalize_scalars(spec)
    spec.update(copy.deepcopy(oci_blocks(values)))

    metadata: dict[str, Any] = {"name": str(resource_name)}
    if namespace:
        metadata["namespace"] = namespace
    ftj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    load_finetunejob(ftj)
    return ftj


def _mapping(parent: Any, key: str) -> dict[str, Any]:
    """A subtree if it is a mapping; anything else is left for validation to name."""
    child = parent.get(key) if isinstance(parent, dict) else None
    return child if isinstance(child, dict) else {}


def _normalize_scalars(spec: dict[str, Any]) -> None:
    """Values a Helm user writes loosely but the CRD types strictly: `specifyGpus: 0`, `cpu: 0.5`."""
    process = _mapping(_mapping(spec, "expConfig"), "processSettings")
    if isinstance(process.get("specifyGpus"), int) and not isinstance(process["specifyGpus"], bool):
        process["specifyGpus"] = str(process["specifyGpus"])
    resources = _mapping(spec, "resources")
    for kind in ("requests", "limits"):
        values = _mapping(resources, kind)
        for key, value in values.items():
            if isinstance(value, float):
                values[key] = format(value, "g")


def _enabled(values: dict[str, Any], key: str) -> dict[str, Any] | None:
    block = values.get(key)
    if block is None:
        return None
    if not isinstance(block, dict):
        raise InvalidFineTuneJob([f"{key}: must be a mapping with enabled: true or false"])
    return block if block.get("enabled") is True else None


def _given(block: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The chart's keys that are set, under the FineTuneJob's names."""
    return {ours: block[theirs] for theirs, ours in pairs if block.get(theirs) is not None}


def oci_blocks(values: dict[str, Any]) -> dict[str, Any]:
    """spec.model and spec.output for the chart's modelImage, initContainer and outputImage (0.3.x)."""
    spec: dict[str, Any] = {}
    model: dict[str, Any] = {}
    image = _enabled(values, "modelImage")
    if image is not None:
        model["image"] = _given(image, (("reference", "reference"), ("pullPolicy", "pullPolicy")))
        model.update(_given(image, (("mountPath", "mountPath"),)))
    loader = _enabled(values, "initContainer")
    if loader is not None:
        model["copyToLocal"] = True
        model.update(_given(loader, (("modelSourcePath", "sourcePath"),)))
        model["localPath"] = loader.get("sharedDataPath") or CHART_SHARED_DATA_PATH
        if isinstance(loader.get("image"), dict):
            model["loader"] = {
                "image": _given(loader["image"], tuple((k, k) for k in ("repository", "tag", "pullPolicy")))
            }
    if model:
        spec["model"] = model
    output = _enabled(values, "outputImage")
    if output is not None:
        spec["output"] = {"image": _output_image(output)}
    return spec


def _output_image(output: dict[str, Any]) -> dict[str, Any]:
    kind = output.get("type")
    if not isinstance(kind, str) or kind not in OUTPUT_FORMATS:  # a list or mapping is no key of it
        raise InvalidFineTuneJob([f"outputImage.type: must be crane or kitops (got {str(kind)[:40]!r})"])
    pushed: dict[str, Any] = _given(output, (("repository", "repository"), ("tag", "tag"), ("insecure", "insecure")))
    pushed["format"] = OUTPUT_FORMATS[kind]
    pushed.update(_given(output, (("pushSecret", "pushSecretName"),)))
    crane, kit = _mapping(output, "crane"), _mapping(output, "kitops")
    if kind == "crane" and crane.get("baseImage") is not None:
        pushed["baseImage"] = crane["baseImage"]
    tools = {}
    if crane.get("image") is not None:
        tools["crane"] = {"image": crane["image"], "path": CRANE_PATH}
    if kit.get("image") is not None or kit.get("binPath") is not None:
        tools["kit"] = {"image": kit.get("image") or KIT_IMAGE, "path": kit.get("binPath") or KIT_PATH}
    if tools:
        pushed["tools"] = tools
    return pushed


MANUAL_MULTI_NODE = (
    "multiNodeSettings.enable: the chart's manual mode is kept (one pod, masterAddr as given); "
    "set spec.numNodes to let the operator run and wire all the ranks"
)


NO_BASE_IMAGE = (
    "outputImage.crane.baseImage: unset, so the output is pushed on its own; the chart put it on "
    "busybox:latest (set spec.output.image.baseImage to keep that)"
)


def conversion_notes(values: Any) -> list[str]:
    """What a converted FineTuneJob does differently from what the values may suggest, for comment lines."""
    notes = []
    settings = _mapping(_mapping(_mapping(values, "expConfig"), "processSettings"), "multiNodeSettings")
    if settings.get("enable") is True:
        notes.append(MANUAL_MULTI_NODE)
    output = _mapping(values, "outputImage")
    if (
        output.get("enabled") is True
        and output.get("type") == "crane"
        and _mapping(output, "crane").get("baseImage") is None
    ):
        notes.append(NO_BASE_IMAGE)
    return notes
