"""The FineTuneJob spec: the aiDAPTIVCache chart's values tree, typed, with what the chart lacked.

Field names on the wire are the chart's camelCase keys; Python attribute names are the trainer's
snake_case config keys, so `expConfig` and `envConfig` dump straight into the trainer's files.
Defaults equal those of the chart's values.yaml (0.1.4) except `securityContext`, which is empty
instead of privileged. Every rule lives twice: as a model validator (the operator never renders a
bad object) and as a CEL rule in the CRD (`kubectl apply` refuses it); messages.py holds the words.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, ApiModel, cel, cel_literal, cel_string
from finetune_operator.api.quantity import is_extended_resource, is_quantity, parse_quantity

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


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {CEL_KEY: list(rules)}


def _opt(path: str, default: Any) -> str:
    """CEL for an optional field path with the model's default: `self.?a.?b.orValue(d)`."""
    return "self" + "".join(f".?{part}" for part in path.split(".")) + f".orValue({cel_literal(default)})"


# ---------------------------------------------------------------------------------------------
# expConfig


class MultiNodeSettings(ApiModel):
    """Multi-node settings of the trainer's launcher (process_settings.multi_node_settings)."""

    enable: bool = Field(False, description="Enable multi-node training. Defaults to false.")
    master_addr: Annotated[str, StringConstraints(max_length=253)] = Field(
        "127.0.0.1", description='Address of the master node. Defaults to "127.0.0.1".'
    )


class ProcessSettings(ApiModel):
    """How many GPUs the trainer uses and how its processes meet (exp_config process_settings)."""

    num_gpus: Literal[1, 2, 4, 8] = Field(1, description="Number of GPUs to train on: 1, 2, 4 or 8. Defaults to 1.")
    specify_gpus: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None,
        description=(
            'GPU indices to use, a comma-separated list such as "0,1,2,3" with exactly numGpus '
            "entries; null lets the trainer choose. Defaults to null."
        ),
        json_schema_extra=_rules(cel(f"self.matches({cel_string(SPECIFY_GPUS_PATTERN)})", msg.SPECIFY_GPUS_FORMAT)),
    )
    master_port: int = Field(
        8299, ge=1, le=65535, description="Port of the distributed-training master. Defaults to 8299."
    )
    multi_node_settings: MultiNodeSettings = Field(
        default_factory=MultiNodeSettings, description="Multi-node settings."
    )

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "!has(self.specifyGpus) || !self.specifyGpus.matches("
                + cel_string(SPECIFY_GPUS_PATTERN)
                + f") || self.specifyGpus.split(',').size() == {_opt('numGpus', 1)}",
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
        json_schema_extra=_rules(cel("self == -1 || self > 0", msg.MAX_ITER)),
    )
    max_seq_len: int = Field(2048, ge=1, description="Maximum sequence length in tokens. Defaults to 2048.")
    triton: bool = Field(True, description="Use Triton kernels. Defaults to true.")
    weight_file_format: Literal[msg.WEIGHT_FILE_FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="Format of saved weights: bin, pt, safetensors, or null for the trainer's choice."
    )
    from_config: bool = Field(
        False, description="Build the model from its config instead of pretrained weights. Defaults to false."
    )
    precision_mode: Literal[0, 1] = Field(1, description="0 for FP32, 1 for mixed precision. Defaults to 1.")
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
    total = _opt("runSettings.perUpdateTotalBatchSize", 16)
    gpus = _opt("processSettings.numGpus", 1)
    per_device = _opt("runSettings.perDeviceTrainBatchSize", 4)
    return cel(
        f"{gpus} * {per_device} <= 0 || {total} % ({gpus} * {per_device}) == 0",
        msg.BATCH_MULTIPLE,
        field_path=".runSettings.perUpdateTotalBatchSize",
    )


