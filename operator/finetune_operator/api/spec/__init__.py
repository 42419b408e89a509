"""The FineTuneJob spec: the aiDAPTIVCache chart's values tree, typed, with what the chart lacked.

Field names on the wire are the chart's camelCase keys; Python attribute names are the trainer's
snake_case config keys, so `expConfig` and `envConfig` dump straight into the trainer's files.
Defaults equal those of the chart's values.yaml (0.1.4) except `securityContext`, which is empty
instead of privileged. Every rule lives twice: as a model validator (the operator never renders a
bad object) and as a CEL rule in the CRD (`kubectl apply` refuses it); messages.py holds the words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_snake

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, ApiModel, cel, cel_string
from finetune_operator.api.spec.common import (
    CHART_TRAIN_DATA_CONFIG,
    CHART_TRAIN_DATA_PATH,
    LABEL_VALUE_PATTERN,
    NOT_BOOL,
    FreeForm,
    LabelValue,
    QualifiedName,
    Script,
    cel_optional,
    cel_rules,
    qualified_names_rule,
)
from finetune_operator.api.spec.datasets import Dataset, parse_train_data_config
from finetune_operator.api.spec.env_config import EnvConfig, LoraPaths, PathSettings
from finetune_operator.api.spec.exp_config import ExpConfig, ProcessSettings, RunSettings
from finetune_operator.api.spec.model import (
    Model,
    ModelImage,
    ModelLoader,
    check_model_volumes,
    model_path_note,
    model_volume_rules,
)
from finetune_operator.api.spec.output import Output, OutputImage
from finetune_operator.api.spec.pod import (
    Image,
    LocalObjectReference,
    NfsSource,
    PvcSource,
    Resources,
    SharedMemory,
    Volume,
    _default_resources,
)

__all__ = [
    "CHART_TRAIN_DATA_CONFIG",
    "CHART_TRAIN_DATA_PATH",
    "MUTABLE_FIELDS",
    "Dataset",
    "EnvConfig",
    "ExpConfig",
    "FineTuneJobSpec",
    "Image",
    "LocalObjectReference",
    "LoraPaths",
    "Model",
    "ModelImage",
    "ModelLoader",
    "NfsSource",
    "Output",
    "OutputImage",
    "PathSettings",
    "ProcessSettings",
    "PvcSource",
    "Resources",
    "RunSettings",
    "SharedMemory",
    "Volume",
    "immutability_rules",
    "model_path_note",
    "parse_train_data_config",
]

# Fields the operator keeps following after creation; everything else shapes the pod and is frozen.
MUTABLE_FIELDS = ("suspend", "ttlSecondsAfterFinished", "ttlSecondsAfterFailure", "ttlPolicy")
# Mutable only while the FineTuneJob is suspended: the Job is made anew, with the new count, on resume.
SUSPENDED_MUTABLE_FIELDS = ("numNodes",)
MAX_NODES = 64
# The user's texts that go into the ConfigMap whole (its other files are bounded by their fields' lengths).
CONFIG_TEXTS = ("prescript", "postscript", "trainDataConfig")
# A failed run's pod, logs and ConfigMap stay long enough to debug after a weekend; its Failed
# condition keeps the log's last lines after that.
FAILED_RETENTION_SECONDS = 7 * 24 * 3600
# The TTLs' bound: that of the Job's ttlSecondsAfterFinished (int32), where the chart's value went, so every
# value the chart took is still taken. 68 years is longer than any retention, and a completion time plus
# it stays far inside what a timestamp can hold (the API accepted 10^12 seconds, which overflowed it).
MAX_TTL_SECONDS = 2**31 - 1


class FineTuneJobSpec(ApiModel):
    """What to fine-tune and how: the aidaptivcache-finetune chart's values, plus native storage."""

    image: Image = Field(default_factory=Image, description="The trainer image.")
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(max_length=16)] = Field(
        default_factory=list, description="Secrets for pulling the image."
    )
    scheduler_name: Annotated[str, StringConstraints(max_length=253)] = Field(
        "hami-scheduler",
        description='Scheduler of the training pod; empty means the default scheduler. Defaults to "hami-scheduler".',
    )
    security_context: FreeForm = Field(
        default_factory=dict,
        description=(
            "Security context of the training container. Defaults to empty: unlike the chart, not "
            "privileged, because NFS is mounted by volumes. Set privileged: true only if a script needs it."
        ),
    )
    prescript: Script = Field("", description='Shell run before the trainer, in the same shell. Defaults to "".')
    postscript: Script = Field("", description='Shell run after the trainer, whatever its outcome. Defaults to "".')
    exp_config: ExpConfig = Field(default_factory=ExpConfig, description="The trainer's exp_config.yaml.")
    env_config: EnvConfig = Field(default_factory=EnvConfig, description="The trainer's env_config.yaml.")
    train_data_config: Script | None = Field(
        None,
        description=(
            "The dataset config as raw YAML text, as in the chart. Mutually exclusive with trainData. "
            "When neither is set, the chart's default (HuggingFaceH4/instruction-dataset) is used."
        ),
    )
    train_data: Annotated[list[Dataset], Field(min_length=1, max_length=32)] | None = Field(
        None,
        description="The dataset config as a list of datasets. Mutually exclusive with trainDataConfig.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    resources: Resources = Field(
        default_factory=_default_resources,
        description=(
            "Resources of the training container, passed as given. Defaults to the chart's: "
            "otterscale.com/vgpu 1, otterscale.com/vgpumem-percentage 60, phison.com/ai100 1 "
            "(requests and limits)."
        ),
    )
    node_selector: Annotated[dict[QualifiedName, LabelValue], Field(max_length=32)] = Field(
        default_factory=dict,
        description="Node labels the training pod requires.",
        json_schema_extra=cel_rules(
            cel(qualified_names_rule(), msg.QUALIFIED_NAME),
            cel(f"self.all(k, self[k].matches({cel_string(LABEL_VALUE_PATTERN)}))", msg.LABEL_VALUE),
        ),
    )
    tolerations: Annotated[list[FreeForm], Field(max_length=32)] = Field(
        default_factory=list, description="Tolerations of the training pod."
    )
    affinity: FreeForm = Field(default_factory=dict, description="Affinity of the training pod.")
    volumes: Annotated[list[Volume], Field(max_length=16)] = Field(
        default_factory=list,
        description="NFS exports and PersistentVolumeClaims mounted into the training container.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            CEL_KEY: [
                cel("self.all(v, self.filter(w, w.mountPath == v.mountPath).size() == 1)", msg.MOUNT_PATHS_UNIQUE)
            ],
        },
    )
    model: Model | None = Field(
        None,
        description=(
            "The base model: an OCI image mounted read-only, or a path in one of volumes; optionally copied to "
            "local disk first. envConfig.pathSettings.modelNameOrPath defaults to where the trainer finds it."
        ),
    )
    output: Output | None = Field(None, description="Where the fine-tuned model goes besides outputDir.")
    shared_memory: SharedMemory = Field(default_factory=SharedMemory, description="The /dev/shm mount.")
    num_nodes: Annotated[int, NOT_BOOL] = Field(
        1,
        ge=1,
        le=MAX_NODES,
        description=(
            "Nodes to train on, 1 to 64: one pod each, with numGpus GPUs and these resources each. More than one: "
            "the operator runs an Indexed Job with a headless Service and wires the ranks (MASTER_ADDR, "
            "NODE_RANK, WORLD_SIZE, and multi_node_settings in exp_config.yaml); backoffLimit then counts "
            "attempts of the whole group. Can be changed only while suspended, in a change that keeps it suspended "
            "(resume in a change of its own). Defaults to 1."
        ),
    )
    backoff_limit: int = Field(
        1,
        ge=0,
        le=100,
        description=(
            "Retries of the training pod; with numNodes > 1, retries of the whole group of ranks "
            "(a new attempt of all of them). Defaults to 1."
        ),
    )
    restart_policy: Literal["Never", "OnFailure"] = Field(
        "Never", description='Never or OnFailure. Defaults to "Never".'
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the training after this many seconds of running. Defaults to none."
    )
    suspend: bool = Field(
        False, description="Hold the training (no pod runs) while true; it can be changed at any time."
    )
    ttl_seconds_after_finished: int | None = Field(
        60,
        ge=0,
        le=MAX_TTL_SECONDS,
        description=(
            "Seconds after the training succeeded when the operator deletes its Job, pods and ConfigMap; "
            "the FineTuneJob and its status stay (see ttlPolicy). null keeps them. Failures have their own "
            f"retention, ttlSecondsAfterFailure. At most {MAX_TTL_SECONDS} (68 years, as a Job's TTL). "
            "Defaults to 60."
        ),
    )
    ttl_seconds_after_failure: int | None = Field(
        FAILED_RETENTION_SECONDS,
        ge=0,
        le=MAX_TTL_SECONDS,
        description=(
            "Seconds after a training failed when the operator deletes its Job, pods and ConfigMap, so that "
            "`kubectl logs` and the pod stay for debugging meanwhile; the Failed condition keeps the log's "
            "last lines after the cleanup. null keeps them until the FineTuneJob is deleted. "
            f"At most {MAX_TTL_SECONDS} (68 years). Defaults to {FAILED_RETENTION_SECONDS} (7 days)."
        ),
    )
    ttl_policy: Literal["DeleteChildren", "DeleteFineTuneJob"] = Field(
        "DeleteChildren",
        description=(
            "What the TTL deletes: DeleteChildren keeps the FineTuneJob (GitOps tools see no drift and do "
            "not re-run it); DeleteFineTuneJob deletes it too. Defaults to DeleteChildren."
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!(has(self.trainData) && has(self.trainDataConfig))", msg.TRAIN_DATA_EXCLUSIVE),
            cel(
                # has() ? : rather than ?.orValue(): an optional loses the field's maxLength in cost estimation.
                " + ".join(f"(has(self.{name}) ? size(bytes(self.{name})) : 0)" for name in CONFIG_TEXTS)
                + f" <= {msg.CONFIG_TEXT_BYTES}",
                msg.CONFIG_TEXT_TOO_LARGE,
            ),
            cel(
                "self.?numNodes.orValue(1) <= 1 || self.?restartPolicy.orValue('Never') == 'Never'",
                msg.MULTI_NODE_RESTART_POLICY,
                field_path=".restartPolicy",
            ),
            cel(
                "!has(self.output) || !has(self.output.image) || self.?restartPolicy.orValue('Never') == 'Never'",
                msg.OUTPUT_RESTART_POLICY,
                field_path=".restartPolicy",
            ),
            *model_volume_rules(),
        )
    )

    @field_validator("volumes")
    @classmethod
    def _volumes_unique(cls, volumes: list[Volume]) -> list[Volume]:
        names = [v.name for v in volumes]
        paths = [v.mount_path for v in volumes]
        if len(set(names)) != len(names):
            raise ValueError("two volumes cannot share one name")
        if len(set(paths)) != len(paths):
            raise ValueError(msg.MOUNT_PATHS_UNIQUE)
        return volumes

    @field_validator("train_data")
    @classmethod
    def _datasets_unique(cls, datasets: list[Dataset] | None) -> list[Dataset] | None:
        names = [d.name for d in datasets or []]
        if len(set(names)) != len(names):
            raise ValueError("two datasets in trainData cannot share one name")
        return datasets

    @field_validator("train_data_config")
    @classmethod
    def _train_data_config(cls, text: str | None) -> str | None:
        # Here, not in a model validator, so that a problem is located at spec.trainDataConfig.
        if text is not None:
            parse_train_data_config(text)
        return text

    @model_validator(mode="after")
    def _multi_node(self) -> Self:
        if self.num_nodes > 1 and self.restart_policy != "Never":
            raise ValueError(msg.MULTI_NODE_RESTART_POLICY)
        return self

    @model_validator(mode="after")
    def _output_restart_policy(self) -> Self:
        if self.output is not None and self.output.image is not None and self.restart_policy != "Never":
            raise ValueError(msg.OUTPUT_RESTART_POLICY)
        return self

    @model_validator(mode="after")
    def _model_volumes(self) -> Self:
        if self.model is not None:
            check_model_volumes(self.model, self.volumes)
        return self

    @model_validator(mode="after")
    def _config_texts_fit(self) -> Self:
        texts = (self.prescript, self.postscript, self.train_data_config or "")
        if sum(len(text.encode()) for text in texts) > msg.CONFIG_TEXT_BYTES:
            raise ValueError(msg.CONFIG_TEXT_TOO_LARGE)
        return self

    @model_validator(mode="after")
    def _one_train_data_form(self) -> Self:
        if self.train_data is not None and self.train_data_config is not None:
            raise ValueError(msg.TRAIN_DATA_EXCLUSIVE)
        return self

    def datasets(self) -> list[dict[str, Any]]:
        """The datasets as the trainer reads them, one {name: settings} mapping each."""
        if self.train_data is not None:
            return [dataset.trainer_block() for dataset in self.train_data]
        return parse_train_data_config(self.train_data_config or CHART_TRAIN_DATA_CONFIG)


def immutability_rules() -> list[dict[str, Any]]:
    """`self == oldSelf` rules for every spec field except those the operator follows live."""
    rules = []
    for field in FineTuneJobSpec.model_fields.values():
        alias = field.alias
        assert alias is not None
        if alias in MUTABLE_FIELDS or alias in SUSPENDED_MUTABLE_FIELDS:
            continue
        rules.append(
            cel(
                f"has(self.{alias}) == has(oldSelf.{alias}) && (!has(self.{alias}) || self.{alias} == oldSelf.{alias})",
                msg.immutable(alias),
                field_path=f".{alias}",
            )
        )
    for alias in SUSPENDED_MUTABLE_FIELDS:
        default = FineTuneJobSpec.model_fields[to_snake(alias)].default
        # Suspended before and after: a resize and a resume in one change would resume the held Job, made
        # for the old value, before the operator could make it anew.
        rules.append(
            cel(
                f"{cel_optional(alias, default, 'self')} == {cel_optional(alias, default, 'oldSelf')} "
                f"|| ({cel_optional('suspend', False, 'oldSelf')} && {cel_optional('suspend', False, 'self')})",
                msg.changed_only_while_suspended(alias),
                field_path=f".{alias}",
            )
        )
    return rules
