"""The whole FineTuneJob object, and turning validation errors into one line a user can act on."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import ApiModel
from finetune_operator.api.quantity import INT64_MAX
from finetune_operator.api.spec import FineTuneJobSpec
from finetune_operator.api.spec.common import LabelValue, QualifiedName
from finetune_operator.api.status import FineTuneJobStatus

INT64_MIN = -(2**63)
DNS_1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"


def rank_zero_address(name: str, namespace: str | None) -> str:
    """The DNS name of rank 0 of a multi-node Job: pod `<job>-0` of Service `<job>` (the first attempt's
    Job has the FineTuneJob's name; a later attempt's has its own, and its ranks are told it)."""
    return f"{name}-0.{name}.{namespace or 'default'}.svc"


def is_rank_zero(address: str, name: str, namespace: str | None) -> bool:
    """The rank-0 name, in any of the forms that resolve to it from inside the namespace."""
    scope = re.escape(namespace) if namespace else DNS_1035_LABEL
    short = re.escape(f"{name}-0.{name}")
    return re.fullmatch(rf"{short}(\.{scope}(\.svc(\.[a-z0-9.-]+)?)?)?", address) is not None


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ObjectMeta(BaseModel):
    """The parts of metadata the operator uses; the rest is kept as it is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: Annotated[str, StringConstraints(min_length=1, pattern=DNS_SUBDOMAIN)]
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict)
    annotations: dict[QualifiedName, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_length(cls, value: str) -> str:
        if len(value) > msg.MAX_NAME_LENGTH:
            raise ValueError(msg.NAME_LENGTH)
        return value


class FineTuneJob(ApiModel):
    """A FineTuneJob as stored by the API server."""

    # As the API server: no unknown top-level key (`sepc:` is a typo, not an empty spec), and
    # apiVersion, kind and spec are required (the CRD's schema requires spec).
    api_version: Literal["finetune.aidaptiv.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FineTuneJob"]
    metadata: ObjectMeta
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None

    @model_validator(mode="after")
    def _multi_node_names(self) -> Self:
        if self.spec.num_nodes <= 1:
            return self
        name = self.metadata.name
        if len(name) > msg.MAX_MULTI_NODE_NAME or re.fullmatch(DNS_1035_LABEL, name) is None:
            raise ValueError(msg.MULTI_NODE_NAME)
        settings = self.spec.exp_config.process_settings.multi_node_settings
        if "master_addr" in settings.model_fields_set and not is_rank_zero(
            settings.master_addr, name, self.metadata.namespace
        ):
            raise ValueError(msg.master_addr(settings.master_addr, rank_zero_address(name, self.metadata.namespace)))
        return self


class InvalidFineTuneJob(ValueError):
    """A FineTuneJob the operator will not render; `problems` name each field and rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_finetunejob(obj: dict[str, Any]) -> FineTuneJob:
    """Validate a FineTuneJob dict; InvalidFineTuneJob says what is wrong, field by field.

    Nothing else escapes: this runs on whatever a user stored, inside the operator's loop.
    """
    problems = oversized_integers(obj)
    if problems:
        raise InvalidFineTuneJob(problems)
    try:
        # By alias only: `num_gpus: 8` is an unknown field to the API server, so it is one here too.
        return FineTuneJob.model_validate(obj, by_alias=True, by_name=False)
    except ValidationError as error:
        raise InvalidFineTuneJob(describe_errors(error)) from None
    except (ArithmeticError, RecursionError, ValueError, TypeError) as error:
        raise InvalidFineTuneJob([f"the FineTuneJob cannot be validated: {type(error).__name__}: {error}"]) from None


def oversized_integers(obj: Any) -> list[str]:
    """Where integers do not fit in an int64, as the API server stores them (JSON numbers)."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack and len(problems) < 5:
        where, item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            problems.append(f"{where or 'value'}: {msg.INT64}")
        elif isinstance(item, dict):
            stack.extend((f"{where}.{key}" if where else str(key), child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return sorted(problems)


def describe_errors(error: ValidationError) -> list[str]:
    """`spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8` and so on."""
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in _location(item["loc"]))
        text = item["msg"]
        text = text.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "extra_forbidden":
            text = "unknown field (check its spelling and place)"
        problems.append(f"{location}: {text}" if location else text)
    return problems


def _location(loc: tuple[int | str, ...]) -> list[str]:
    # pydantic names union branches in locations (`str`, `list[...]`); a user knows only fields.
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{part}]"
            continue
        if "[" in part or part in {"str", "int", "constrained-str", "function-after", "none"}:
            continue
        parts.append(part)
    return parts