class ExpConfig(ApiModel):
    """The trainer's exp_config.yaml, key for key in camelCase."""

    process_settings: ProcessSettings = Field(default_factory=ProcessSettings, description="Process settings.")
    run_settings: RunSettings = Field(default_factory=RunSettings, description="Run settings.")

    model_config = ConfigDict(json_schema_extra=_rules(_batch_rule()))

    @model_validator(mode="after")
    def _batch_multiple(self) -> Self:
        gpus = self.process_settings.num_gpus
        per_device = self.run_settings.per_device_train_batch_size
        total = self.run_settings.per_update_total_batch_size
        if total % (gpus * per_device) != 0:
            raise ValueError(msg.batch_multiple(total, gpus, per_device))
        return self


# ---------------------------------------------------------------------------------------------
# envConfig


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
        description='Where the fine-tuned model is written; created if missing. Defaults to "/mnt/data/output".',
    )
    log_name: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        "output.log",
        description=(
            "The trainer's log file; a relative name is under outputDir. The operator streams it to "
            'the pod\'s stdout and reads progress from it. Defaults to "output.log".'
        ),
    )


class EnvConfig(ApiModel):
    """The trainer's env_config.yaml, key for key in camelCase."""

    path_settings: PathSettings = Field(default_factory=PathSettings, description="Path settings.")


# ---------------------------------------------------------------------------------------------
# Training data


class Dataset(ApiModel):
    """One dataset of the trainer's dataset config, the structured form of trainDataConfig."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")] = (
        Field(description="Name of the dataset (the key of its block in the dataset config).")
    )
    data_path: Path = Field(min_length=1, description="Hugging Face dataset name or a path in the container.")
    strategy: Annotated[str, StringConstraints(max_length=16)] = Field(
        "qa",
        description='How samples are built: qa, pretrain, rag or vqa, in any letter case. Defaults to "qa".',
        json_schema_extra=_rules(
            cel(f"self.lowerAscii() in [{', '.join(cel_string(s) for s in msg.STRATEGIES)}]", msg.STRATEGY)
        ),
    )
    system_prompt: Text | None = Field(None, description="System prompt put before every sample.")
    user_prompt: Text = Field(
        "{question}",
        description='Template of the user turn; must contain {question}. Defaults to "{question}".',
        json_schema_extra=_rules(cel(f"self.contains({cel_string('{question}')})", msg.USER_PROMPT)),
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


# ---------------------------------------------------------------------------------------------
# Pod-level settings


class Image(ApiModel):
    """The trainer image."""

    repository: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        "docker.io/library/aidaptiv", description='Image repository. Defaults to "docker.io/library/aidaptiv".'
    )
    tag: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        "vNXUN_2_05BA0", description='Image tag. Defaults to "vNXUN_2_05BA0".'
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description='Always, IfNotPresent or Never. Defaults to "IfNotPresent".'
    )

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class LocalObjectReference(ApiModel):
    """A Secret in the FineTuneJob's namespace."""

    name: Name = Field(description="Name of the Secret.")


def _quantity_of(key: str) -> str:
    return f"quantity(string(self[{cel_string(key)}]))"


def _resource_list_rules() -> dict[str, Any]:
    pct = cel_string(msg.VGPUMEM_PERCENTAGE)
    whole = " && ".join(
        f"(!({cel_string(key)} in self) || !isQuantity(string(self[{cel_string(key)}])) "
        f"|| {_quantity_of(key)}.isInteger())"
        for key in msg.GPU_RESOURCES
    )
    return {
        "maxProperties": 32,
        CEL_KEY: [
            cel("self.all(k, isQuantity(string(self[k])))", msg.QUANTITY),
            cel(whole, msg.EXTENDED_WHOLE),
            cel(
                f"!({pct} in self) || (isQuantity(string(self[{pct}])) && {_quantity_of(msg.VGPUMEM_PERCENTAGE)}"
                f".isInteger() && {_quantity_of(msg.VGPUMEM_PERCENTAGE)}.asInteger() >= 0 "
                f"&& {_quantity_of(msg.VGPUMEM_PERCENTAGE)}.asInteger() <= 100)",
                msg.VGPUMEM_PERCENTAGE_RANGE,
            ),
            cel(f"!({pct} in self && {cel_string(msg.VGPUMEM)} in self)", msg.VGPUMEM_EXCLUSIVE),
        ],
    }


