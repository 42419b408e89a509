"""The whole FineTuneJob object, and turning validation errors into one line a user can act on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import API_VERSION, KIND, ApiModel
from finetune_operator.api.spec import FineTuneJobSpec
from finetune_operator.api.status import FineTuneJobStatus

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ObjectMeta(BaseModel):
    """The parts of metadata the operator uses; the rest is kept as it is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: Annotated[str, StringConstraints(min_length=1, pattern=DNS_SUBDOMAIN)]
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_length(cls, value: str) -> str:
        if len(value) > msg.MAX_NAME_LENGTH:
            raise ValueError(msg.NAME_LENGTH)
        return value


class FineTuneJob(ApiModel):
    """A FineTuneJob as stored by the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["finetune.aidaptiv.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["FineTuneJob"] = KIND
    metadata: ObjectMeta
    spec: FineTuneJobSpec = Field(default_factory=FineTuneJobSpec)
    status: FineTuneJobStatus | None = None


class InvalidFineTuneJob(ValueError):
    """A FineTuneJob the operator will not render; `problems` name each field and rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_finetunejob(obj: dict[str, Any]) -> FineTuneJob:
    """Validate a FineTuneJob dict; InvalidFineTuneJob says what is wrong, field by field."""
    try:
        return FineTuneJob.model_validate(obj)
    except ValidationError as error:
        raise InvalidFineTuneJob(describe_errors(error)) from None


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
