"""envConfig: the trainer's env_config.yaml, key for key in camelCase."""

from __future__ import annotations

import json
import re
from typing import Annotated, Self

from pydantic import Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import RANK_PLACEHOLDER, ApiModel, cel, cel_string
from finetune_operator.api.spec.common import CHART_TRAIN_DATA_PATH, Path, cel_rules

# The log's last segment must be a file name the operator can give a per-run suffix.
LOG_FILE_NAME = r"(^|/)[^/]*[^/.][^/]*$"


class LoraPaths(ApiModel):
    """Where LoRA weights come from and go (path_settings.lora)."""

    lora_weight: Path = Field("", description='LoRA weights to start from; empty trains new ones. Defaults to "".')
    lora_optimizer: Path = Field("", description='LoRA optimizer state to resume from. Defaults to "".')
    lora_output_dir: Path = Field("", description='Where LoRA weights are written. Defaults to "".')


class PathSettings(ApiModel):
    """Paths the trainer reads and writes, inside the container (env_config path_settings)."""

    lora: LoraPaths = Field(default_factory=LoraPaths, description="LoRA paths.")
    model_name_or_path: Path = Field(
        "/mnt/data/models/TinyLlama-1.1B-Chat-v1.0",
        description='Pre-trained model to fine-tune. Defaults to "/mnt/data/models/TinyLlama-1.1B-Chat-v1.0".',
    )
    multi_node_env_path: Path | None = Field(None, description="Multi-node environment file. Defaults to null.")
    optimizer_path: Path = Field("", description='Optimizer state to resume from. Defaults to "".')
    train_data_path: Annotated[list[Path], Field(min_length=1, max_length=16)] = Field(
        default_factory=lambda: [CHART_TRAIN_DATA_PATH],
        description=(
            "Dataset config files. Defaults to the one the operator renders from trainData or "
            f"trainDataConfig: [{CHART_TRAIN_DATA_PATH}]."
        ),
    )
    val_data_path: Path | None = Field(None, description="Validation dataset config. Defaults to null.")
    nvme_path: Path = Field("/mnt/nvme0", description='aiDAPTIVCache NVMe swap directory. Defaults to "/mnt/nvme0".')
    output_dir: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        "/mnt/data/output",
        description=(
            "Where the fine-tuned model is written, an absolute path; created if missing. With "
            "spec.output.image, the trainer writes to <outputDir>/<name>-<first 8 characters of the uid> "
            '(the directory pushed). Defaults to "/mnt/data/output".'
        ),
        json_schema_extra=cel_rules(cel("self.startsWith('/')", msg.OUTPUT_DIR_ABSOLUTE)),
    )
    log_name: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        "output.log",
        description=(
            "The trainer's log file; a relative name is under outputDir. Each run writes its own file: the "
            "FineTuneJob's name and uid go before the extension (output.log becomes "
            "output.<name>-<uid>.log), so runs sharing an outputDir never mix their logs. The operator "
            'streams it to the pod\'s stdout and reads progress from it. Defaults to "output.log".'
        ),
        json_schema_extra=cel_rules(cel(f"self.matches({cel_string(LOG_FILE_NAME)})", msg.LOG_NAME)),
    )

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(msg.OUTPUT_DIR_ABSOLUTE)
        return value

    @field_validator("log_name")
    @classmethod
    def _log_name(cls, value: str) -> str:
        if re.search(LOG_FILE_NAME, value) is None:
            raise ValueError(msg.LOG_NAME)
        return value


class EnvConfig(ApiModel):
    """The trainer's env_config.yaml, key for key in camelCase."""

    @model_validator(mode="after")
    def _no_rank_placeholder(self) -> Self:
        if RANK_PLACEHOLDER in json.dumps(self.model_dump(mode="json")):
            raise ValueError(msg.rank_placeholder(RANK_PLACEHOLDER))
        return self

    path_settings: PathSettings = Field(default_factory=PathSettings, description="Path settings.")
