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


def values_to_finetunejob(
    values: dict[str, Any], name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The FineTuneJob for a chart values tree; InvalidFineTuneJob names what does not fit."""
    if not isinstance(values, dict):
        raise InvalidFineTuneJob(["the values file must be a YAML mapping"])
    unknown = sorted(set(values) - set(SPEC_KEYS) - {"job"})
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


MANUAL_MULTI_NODE = (
    "multiNodeSettings.enable: the chart's manual mode is kept (one pod, masterAddr as given); "
    "set spec.numNodes to let the operator run and wire all the ranks"
)


def conversion_notes(values: Any) -> list[str]:
    """What a converted FineTuneJob does differently from what the values may suggest, for comment lines."""
    settings = _mapping(_mapping(_mapping(values, "expConfig"), "processSettings"), "multiNodeSettings")
    return [MANUAL_MULTI_NODE] if settings.get("enable") is True else []
