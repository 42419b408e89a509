"""spec.model: the base model from an OCI image or a path in a volume, optionally copied to local disk."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import ApiModel, cel, cel_string
from finetune_operator.api.spec.common import DnsLabel, cel_optional, cel_rules
from finetune_operator.api.spec.env_config import PathSettings
from finetune_operator.api.spec.oci import AbsolutePath, ImageReference, QuantityText, is_within, quantity_of
from finetune_operator.api.spec.pod import Image, Resources, Volume

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class ModelImage(ApiModel):
    """An OCI image holding the base model, mounted read-only as a Kubernetes image volume."""

    reference: ImageReference = Field(
        description="The image, such as registry.example.com/models/llama-3.1-8b:v1 or one pinned @sha256:..."
    )
    pull_policy: PullPolicy = Field(
        "IfNotPresent", description='Always, IfNotPresent or Never. Defaults to "IfNotPresent".'
    )


def _loader_resources() -> Resources:
    # A copy is I/O: a little CPU, and memory for cp's buffers (the page cache is reclaimable).
    return Resources(requests={"cpu": "500m", "memory": "256Mi"}, limits={"memory": "1Gi"})


class ModelLoader(ApiModel):
    """The init container that copies the model to local disk (the chart's model-loader)."""

    image: Image | None = Field(
        None, description="Image with a POSIX shell and cp. Defaults to the trainer image (spec.image)."
    )
    resources: Resources = Field(
        default_factory=_loader_resources,
        description="Resources of the copy. Defaults to requests cpu 500m, memory 256Mi; limits memory 1Gi.",
    )


DEFAULT_MODEL_MOUNT = "/data/model"
DEFAULT_LOCAL_PATH = "/local/model"


def _cel_path(field: str, default: str, root: str = "self") -> str:
    """CEL for an optional path with its default. Not `.?f.orValue()`: the cost estimator loses the
    field's maxLength through an optional, and then prices every string operation at the request size."""
    return f"(has({root}.{field}) ? {root}.{field} : {cel_string(default)})"


_MOUNT = _cel_path("mountPath", DEFAULT_MODEL_MOUNT)
_LOCAL = _cel_path("localPath", DEFAULT_LOCAL_PATH)


def _within(path: str, directory: str) -> str:
    """CEL: the path is the directory or below it (both canonical absolute paths)."""
    return f"({path} == {directory} || {path}.startsWith({directory} + '/'))"


class Model(ApiModel):
    """The base model to fine-tune: from an OCI image, or a path in one of spec.volumes; optionally
    copied to node-local disk before training."""

    image: ModelImage | None = Field(
        None,
        description=(
            "The model as an OCI image, mounted read-only at mountPath as an image volume (Kubernetes 1.35+ "
            "with a container runtime that supports image volumes, such as containerd 2.1 or CRI-O 1.31)."
        ),
    )
    mount_path: AbsolutePath = Field(
        DEFAULT_MODEL_MOUNT, description=f'Where the model image is mounted. Defaults to "{DEFAULT_MODEL_MOUNT}".'
    )
    source_path: AbsolutePath | None = Field(
        None,
        description=(
            "Where the model files are: with image, mountPath or a directory below it (the default: mountPath); "
            "without image, a directory inside one of spec.volumes, or inside loader.image (the chart's "
            "model-loader image that carries the model)."
        ),
    )
    copy_to_local: bool = Field(
        False,
        description=(
            "Copy the model to localPath in an init container (model-loader) before training, so the trainer "
            "reads it from local disk. A failed copy ends the pod with reason ModelLoadFailed. Defaults to false."
        ),
    )
    local_path: AbsolutePath = Field(
        DEFAULT_LOCAL_PATH,
        description=(
            "Where copyToLocal puts the model: an emptyDir on the node's disk mounted here, or, with "
            f'localVolume, a directory inside that volume. Defaults to "{DEFAULT_LOCAL_PATH}".'
        ),
    )
    local_volume: DnsLabel | None = Field(
        None,
        description=(
            "Name of one of spec.volumes to copy into instead of an emptyDir, such as a local PersistentVolume "
            "on the NVMe disk; localPath must be inside its mountPath."
        ),
    )
    local_size_limit: Annotated[QuantityText, quantity_of("localSizeLimit")] | None = Field(
        None, description="sizeLimit of the emptyDir that copyToLocal fills, such as 200Gi. Defaults to none."
    )
    loader: ModelLoader = Field(default_factory=ModelLoader, description="The copy's container.")

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.image) || has(self.sourcePath)", msg.MODEL_SOURCE),
            cel(
                f"!has(self.image) || !has(self.sourcePath) || {_within('self.sourcePath', _MOUNT)}",
                msg.MODEL_SOURCE_IN_IMAGE,
                field_path=".sourcePath",
            ),
            cel(
                f"!self.?copyToLocal.orValue(false) || !has(self.image) || !({_within(_LOCAL, _MOUNT)})",
                msg.MODEL_LOCAL_IN_IMAGE,
                field_path=".localPath",
            ),
        )
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.image is None and self.source_path is None:
            raise ValueError(msg.MODEL_SOURCE)
        if self.image is not None and self.source_path is not None and not is_within(self.source_path, self.mount_path):
            raise ValueError(msg.MODEL_SOURCE_IN_IMAGE)
        if self.copy_to_local and self.image is not None and is_within(self.local_path, self.mount_path):
            raise ValueError(msg.MODEL_LOCAL_IN_IMAGE)
        return self

    def source(self) -> str:
        """Where the model files are read from (by the loader, or by the trainer without a copy)."""
        return self.source_path or self.mount_path

    def trainer_path(self) -> str:
        """Where the trainer finds the model: the local copy, or the source itself."""
        return self.local_path if self.copy_to_local else self.source()


