"""Shared pieces of the API models: the camelCase base model and CEL rule helpers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "finetune.aidaptiv.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
SINGULAR = "finetunejob"
SHORT_NAMES = ["ftj"]
# The suspend value the operator last asked of the Job: a queue controller (Kueue) may flip the
# Job's own flag, and the operator passes on only changes of the user's spec.suspend.
ANNOTATION_REQUESTED_SUSPEND = f"{GROUP}/requested-suspend"
LABEL_NAME = f"{GROUP}/name"
# Which attempt of the group of ranks a Job runs (numNodes > 1: the operator's gang retry).
ANNOTATION_ATTEMPT = f"{GROUP}/attempt"
# What the trainer logs when it finished: the only proof of success (its exit code is unreliable).
TRAINING_COMPLETE = "training complete!"
# The training container of the Job's pod: rendered under this name, read back (log, termination
# message) under it.
TRAINER_CONTAINER = "trainer"
# Stands for a rank's number in the env_config all ranks share: the entrypoint writes each rank's own.
RANK_PLACEHOLDER = "@FTO_NODE_RANK@"
# The init container that copies spec.model to local disk; its failure is the reason ModelLoadFailed.
LOADER_CONTAINER = "model-loader"
# The reasons of a training that succeeded but whose output could not be pushed, and of a failed copy.
OUTPUT_PUSH_FAILED = "OutputPushFailed"
MODEL_LOAD_FAILED = "ModelLoadFailed"

# Key used in json_schema_extra to carry CEL rules into the generated CRD.
CEL_KEY = "x-kubernetes-validations"


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, snake_case in Python.

    The snake_case attribute names are, by design, the aiDAPTIV trainer's own config keys, so the
    trainer files are a plain dump of the models. Unknown keys are refused (the API server refuses
    them too, with kubectl's strict field validation), so a typo never silently does nothing.
    Strict types, because the CRD's are: `maxIter: "5"` is refused by both, not coerced by one.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
        strict=True,
    )


def cel(
    rule: str,
    message: str | None = None,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One entry of `x-kubernetes-validations`."""
    entry: dict[str, Any] = {"rule": rule}
    if message is not None:
        entry["message"] = message
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def cel_string(text: str) -> str:
    """A CEL string literal holding `text` exactly (rules are data, never spliced unquoted)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def cel_literal(value: Any) -> str:
    """A CEL literal for a model default, used as the `orValue()` of an optional field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return cel_string(value)
    raise TypeError(f"no CEL literal for {value!r}")


def suspend_annotation(suspend: bool) -> dict[str, str]:
    """The annotation that records the suspend the operator last asked of a Job."""
    return {ANNOTATION_REQUESTED_SUSPEND: "true" if suspend else "false"}


def requested_suspend(job: dict[str, Any]) -> bool | None:
    """The suspend the operator last asked of this Job; None if it never said (not its Job, or older)."""
    said = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REQUESTED_SUSPEND)
    return {"true": True, "false": False}.get(said) if isinstance(said, str) else None