def _not_overcommitted_rule() -> dict[str, Any]:
    def same(key: str) -> str:
        k = cel_string(key)
        return (
            f"(!(has(self.requests) && {k} in self.requests) || (has(self.limits) && {k} in self.limits "
            f"&& isQuantity(string(self.requests[{k}])) && isQuantity(string(self.limits[{k}])) "
            f"&& quantity(string(self.requests[{k}])).compareTo(quantity(string(self.limits[{k}]))) == 0))"
        )

    return cel(" && ".join(same(key) for key in msg.GPU_RESOURCES), msg.EXTENDED_NOT_OVERCOMMITTED)


ResourceList = Annotated[dict[Annotated[str, StringConstraints(max_length=253)], Quantity], Field(max_length=32)]


class Resources(ApiModel):
    """Compute resources of the training container, passed to the pod exactly as given."""

    requests: ResourceList = Field(
        default_factory=dict,
        description="Requested resources, such as phison.com/ai100 and otterscale.com/vgpu.",
        json_schema_extra=_resource_list_rules(),
    )
    limits: ResourceList = Field(
        default_factory=dict,
        description="Resource limits; extended resources need the same value here as in requests.",
        json_schema_extra=_resource_list_rules(),
    )

    model_config = ConfigDict(json_schema_extra=_rules(_not_overcommitted_rule()))

    @model_validator(mode="after")
    def _quantities(self) -> Self:
        for values in (self.requests, self.limits):
            _check_resource_list(values)
        for name, value in self.requests.items():
            if is_extended_resource(name) and (
                name not in self.limits or parse_quantity(value) != parse_quantity(self.limits[name])
            ):
                raise ValueError(msg.EXTENDED_NOT_OVERCOMMITTED)
        return self


def _check_resource_list(values: dict[str, int | str]) -> None:
    for name, value in values.items():
        if not is_quantity(value):
            raise ValueError(f"{msg.QUANTITY} (got {name}: {value!r})")
        if is_extended_resource(name) and parse_quantity(value) != int(parse_quantity(value)):
            raise ValueError(f"{msg.EXTENDED_WHOLE} (got {name}: {value!r})")
    if msg.VGPUMEM_PERCENTAGE in values:
        pct = parse_quantity(values[msg.VGPUMEM_PERCENTAGE])
        if pct != int(pct) or not 0 <= pct <= 100:
            raise ValueError(msg.VGPUMEM_PERCENTAGE_RANGE)
    if msg.VGPUMEM_PERCENTAGE in values and msg.VGPUMEM in values:
        raise ValueError(msg.VGPUMEM_EXCLUSIVE)


def _default_resources() -> Resources:
    # The chart's values.yaml: one vGPU at 60 % of its memory and one aiDAPTIVCache device.
    gpu = {"otterscale.com/vgpu": 1, msg.VGPUMEM_PERCENTAGE: 60, "phison.com/ai100": 1}
    return Resources(requests=dict(gpu), limits=dict(gpu))


class NfsSource(ApiModel):
    """An NFS export, mounted by the kubelet (no privileged container needed)."""

    server: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="NFS server host name or IP address."
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Exported path on the server."
    )


class PvcSource(ApiModel):
    """A PersistentVolumeClaim in the FineTuneJob's namespace."""

    claim_name: Name = Field(description="Name of the PersistentVolumeClaim.")


