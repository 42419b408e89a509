"""The training data: structured datasets, and the raw trainDataConfig text of the chart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, field_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import ApiModel, cel, cel_string
from finetune_operator.api.spec.common import Name, Path, Text, cel_rules


class Dataset(ApiModel):
    """One dataset of the trainer's dataset config, the structured form of trainDataConfig."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")] = (
        Field(description="Name of the dataset (the key of its block in the dataset config).")
    )
    data_path: Path = Field(min_length=1, description="Hugging Face dataset name or a path in the container.")
    strategy: Annotated[str, StringConstraints(max_length=16)] = Field(
        "qa",
        description='How samples are built: qa, pretrain, rag or vqa, in any letter case. Defaults to "qa".',
        json_schema_extra=cel_rules(
            cel(f"self.lowerAscii() in [{', '.join(cel_string(s) for s in msg.STRATEGIES)}]", msg.STRATEGY)
        ),
    )
    system_prompt: Text | None = Field(None, description="System prompt put before every sample.")
    user_prompt: Text = Field(
        "{question}",
        description='Template of the user turn; must contain {question}. Defaults to "{question}".',
        json_schema_extra=cel_rules(cel(f"self.contains({cel_string('{question}')})", msg.USER_PROMPT)),
    )
    question_key: Name | None = Field(None, description="Column holding the question.")
    answer_key: Name | None = Field(None, description="Column holding the answer.")
    label_key: Name | None = Field(None, description="Column holding the label (usually the answer column).")
    rag_key: Name | None = Field(None, description="Column holding retrieved context (strategy rag).")
    image_key: Name | None = Field(None, description="Column holding the image (strategy vqa).")
    text: Name | None = Field(None, description="Column holding raw text (strategy pretrain).")
    exp_type: Literal[msg.EXP_TYPES] = Field(  # type: ignore[valid-type]
        "train", description='train, inference or eval. Defaults to "train".'
    )

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value.lower() not in msg.STRATEGIES:
            raise ValueError(msg.STRATEGY)
        return value

    @field_validator("user_prompt")
    @classmethod
    def _user_prompt(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError(msg.USER_PROMPT)
        return value

    def trainer_block(self) -> dict[str, Any]:
        """The dataset as the trainer reads it: {name: {data_path: …, …}}, unset keys left out."""
        settings = self.model_dump(exclude={"name"}, exclude_none=True)
        return {self.name: settings}


def parse_train_data_config(text: str) -> list[dict[str, Any]]:
    """Split raw trainDataConfig text into one {name: settings} mapping per dataset.

    Raises ValueError with a message for the user when the text is not what the trainer needs.
    The trainer wants each dataset in its own YAML document; text that puts several in one
    document is split rather than refused, since the intent is unambiguous.
    """
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise ValueError(f"trainDataConfig is not valid YAML: {_yaml_problem(error)}") from None
    datasets: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict) or not document:
            raise ValueError("trainDataConfig must map each dataset name to its settings (data_path, strategy, …)")
        for name, settings in document.items():
            datasets.append({str(name): _check_raw_dataset(str(name), settings)})
    if not datasets:
        raise ValueError("trainDataConfig holds no dataset")
    names = [next(iter(d)) for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"trainDataConfig names dataset {duplicates[0]!r} twice")
    return datasets


def _check_raw_dataset(name: str, settings: Any) -> dict[str, Any]:
    where = f"trainDataConfig dataset {name!r}"
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be a mapping of settings such as data_path and strategy")
    if not settings.get("data_path"):
        raise ValueError(f"{where} has no data_path")
    strategy = settings.get("strategy")
    if strategy is not None and str(strategy).lower() not in msg.STRATEGIES:
        raise ValueError(f"{where}: {msg.STRATEGY.replace('strategy', 'strategy', 1)}")
    prompt = settings.get("user_prompt")
    if prompt is not None and "{question}" not in str(prompt):
        raise ValueError(f"{where}: user_prompt must contain the placeholder {{question}}")
    exp_type = settings.get("exp_type")
    if exp_type is not None and exp_type not in msg.EXP_TYPES:
        raise ValueError(f"{where}: exp_type must be one of train, inference, eval")
    return settings


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)
