"""Pod-level settings: image, resources, volumes, shared memory."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, ApiModel, cel, cel_string
from finetune_operator.api.quantity import (
    INT64_MAX,
    in_range,
    is_extended_resource,
    is_quantity,
    is_whole,
    parse_quantity,
)
from finetune_operator.api.spec.common import (
    DnsLabel,
    Name,
    Path,
    QualifiedName,
    Quantity,
    cel_rules,
    qualified_names_rule,
)


class Image(ApiModel):
    """The trainer image."""

    repository: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        "docker.io/library/aidaptiv", description='Image repository. Defaults to "docker.io/library/aidaptiv".'
    )
    tag: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        "vNXUN_2_05BA0", description='Image tag. Defaults to "vNXUN_2_05BA0".'
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description='Always, IfNotPresent or Never. Defaults to "IfNotPresent".'
    )

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class LocalObjectReference(ApiModel):
    """A Secret in the FineTuneJob's namespace."""

    name: Name = Field(description="Name of the Secret.")


# Every extended resource (a domain outside kubernetes.io), as the models and pod validation tell them.
EXTENDED = "k.contains('/') && !(k.split('/')[0] == 'kubernetes.io' || k.split('/')[0].endsWith('.kubernetes.io'))"


def _quantity_of(key: str) -> str:
    return f"quantity(string(self[{cel_string(key)}]))"


def _resource_list_rules() -> dict[str, Any]:
    pct = cel_string(msg.VGPUMEM_PERCENTAGE)
    whole = f"self.all(k, !({EXTENDED}) || !isQuantity(string(self[k])) || quantity(string(self[k])).isInteger())"
    return {
        "maxProperties": 32,
        CEL_KEY: [
            cel(qualified_names_rule(), msg.QUALIFIED_NAME),
            cel("self.all(k, isQuantity(string(self[k])))", msg.QUANTITY),
            cel(
                "self.all(k, !isQuantity(string(self[k])) || (quantity(string(self[k])).compareTo(quantity('0')) >= 0 "
                f"&& quantity(string(self[k])).compareTo(quantity('{INT64_MAX}')) <= 0))",
                msg.QUANTITY_RANGE,
            ),
            cel(whole, msg.EXTENDED_WHOLE),
            cel(
                f"!({pct} in self) || (isQuantity(string(self[{pct}])) && {_quantity_of(msg.VGPUMEM_PERCENTAGE)}"
                f".isInteger() && {_quantity_of(msg.VGPUMEM_PERCENTAGE)}.asInteger() >= 0 "
                f"&& {_quantity_of(msg.VGPUMEM_PERCENTAGE)}.asInteger() <= 100)",
                msg.VGPUMEM_PERCENTAGE_RANGE,
            ),
            cel(f"!({pct} in self && {cel_string(msg.VGPUMEM)} in self)", msg.VGPUMEM_EXCLUSIVE),
        ],
    }


def _not_overcommitted_rule() -> dict[str, Any]:
    same = (
        "has(self.limits) && k in self.limits && isQuantity(string(self.requests[k])) "
        "&& isQuantity(string(self.limits[k])) "
        "&& quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) == 0"
    )
    return cel(
        f"!has(self.requests) || self.requests.all(k, !({EXTENDED}) || ({same}))", msg.EXTENDED_NOT_OVERCOMMITTED
    )


ResourceList = Annotated[dict[QualifiedName, Quantity], Field(max_length=32)]


class Resources(ApiModel):
    """Compute resources of the training container, passed to the pod exactly as given."""

    requests: ResourceList = Field(
        default_factory=dict,
        description="Requested resources, such as phison.com/ai100 and otterscale.com/vgpu.",
        json_schema_extra=_resource_list_rules(),
    )
    limits: ResourceList = Field(
        default_factory=dict,
        description="Resource limits; extended resources need the same value here as in requests.",
        json_schema_extra=_resource_list_rules(),
    )

    model_config = ConfigDict(json_schema_extra=cel_rules(_not_overcommitted_rule()))

    @model_validator(mode="after")
    def _quantities(self) -> Self:
        requests = _resource_list(self.requests)
        limits = _resource_list(self.limits)
        for name, value in requests.items():
            if is_extended_resource(name) and (name not in limits or value != limits[name]):
                raise ValueError(msg.EXTENDED_NOT_OVERCOMMITTED)
        return self


def _resource_list(values: dict[str, int | str]) -> dict[str, Decimal]:
    """The parsed quantities of a requests or limits map, checked one by one and together."""
    parsed: dict[str, Decimal] = {}
    for name, value in values.items():
        shown = _shown(value)
        try:
            quantity = parse_quantity(value)
        except ValueError:
            raise ValueError(f"{msg.QUANTITY} (got {name}: {shown})") from None
        if not in_range(quantity):
            raise ValueError(f"{msg.QUANTITY_RANGE} (got {name}: {shown})")
        if is_extended_resource(name) and not is_whole(quantity):
            raise ValueError(f"{msg.EXTENDED_WHOLE} (got {name}: {shown})")
        parsed[name] = quantity
    percentage = parsed.get(msg.VGPUMEM_PERCENTAGE)
    if percentage is not None and (not is_whole(percentage) or not 0 <= percentage <= 100):
        raise ValueError(msg.VGPUMEM_PERCENTAGE_RANGE)
    if msg.VGPUMEM_PERCENTAGE in values and msg.VGPUMEM in values:
        raise ValueError(msg.VGPUMEM_EXCLUSIVE)
    return parsed