class Volume(ApiModel):
    """Storage mounted into the training container: models in, fine-tuned weights out."""

    name: DnsLabel = Field(description="Name of the volume, a DNS label of at most 48 characters.")
    mount_path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Where the volume appears in the container, such as /mnt/data.",
        json_schema_extra=_rules(
            cel("self.startsWith('/')", msg.MOUNT_PATH_ABSOLUTE),
            cel(
                " && ".join(f"self != '{p}' && !self.startsWith('{p}/')" for p in msg.RESERVED_MOUNT_PREFIXES),
                msg.MOUNT_PATH_RESERVED,
            ),
        ),
    )
    read_only: bool = Field(False, description="Mount read-only. Defaults to false.")
    sub_path: Path | None = Field(None, description="Mount only this path inside the volume.")
    nfs: NfsSource | None = Field(None, description="An NFS export.")
    persistent_volume_claim: PvcSource | None = Field(None, description="A PersistentVolumeClaim.")

    model_config = ConfigDict(
        json_schema_extra=_rules(cel("has(self.nfs) != has(self.persistentVolumeClaim)", msg.VOLUME_ONE_SOURCE))
    )

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(msg.MOUNT_PATH_ABSOLUTE)
        if any(value == p or value.startswith(p + "/") for p in msg.RESERVED_MOUNT_PREFIXES):
            raise ValueError(msg.MOUNT_PATH_RESERVED)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.nfs is None) == (self.persistent_volume_claim is None):
            raise ValueError(msg.VOLUME_ONE_SOURCE)
        return self


class SharedMemory(ApiModel):
    """A memory-backed /dev/shm: the default 64 MiB is too small for NCCL and data loaders."""

    enabled: bool = Field(True, description="Mount a memory-backed emptyDir at /dev/shm. Defaults to true.")
    size_limit: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None,
        description=(
            "Upper bound such as 16Gi; it counts against the container's memory limit. "
            "Defaults to null (bounded by the memory limit or the node)."
        ),
        json_schema_extra=_rules(cel("isQuantity(self)", msg.QUANTITY)),
    )

    @field_validator("size_limit")
    @classmethod
    def _size_limit(cls, value: str | None) -> str | None:
        if value is not None and not is_quantity(value):
            raise ValueError(f"{msg.QUANTITY} (got sizeLimit: {value!r})")
        return value


# ---------------------------------------------------------------------------------------------
# The spec

# Fields the operator keeps following after creation; everything else shapes the pod and is frozen.
MUTABLE_FIELDS = ("suspend", "ttlSecondsAfterFinished", "ttlPolicy")


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
    node_selector: Annotated[dict[Name, Annotated[str, StringConstraints(max_length=63)]], Field(max_length=32)] = (
        Field(default_factory=dict, description="Node labels the training pod requires.")
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
    shared_memory: SharedMemory = Field(default_factory=SharedMemory, description="The /dev/shm mount.")
    backoff_limit: int = Field(1, ge=0, le=100, description="Retries of the training pod. Defaults to 1.")
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
        description=(
            "Seconds after the training finished when the operator deletes its Job, pods and ConfigMap; "
            "the FineTuneJob and its status stay (see ttlPolicy). null keeps them. Defaults to 60."
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
        json_schema_extra=_rules(
            cel("!(has(self.trainData) && has(self.trainDataConfig))", msg.TRAIN_DATA_EXCLUSIVE),
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

    @model_validator(mode="after")
    def _one_train_data_form(self) -> Self:
        if self.train_data is not None and self.train_data_config is not None:
            raise ValueError(msg.TRAIN_DATA_EXCLUSIVE)
        if self.train_data_config is not None:
            parse_train_data_config(self.train_data_config)
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
        if alias in MUTABLE_FIELDS:
            continue
        rules.append(
            cel(
                f"has(self.{alias}) == has(oldSelf.{alias}) && (!has(self.{alias}) || self.{alias} == oldSelf.{alias})",
                msg.immutable(alias),
                field_path=f".{alias}",
            )
        )
    return rules
