"""Types and CEL helpers shared by the spec's models."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, cel_literal, cel_string

# Bounds on sizes keep CEL's cost estimate within the API server's budget and stop absurd input.
Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Path = Annotated[str, StringConstraints(max_length=4096)]
Text = Annotated[str, StringConstraints(max_length=16384)]
Script = Annotated[str, StringConstraints(max_length=262144)]
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=48, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Quantity = int | Annotated[str, StringConstraints(max_length=64)]  # maxLength: see crd.py
FreeForm = dict[str, Any]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer, not true or false")
    return value


# Literal[1, 2] accepts True (True == 1 in Python); the CRD's integer type does not.
NOT_BOOL = BeforeValidator(_not_bool)

# k8s.io/apimachinery's IsQualifiedName (label keys, resource names) and IsValidLabelValue.
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS_SUBDOMAIN_PATTERN = rf"^{_DNS_SUBDOMAIN}$"
QUALIFIED_NAME_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?([A-Za-z0-9][-A-Za-z0-9_.]{{0,61}})?[A-Za-z0-9]$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
MAX_QUALIFIED_NAME = 253 + 1 + 63


def is_qualified_name(text: str) -> bool:
    prefix, _, _ = text.rpartition("/")
    if len(text) > MAX_QUALIFIED_NAME or len(prefix) > 253:
        return False
    return re.fullmatch(QUALIFIED_NAME_PATTERN[1:-1], text) is not None


def _qualified_name(text: str) -> str:
    if not is_qualified_name(text):
        raise ValueError(f"{msg.QUALIFIED_NAME} (got {text[:80]!r})")
    return text


def _label_value(text: str) -> str:
    if re.fullmatch(LABEL_VALUE_PATTERN[1:-1], text) is None:
        raise ValueError(f"{msg.LABEL_VALUE} (got {text[:80]!r})")
    return text


# The validators check lengths too, so that every bad key gets the one message that explains it.
QualifiedName = Annotated[str, AfterValidator(_qualified_name)]
LabelValue = Annotated[str, StringConstraints(max_length=63), AfterValidator(_label_value)]


def qualified_names_rule() -> str:
    """CEL over a map's keys: structural schemas have no propertyNames, so a rule says it."""
    prefix = "(k.lastIndexOf('/') < 0 || k.lastIndexOf('/') <= 253)"
    return (
        f"self.all(k, k.size() <= {MAX_QUALIFIED_NAME} && {prefix} && k.matches({cel_string(QUALIFIED_NAME_PATTERN)}))"
    )


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


def cel_optional(path: str, default: Any, root: str = "self") -> str:
    """CEL for an optional field path with the model's default: `self.?a.?b.orValue(d)`."""
    return root + "".join(f".?{part}" for part in path.split(".")) + f".orValue({cel_literal(default)})"
