"""expConfig: the trainer's exp_config.yaml, key for key in camelCase."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import ApiModel, cel, cel_string
from finetune_operator.api.spec.common import NOT_BOOL, SPECIFY_GPUS_PATTERN, Name, cel_optional, cel_rules


class MultiNodeSettings(ApiModel):
    """Multi-node settings of the trainer's launcher (process_settings.multi_node_settings)."""

    enable: bool = Field(False, description="Enable multi-node training. Defaults to false.")
    master_addr: Annotated[str, StringConstraints(max_length=253)] = Field(
        "127.0.0.1", description='Address of the master node. Defaults to "127.0.0.1".'
    )


class ProcessSettings(ApiModel):
    """How many GPUs the trainer uses and how its processes meet (exp_config process_settings)."""

    num_gpus: Annotated[Literal[1, 2, 4, 8], NOT_BOOL] = Field(
        1, description="Number of GPUs to train on: 1, 2, 4 or 8. Defaults to 1."
    )
    specify_gpus: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None,
        description=(
            'GPU indices to use, a comma-separated list such as "0,1,2,3" with exactly numGpus '
            "entries; null lets the trainer choose. Defaults to null."
        ),
        json_schema_extra=cel_rules(cel(f"self.matches({cel_string(SPECIFY_GPUS_PATTERN)})", msg.SPECIFY_GPUS_FORMAT)),
    )
    master_port: int = Field(
        8299, ge=1, le=65535, description="Port of the distributed-training master. Defaults to 8299."
    )
    multi_node_settings: MultiNodeSettings = Field(
        default_factory=MultiNodeSettings, description="Multi-node settings."
    )

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.specifyGpus) || !self.specifyGpus.matches("
                + cel_string(SPECIFY_GPUS_PATTERN)
                + f") || self.specifyGpus.split(',').size() == {cel_optional('numGpus', 1)}",
                msg.SPECIFY_GPUS_COUNT,
                field_path=".specifyGpus",
            ),
            cel(
                "!has(self.specifyGpus) || self.specifyGpus.split(',').all(g, "
                "self.specifyGpus.split(',').filter(h, h == g).size() == 1)",
                msg.SPECIFY_GPUS_UNIQUE,
                field_path=".specifyGpus",
            ),
        )
    )

    @field_validator("specify_gpus")
    @classmethod
    def _specify_gpus_format(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if re.fullmatch(SPECIFY_GPUS_PATTERN, value) is None:
            raise ValueError(msg.SPECIFY_GPUS_FORMAT)
        gpus = value.split(",")
        if len(set(gpus)) != len(gpus):
            raise ValueError(msg.SPECIFY_GPUS_UNIQUE)
        return value

    @model_validator(mode="after")
    def _specify_gpus_count(self) -> Self:
        if self.specify_gpus is not None:
            listed = len(self.specify_gpus.split(","))
            if listed != self.num_gpus:
                raise ValueError(msg.specify_gpus_count(listed, self.num_gpus))
        return self


class ModelSaver(ApiModel):
    """When the trainer saves checkpoints (run_settings.model_saver)."""

    max_num_of_saved_model_on_epoch_end: int = Field(
        -1, ge=-1, description="How many end-of-epoch models to keep; -1 keeps all. Defaults to -1."
    )
    enable_save_model_on_iteration: bool = Field(
        False, description="Also save a model every numOfIterationToSaveModel iterations. Defaults to false."
    )
    max_num_of_saved_model_on_iteration: int = Field(
        2, ge=-1, description="How many iteration checkpoints to keep. Defaults to 2."
    )
    num_of_iteration_to_save_model: int = Field(
        2, ge=1, description="Save an iteration checkpoint every this many iterations. Defaults to 2."
    )


class LrScheduler(ApiModel):
    """Learning-rate schedule (run_settings.lr_scheduler)."""

    mode: int = Field(1, ge=-1, le=5, description="Learning-rate scheduler mode, -1 to 5. Defaults to 1.")
    learning_rate: float = Field(7e-6, gt=0, description="Peak learning rate. Defaults to 0.000007.")


class Optimizer(ApiModel):
    """AdamW settings (run_settings.optimizer)."""

    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1. Defaults to 0.9.")
    beta2: float = Field(0.95, ge=0, lt=1, description="Adam beta2. Defaults to 0.95.")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon. Defaults to 0.00000001.")
    weight_decay: float = Field(0.01, ge=0, description="Weight decay. Defaults to 0.01.")


class EarlyStop(ApiModel):
    """Early stopping (run_settings.early_stop)."""

    enable: bool = Field(False, description="Stop when the loss stops improving. Defaults to false.")
    min_delta: float = Field(0.01, ge=0, description="Smallest improvement that counts. Defaults to 0.01.")
    patience: int = Field(2, ge=0, description="Updates without improvement before stopping. Defaults to 2.")
    verbose: bool = Field(False, description="Log early-stopping decisions. Defaults to false.")


class Lora(ApiModel):
    """LoRA fine-tuning (run_settings.lora)."""

    enable_lora: bool = Field(False, description="Train LoRA adapters instead of all weights. Defaults to false.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank. Defaults to 8.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha. Defaults to 16.")
    lora_task_type: Annotated[str, StringConstraints(max_length=64)] = Field(
        "CAUSAL_LM", description='PEFT task type. Defaults to "CAUSAL_LM".'
    )
    lora_target_modules: Annotated[str, StringConstraints(max_length=1024)] | list[Name] | None = Field(
        None,
        description=(
            "Modules to adapt: a string (such as all-linear) or a list of module names "
            "(such as [q_proj, v_proj]); null lets the trainer choose. Defaults to null."
        ),
        # Untyped in the CRD (structural schemas have no string-or-list; CEL cannot type it either):
        # the model checks it, and the operator reports a bad value as Stalled/InvalidSpec.
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class RunSettings(ApiModel):
    """What and how the trainer trains (exp_config run_settings)."""

    task_type: Literal[msg.TASK_TYPES] = Field(  # type: ignore[valid-type]
        "text-generation",
        description=(
            "Task: text-generation, automatic-speech-recognition, fill-mask or image-text-to-text. "
            'Defaults to "text-generation".'
        ),
    )
    task_mode: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        "train", description='"train", or the path of a train.py inside the container. Defaults to "train".'
    )
    per_device_train_batch_size: int = Field(4, ge=1, description="Micro-batch size per GPU. Defaults to 4.")
    per_update_total_batch_size: int = Field(
        16,
        ge=1,
        description=(
            "Samples per optimizer update, a multiple of numGpus × perDeviceTrainBatchSize "
            "(the quotient is the gradient-accumulation steps). Defaults to 16."
        ),
    )
    num_train_epochs: int = Field(1, ge=1, description="Number of epochs. Defaults to 1.")
    max_iter: int = Field(
        12,
        description="Cap on training iterations; -1 means no cap. Defaults to 12.",
        json_schema_extra=cel_rules(cel("self == -1 || self > 0", msg.MAX_ITER)),
    )
    max_seq_len: int = Field(2048, ge=1, description="Maximum sequence length in tokens. Defaults to 2048.")
    triton: bool = Field(True, description="Use Triton kernels. Defaults to true.")
    weight_file_format: Literal[msg.WEIGHT_FILE_FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="Format of saved weights: bin, pt, safetensors, or null for the trainer's choice."
    )
    from_config: bool = Field(
        False, description="Build the model from its config instead of pretrained weights. Defaults to false."
    )
    precision_mode: Annotated[Literal[0, 1], NOT_BOOL] = Field(
        1, description="0 for FP32, 1 for mixed precision. Defaults to 1."
    )
    enable_save_optimizer_state: bool = Field(
        False, description="Save the optimizer state with checkpoints. Defaults to false."
    )
    model_saver: ModelSaver = Field(default_factory=ModelSaver, description="Checkpoint saving.")
    lr_scheduler: LrScheduler = Field(default_factory=LrScheduler, description="Learning-rate schedule.")
    optimizer: Optimizer = Field(default_factory=Optimizer, description="Optimizer settings.")
    early_stop: EarlyStop = Field(default_factory=EarlyStop, description="Early stopping.")
    lora: Lora = Field(default_factory=Lora, description="LoRA settings.")

    @field_validator("max_iter")
    @classmethod
    def _max_iter(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise ValueError(msg.MAX_ITER)
        return value


def _batch_rule() -> dict[str, Any]:
    total = cel_optional("runSettings.perUpdateTotalBatchSize", 16)
    gpus = cel_optional("processSettings.numGpus", 1)
    per_device = cel_optional("runSettings.perDeviceTrainBatchSize", 4)
    return cel(
        f"{gpus} * {per_device} <= 0 || {total} % ({gpus} * {per_device}) == 0",
        msg.BATCH_MULTIPLE,
        field_path=".runSettings.perUpdateTotalBatchSize",
    )


class ExpConfig(ApiModel):
    """The trainer's exp_config.yaml, key for key in camelCase."""

    process_settings: ProcessSettings = Field(default_factory=ProcessSettings, description="Process settings.")
    run_settings: RunSettings = Field(default_factory=RunSettings, description="Run settings.")

    model_config = ConfigDict(json_schema_extra=cel_rules(_batch_rule()))

    @model_validator(mode="after")
    def _batch_multiple(self) -> Self:
        gpus = self.process_settings.num_gpus
        per_device = self.run_settings.per_device_train_batch_size
        total = self.run_settings.per_update_total_batch_size
        if total % (gpus * per_device) != 0:
            raise ValueError(msg.batch_multiple(total, gpus, per_device))
        return self
