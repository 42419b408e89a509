"""The training data: structured datasets, and the raw trainDataConfig text of the chart."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import ApiModel, cel, cel_string
from finetune_operator.api.spec.common import Name, Path, Text, cel_rules
from finetune_operator.api.yaml_input import YamlInputError, load_all

# The trainer counts this word anywhere in its dataset config, comments and values included.
DATA_PATH = "data_path"


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

    model_config = ConfigDict(json_schema_extra=lambda schema: schema.update(cel_rules(_data_path_rule(schema))))

    @model_validator(mode="after")
    def _no_data_path_text(self) -> Self:
        if any(DATA_PATH in value for value in self.model_dump().values() if isinstance(value, str)):
            raise ValueError(msg.DATA_PATH_TEXT)
        return self

    def trainer_block(self) -> dict[str, Any]:
        """The dataset as the trainer reads it: {name: {data_path: …, …}}, unset keys left out."""
        settings = self.model_dump(exclude={"name"}, exclude_none=True)
        return {self.name: settings}


def _data_path_rule(schema: dict[str, Any]) -> dict[str, Any]:
    """CEL: no string field of a dataset contains data_path (derived from the fields, so none is forgotten)."""
    required = set(schema.get("required", []))
    checks = []
    for name, field in schema["properties"].items():
        types = {field.get("type")} | {option.get("type") for option in field.get("anyOf", [])}
        if "string" not in types or "enum" in field:
            continue
        contains = f"self.{name}.contains({cel_string(DATA_PATH)})"
        checks.append(f"!{contains}" if name in required else f"(!has(self.{name}) || !{contains})")
    return cel(" && ".join(checks), msg.DATA_PATH_TEXT)


# A dataset config is a few blocks of settings: far fewer values than a CLI file may hold.
MAX_TRAIN_DATA_NODES = 20_000


def parse_train_data_config(text: str) -> list[dict[str, Any]]:
    """Split raw trainDataConfig text into one {name: settings} mapping per dataset.

    Raises ValueError with a message for the user when the text is not what the trainer needs.
    The trainer wants each dataset in its own YAML document; text that puts several in one
    document is split rather than refused, since the intent is unambiguous.
    """
    try:
        documents = load_all(text, "trainDataConfig", max_nodes=MAX_TRAIN_DATA_NODES)
    except YamlInputError as error:
        raise ValueError(f"trainDataConfig is not valid YAML: {error}") from None
    datasets: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict) or not document:
            raise ValueError("trainDataConfig must map each dataset name to its settings (data_path, strategy, …)")
        for name, settings in document.items():
            datasets.append({str(name): _check_raw_dataset(str(name), settings)})
    if not datasets:
        raise ValueError("trainDataConfig holds no dataset")
    counts = Counter(next(iter(d)) for d in datasets)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"trainDataConfig names dataset {duplicates[0][:80]!r} twice")
    return datasets


def _check_raw_dataset(name: str, settings: Any) -> dict[str, Any]:
    where = f"trainDataConfig dataset {name[:80]!r}"
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be a mapping of settings such as data_path and strategy")
    if not settings.get("data_path"):
        raise ValueError(f"{where} has no data_path")
    strategy = settings.get("strategy")
    if strategy is not None and str(strategy).lower() not in msg.STRATEGIES:
        raise ValueError(f"{where}: {msg.STRATEGY}")
    prompt = settings.get("user_prompt")
    if prompt is not None and "{question}" not in str(prompt):
        raise ValueError(f"{where}: user_prompt must contain the placeholder {{question}}")
    exp_type = settings.get("exp_type")
    if exp_type is not None and exp_type not in msg.EXP_TYPES:
        raise ValueError(f"{where}: exp_type must be one of train, inference, eval")
    if DATA_PATH in name or any(DATA_PATH in text for text in _texts(settings, top=True)):
        raise ValueError(f"{where}: {msg.DATA_PATH_TEXT}")
    return settings


def _texts(value: Any, top: bool = False) -> list[str]:
    """Every string in a dataset's settings, keys included, but the data_path key the trainer counts."""
    found: list[str] = []
    stack: list[tuple[Any, bool]] = [(value, top)]
    while stack:
        item, at_top = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not (at_top and key == DATA_PATH):
                    found.append(str(key))
                stack.append((child, False))
        elif isinstance(item, list):
            stack.extend((child, False) for child in item)
    return found
