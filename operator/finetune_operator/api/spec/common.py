"""Types and CEL helpers shared by the spec's models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from finetune_operator.api.base import CEL_KEY, cel_literal

# Bounds on sizes keep CEL's cost estimate within the API server's budget and stop absurd input.
Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Path = Annotated[str, StringConstraints(max_length=4096)]
Text = Annotated[str, StringConstraints(max_length=16384)]
Script = Annotated[str, StringConstraints(max_length=262144)]
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=48, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Quantity = int | Annotated[str, StringConstraints(max_length=64)]  # maxLength: see crd.py
FreeForm = dict[str, Any]

SPECIFY_GPUS_PATTERN = r"^[0-9]+(,[0-9]+)*$"
CHART_TRAIN_DATA_PATH = "/config/train_data/QA_dataset_config.yaml"
CHART_TRAIN_DATA_CONFIG = """instruction-dataset:
  data_path: "HuggingFaceH4/instruction-dataset"
  strategy: "QA"
  system_prompt: "A chat between a curious user and an artificial intelligence assistant."
  user_prompt: "{question}"
  question_key: "prompt"
  answer_key: "completion"
  exp_type: train
  label_key: "completion"
"""


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {CEL_KEY: list(rules)}


def cel_optional(path: str, default: Any) -> str:
    """CEL for an optional field path with the model's default: `self.?a.?b.orValue(d)`."""
    return "self" + "".join(f".?{part}" for part in path.split(".")) + f".orValue({cel_literal(default)})"