def _shown(value: int | str) -> str:
    """A user's value in a message, cut short: messages end up in conditions and terminals."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _default_resources() -> Resources:
    # The chart's values.yaml: one vGPU at 60 % of its memory and one aiDAPTIVCache device.
    gpu = {"otterscale.com/vgpu": 1, msg.VGPUMEM_PERCENTAGE: 60, "phison.com/ai100": 1}
    return Resources(requests=dict(gpu), limits=dict(gpu))


class NfsSource(ApiModel):
    """An NFS export, mounted by the kubelet (no privileged container needed)."""

    server: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="NFS server host name or IP address."
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Exported path on the server."
    )


class PvcSource(ApiModel):
    """A PersistentVolumeClaim in the FineTuneJob's namespace."""

    claim_name: Name = Field(description="Name of the PersistentVolumeClaim.")


# An absolute path with no empty segment and no trailing slash; `.` and `..` segments are refused apart.
CANONICAL_ABSOLUTE = r"^(/[^/]+)+$"
DOT_SEGMENT = r"/\.\.?(/|$)"
DOT_DOT_SEGMENT = r"(^|/)\.\.(/|$)"


def canonical_path_rules(not_canonical: str) -> list[dict[str, Any]]:
    """CEL: a canonical absolute path outside the operator's own directories."""
    return [
        cel(f"self.matches({cel_string(CANONICAL_ABSOLUTE)})", not_canonical),
        cel(f"!self.matches({cel_string(DOT_SEGMENT)})", not_canonical),
        cel(
            " && ".join(f"self != '{p}' && !self.startsWith('{p}/')" for p in msg.RESERVED_MOUNT_PREFIXES),
            msg.MOUNT_PATH_RESERVED,
        ),
    ]


def canonical_path(value: str, not_canonical: str) -> str:
    """The model twin of canonical_path_rules. Canonical form only, so that two spellings of one
    directory cannot pass as two, and a reserved directory cannot hide behind `//config` or `/a/../config`."""
    if re.fullmatch(CANONICAL_ABSOLUTE[1:-1], value) is None or re.search(DOT_SEGMENT, value):
        raise ValueError(not_canonical)
    if any(value == p or value.startswith(p + "/") for p in msg.RESERVED_MOUNT_PREFIXES):
        raise ValueError(msg.MOUNT_PATH_RESERVED)
    return value


def check_quantity(value: str, field: str) -> str:
    if not is_quantity(value):
        raise ValueError(f"{msg.QUANTITY} (got {field}: {_shown(value)})")
    return value


class Volume(ApiModel):
    """Storage mounted into the training container: models in, fine-tuned weights out."""

    name: DnsLabel = Field(description="Name of the volume, a DNS label of at most 48 characters.")
    mount_path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Where the volume appears in the container, such as /mnt/data.",
        json_schema_extra=cel_rules(*canonical_path_rules(msg.MOUNT_PATH_ABSOLUTE)),
    )
    read_only: bool = Field(False, description="Mount read-only. Defaults to false.")
    sub_path: Path | None = Field(
        None,
        description="Mount only this path inside the volume (relative, without .. segments).",
        json_schema_extra=cel_rules(
            cel(f"!self.startsWith('/') && !self.matches({cel_string(DOT_DOT_SEGMENT)})", msg.SUB_PATH)
        ),
    )
    nfs: NfsSource | None = Field(None, description="An NFS export.")
    persistent_volume_claim: PvcSource | None = Field(None, description="A PersistentVolumeClaim.")

    model_config = ConfigDict(
        json_schema_extra=cel_rules(cel("has(self.nfs) != has(self.persistentVolumeClaim)", msg.VOLUME_ONE_SOURCE))
    )

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        return canonical_path(value, msg.MOUNT_PATH_ABSOLUTE)

    @field_validator("sub_path")
    @classmethod
    def _sub_path(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or re.search(DOT_DOT_SEGMENT, value)):
            raise ValueError(msg.SUB_PATH)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.nfs is None) == (self.persistent_volume_claim is None):
            raise ValueError(msg.VOLUME_ONE_SOURCE)
        return self


class SharedMemory(ApiModel):
    """A memory-backed /dev/shm: the default 64 MiB is too small for NCCL and data loaders."""

    enabled: bool = Field(True, description="Mount a memory-backed emptyDir at /dev/shm. Defaults to true.")
    # Bounded by default: a memory-backed /dev/shm is node memory, and a training that fills it
    # is evicted instead of starving the node's other pods and the kubelet.
    size_limit: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        "16Gi",
        description=(
            "Upper bound of /dev/shm, such as 32Gi; it counts against the container's memory limit, and a "
            "pod that exceeds it is evicted. null removes the bound (the node's memory is the limit). "
            'Defaults to "16Gi".'
        ),
        json_schema_extra=cel_rules(cel("isQuantity(self)", msg.QUANTITY)),
    )

    @field_validator("size_limit")
    @classmethod
    def _size_limit(cls, value: str | None) -> str | None:
        return None if value is None else check_quantity(value, "sizeLimit")