def check_model_volumes(model: Model, volumes: list[Volume]) -> None:
    """What spec.model asks of spec.volumes: its own mounts free, and the volumes it names there."""
    taken = {volume.mount_path for volume in volumes}
    if (model.image is not None and model.mount_path in taken) or (
        model.copy_to_local and model.local_volume is None and model.local_path in taken
    ):
        raise ValueError(msg.MODEL_MOUNT_TAKEN)
    in_loader = model.loader.image is not None  # the chart's way: the loader's own image holds the model
    if (
        model.copy_to_local
        and model.image is None
        and not in_loader
        and not any(is_within(model.source(), p) for p in taken)
    ):
        raise ValueError(msg.MODEL_SOURCE_IN_VOLUME)
    if model.local_volume is not None:
        target = next((v for v in volumes if v.name == model.local_volume), None)
        if target is None or target.read_only or not is_within(model.local_path, target.mount_path):
            raise ValueError(msg.MODEL_LOCAL_VOLUME)


def model_volume_rules() -> list[dict[str, Any]]:
    """The CEL twins of check_model_volumes."""
    model = "self.model"
    mount = _cel_path("mountPath", DEFAULT_MODEL_MOUNT, model)
    local = _cel_path("localPath", DEFAULT_LOCAL_PATH, model)
    copy = cel_optional("copyToLocal", False, model)

    def inside(path: str, directory: str) -> str:
        return f"({path} == {directory} || {path}.startsWith({directory} + '/'))"

    # `has(self.volumes) && self.volumes.exists(..)`, never `(has(..) ? self.volumes : [])`: through a
    # conditional the cost estimator loses maxItems and prices the list at the request's size.
    def every(predicate: str) -> str:
        return f"(!has(self.volumes) || self.volumes.all(v, {predicate}))"

    def some(predicate: str) -> str:
        return f"(has(self.volumes) && self.volumes.exists(v, {predicate}))"

    return [
        cel(
            f"!has(self.model) || ((!has({model}.image) || {every(f'v.mountPath != {mount}')}) && "
            f"(!{copy} || has({model}.localVolume) || {every(f'v.mountPath != {local}')}))",
            msg.MODEL_MOUNT_TAKEN,
            field_path=".model",
        ),
        cel(
            f"!has(self.model) || !{copy} || has({model}.image) || has({model}.?loader.image) || "
            f"!has({model}.sourcePath) || " + some(inside(f"{model}.sourcePath", "v.mountPath")),
            msg.MODEL_SOURCE_IN_VOLUME,
            field_path=".model.sourcePath",
        ),
        cel(
            f"!has(self.model) || !has({model}.localVolume) || "
            + some(f"v.name == {model}.localVolume && !v.?readOnly.orValue(false) && {inside(local, 'v.mountPath')}"),
            msg.MODEL_LOCAL_VOLUME,
            field_path=".model.localVolume",
        ),
    ]


def model_path_note(model: Model | None, paths: PathSettings) -> str | None:
    """Why the trainer may not read spec.model: the user's own modelNameOrPath points elsewhere."""
    if model is None or "model_name_or_path" not in paths.model_fields_set:
        return None
    given, expected = paths.model_name_or_path, model.trainer_path()
    if is_within(given, expected):
        return None
    return (
        f"envConfig.pathSettings.modelNameOrPath is {given!r}, outside {expected!r} where spec.model puts the "
        "model; the trainer reads the former (kept as written). Unset it to train on spec.model"
    )
