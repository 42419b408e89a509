"""spec.output.image: the fine-tuned output pushed to a registry as an OCI artifact."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from docker_image.regexp import ANCHORED_NAME_PAT, ImageRegexps
from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, ApiModel, cel, cel_string
from finetune_operator.api.spec.common import DNS_SUBDOMAIN_PATTERN, Name, cel_rules
from finetune_operator.api.spec.oci import (
    ANCHORED_TAG,
    MAX_REPOSITORY,
    REGISTRY_HOST_RULE,
    AbsolutePath,
    ImageReference,
    QuantityText,
    parse_repository,
    pattern_rule,
    quantity_of,
)


class OutputTool(ApiModel):
    """An image holding a push tool, and where its binary is; an init container copies it out with cp."""

    image: ImageReference = Field(description="The tool's image (it needs cp on its PATH).")
    path: AbsolutePath = Field(description="The tool's binary inside the image.")


# The chart's defaults (0.3.x); the binaries' paths are those of the images' own builds (ko for crane).
CRANE_IMAGE = "gcr.io/go-containerregistry/crane:debug"
CRANE_PATH = "/ko-app/crane"
KIT_IMAGE = "ghcr.io/kitops-ml/kitops:v1.11.0"
KIT_PATH = "/usr/local/bin/kit"


class OutputTools(ApiModel):
    """Where the push tools come from."""

    crane: OutputTool = Field(
        default_factory=lambda: OutputTool(image=CRANE_IMAGE, path=CRANE_PATH),
        description=f'crane (format Image, and the digest of every push). Defaults to "{CRANE_IMAGE}" at {CRANE_PATH}.',
    )
    kit: OutputTool = Field(
        default_factory=lambda: OutputTool(image=KIT_IMAGE, path=KIT_PATH),
        description=f'kit of KitOps (formats ModelKit and ModelPack). Defaults to "{KIT_IMAGE}" at {KIT_PATH}.',
    )


OutputFormat = Literal["ModelKit", "ModelPack", "Image"]
# The push's scratch copy is on the node's disk: bounded by default, as /dev/shm is. 200Gi holds a
# 70B-parameter model in 16-bit weights (140 GB) with its tokenizer and configs.
DEFAULT_WORK_SIZE_LIMIT = "200Gi"


class OutputImage(ApiModel):
    """Push the fine-tuned output directory to a registry after the training succeeded."""

    repository: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REPOSITORY)] = Field(
        description="Repository to push to, without tag or digest, such as registry.example.com/team/llama-ft.",
        json_schema_extra=cel_rules(
            pattern_rule(ANCHORED_NAME_PAT, msg.OUTPUT_REPOSITORY), cel(REGISTRY_HOST_RULE, msg.OUTPUT_REGISTRY_HOST)
        ),
    )
    tag: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None,
        description=(
            "Tag of the pushed artifact (not latest: a pushed training is never overwritten by the next). "
            "Defaults to <name>-<first 8 characters of the uid>."
        ),
        json_schema_extra={
            CEL_KEY: [
                cel(f"self.matches({cel_string(ANCHORED_TAG)})", msg.OUTPUT_TAG),
                cel("self != 'latest'", msg.OUTPUT_TAG_LATEST),
            ]
        },
    )
    format: OutputFormat = Field(
        "ModelKit",
        description=(
            "ModelKit (KitOps: kit pack and kit push), ModelPack (the CNCF ModelPack format, kit pack "
            "--use-model-pack) or Image (a one-layer OCI image of the output directory, crane append). "
            'Defaults to "ModelKit".'
        ),
    )
    base_image: ImageReference | None = Field(
        None, description="format Image only: the image the output layer goes on. Defaults to none (scratch)."
    )
    push_secret_name: Name | None = Field(
        None,
        description=(
            "A kubernetes.io/dockerconfigjson Secret with the registry's credentials, mounted read-only for the "
            "push alone and never logged. Defaults to none (anonymous push)."
        ),
        json_schema_extra=cel_rules(pattern_rule(DNS_SUBDOMAIN_PATTERN, msg.SECRET_NAME)),
    )
    work_size_limit: Annotated[QuantityText, quantity_of("workSizeLimit")] | None = Field(
        DEFAULT_WORK_SIZE_LIMIT,
        description=(
            "sizeLimit of the emptyDir the push packs the output in (it holds one copy of the run's output "
            "directory), such as 500Gi. An output larger than it is not copied: the push fails with "
            "OutputPushFailed saying so, and the trained files stay. null removes the bound (the node's disk "
            f'is the limit). Defaults to "{DEFAULT_WORK_SIZE_LIMIT}".'
        ),
    )
    insecure: bool = Field(False, description="Push over plain HTTP (a registry without TLS). Defaults to false.")
    tools: OutputTools = Field(default_factory=OutputTools, description="Images of the push tools.")

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.baseImage) || self.?format.orValue('ModelKit') == 'Image'",
                msg.OUTPUT_BASE_IMAGE,
                field_path=".baseImage",
            )
        )
    )

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        return parse_repository(value)

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if ImageRegexps.ANCHORED_TAG_REGEXP.fullmatch(value) is None:
            raise ValueError(f"{msg.OUTPUT_TAG} (got {value[:130]!r})")
        if value == "latest":
            raise ValueError(msg.OUTPUT_TAG_LATEST)
        return value

    @field_validator("push_secret_name")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(DNS_SUBDOMAIN_PATTERN[1:-1], value) is None:
            raise ValueError(f"{msg.SECRET_NAME} (got {value[:80]!r})")
        return value

    @model_validator(mode="after")
    def _base_image_for_images(self) -> Self:
        if self.base_image is not None and self.format != "Image":
            raise ValueError(msg.OUTPUT_BASE_IMAGE)
        return self


class Output(ApiModel):
    """Where the fine-tuned model goes besides envConfig.pathSettings.outputDir."""

    image: OutputImage | None = Field(
        None,
        description=(
            "Push the run's output as an OCI artifact after the training succeeded (rank 0 pushes); the pushed "
            "reference and digest go to status.output. With it the trainer writes to the run's own directory, "
            "<outputDir>/<name>-<first 8 characters of the uid> (its env_config output_dir), and only that "
            "directory is pushed: outputDir may be shared with other FineTuneJobs. A failed push fails the "
            "FineTuneJob with reason OutputPushFailed while the trained files stay."
        ),
    )
