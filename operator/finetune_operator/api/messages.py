"""Validation messages, shared by the CEL rules of the CRD and the model validators.

A user sees the same words whether `kubectl apply` refused the object (CEL) or the operator did
(a `Stalled` condition), so each message lives here once.
"""

from __future__ import annotations

STRATEGIES = ("qa", "pretrain", "rag", "vqa")
EXP_TYPES = ("train", "inference", "eval")
TASK_TYPES = ("text-generation", "automatic-speech-recognition", "fill-mask", "image-text-to-text")
WEIGHT_FILE_FORMATS = ("bin", "pt", "safetensors")
VGPUMEM_PERCENTAGE = "otterscale.com/vgpumem-percentage"
VGPUMEM = "otterscale.com/vgpumem"
MAX_NAME_LENGTH = 63
RESERVED_MOUNT_PREFIXES = ("/config", "/dev")

USER_PROMPT = "userPrompt must contain the placeholder {question}"
STRATEGY = "strategy must be one of qa, pretrain, rag, vqa (in any letter case)"
DATA_PATH_TEXT = (
    "the text data_path may appear only as the data_path key: the trainer counts every data_path "
    "in its dataset config, so any other one would add a dataset that does not exist"
)
MAX_ITER = "maxIter must be -1 (no limit) or a positive number of iterations"
SPECIFY_GPUS_FORMAT = 'specifyGpus must be a comma-separated list of GPU indices, such as "0,1,2,3"'
SPECIFY_GPUS_UNIQUE = "specifyGpus must not name the same GPU twice"
QUANTITY = "every resource quantity must be a valid Kubernetes quantity, such as 1, 500m or 16Gi"
INT64 = "integers must fit in 64 bits (from -9223372036854775808 to 9223372036854775807)"
QUANTITY_RANGE = "resource quantities must be between 0 and 9223372036854775807 (an int64)"
QUALIFIED_NAME = (
    "keys must be qualified names such as cpu or phison.com/ai100: an optional DNS subdomain and /, "
    "then 1 to 63 letters, digits, -, _ or ., starting and ending with a letter or digit"
)
LABEL_VALUE = "label values must be at most 63 letters, digits, -, _ or ., starting and ending with a letter or digit"
EXTENDED_WHOLE = "extended resources (such as phison.com/ai100) must be whole numbers"
VGPUMEM_PERCENTAGE_RANGE = "otterscale.com/vgpumem-percentage must be a whole number from 0 to 100"
VGPUMEM_EXCLUSIVE = "otterscale.com/vgpumem and otterscale.com/vgpumem-percentage cannot be used together"
EXTENDED_NOT_OVERCOMMITTED = (
    "extended resources (such as phison.com/ai100) cannot be overcommitted: "
    "each one in requests needs the same quantity in limits"
)
TRAIN_DATA_EXCLUSIVE = "set either trainData or trainDataConfig, not both"
CONFIG_TEXT_BYTES = 900 * 1024
CONFIG_TEXT_TOO_LARGE = (
    f"prescript, postscript and trainDataConfig together must fit in {CONFIG_TEXT_BYTES} bytes (UTF-8): they "
    "go into the trainer's ConfigMap, which Kubernetes limits to 1 MiB; put large data in a volume"
)
VOLUME_ONE_SOURCE = "a volume needs exactly one source: nfs or persistentVolumeClaim"
MOUNT_PATH_ABSOLUTE = (
    "mountPath must be a normalized absolute path such as /mnt/data: no //, no . or .. segment, no trailing /"
)
MOUNT_PATH_RESERVED = (
    "mountPath must not be /config, /dev or below them: the operator mounts the trainer's config files, "
    "/dev/shm and the termination log there"
)
OUTPUT_DIR_ABSOLUTE = "outputDir must be an absolute path, such as /mnt/data/output"
LOG_NAME = "logName must name a file (not end in / or be . or ..), such as output.log or logs/train.log"
SUB_PATH = "subPath must be a relative path without .. segments"
MOUNT_PATHS_UNIQUE = "two volumes cannot share one mountPath"
NAME_LENGTH = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters: "
    "it names the Job, and a Job's name becomes a label value of its pods"
)


def immutable(field: str) -> str:
    return (
        f"{field} cannot be changed after creation (it shapes the training pod); "
        "delete and re-create the FineTuneJob to change it"
    )


BATCH_MULTIPLE = (
    "perUpdateTotalBatchSize must be a multiple of numGpus × perDeviceTrainBatchSize "
    "(the quotient is the number of gradient-accumulation steps)"
)
SPECIFY_GPUS_COUNT = "specifyGpus must list exactly numGpus GPUs"


def batch_multiple(total: int, gpus: int, per_device: int) -> str:
    return f"{BATCH_MULTIPLE}: {total} is not a multiple of {gpus} × {per_device} = {gpus * per_device}"


def specify_gpus_count(listed: int, gpus: int) -> str:
    return f"{SPECIFY_GPUS_COUNT}: it lists {listed}, numGpus is {gpus}"


def privileged(powers: list[str]) -> str:
    return (
        f"{', '.join(powers)} gives the trainer powers over its node beyond a Pod Security baseline pod; the "
        "operator refuses it unless its "
        "installer allowed privileged trainers (operator flag --allow-privileged, Helm value "
        "allowPrivilegedTrainers: true). NFS needs no privilege: use spec.volumes"
    )


def tolerates_everything(found: list[str]) -> str:
    return (
        f"{'; '.join(found)} would let the trainer onto any node, control-plane nodes too; the operator "
        "refuses it unless its installer allowed it (operator flag --allow-any-toleration, Helm value "
        "allowAnyToleration: true). Tolerate the taints of your GPU nodes by key"
    )


def changed_only_while_suspended(field: str) -> str:
    return (
        f"{field} can be changed only while the FineTuneJob is suspended (spec.suspend: true) and stays "
        "suspended in the same change; set suspend: false in a change of its own, and the training resumes "
        "with the new value"
    )


MULTI_NODE_RESTART_POLICY = (
    "restartPolicy must be Never when numNodes > 1: a rank restarted in place would rejoin a group that "
    "has moved on; the operator restarts the whole group instead (backoffLimit)"
)
MAX_MULTI_NODE_NAME = 60
MULTI_NODE_NAME = (
    f"a FineTuneJob with numNodes > 1 needs a name that is a DNS label starting with a letter, at most "
    f"{MAX_MULTI_NODE_NAME} characters: it names the headless Service, and each pod's host name adds -<rank>"
)


def master_addr(given: str, stable: str) -> str:
    return (
        f"multiNodeSettings.masterAddr {given!r} is not where rank 0 runs: with numNodes > 1 the operator "
        f"wires the ranks and rank 0 is {stable}; leave masterAddr unset (or set it to that name)"
    )


IMAGE_REFERENCE = (
    "image references must be valid OCI references such as registry.example.com/team/model:v1 or "
    "registry.example.com/team/model@sha256:<64 hex digits> (lowercase repository, tag of at most 128 letters, "
    "digits, _ . -)"
)
OUTPUT_REPOSITORY = (
    "output.image.repository must be a repository without tag or digest, such as registry.example.com/team/llama-ft "
    "(the tag has a field of its own)"
)
OUTPUT_REGISTRY_HOST = (
    "output.image.repository must start with the registry's host, such as registry.example.com/team/llama-ft "
    "or localhost:5000/llama-ft: a bare name would be pushed to Docker Hub"
)
OUTPUT_TAG = "output.image.tag must be at most 128 letters, digits, _, . or -, not starting with . or -"
OUTPUT_TAG_LATEST = (
    "output.image.tag must not be latest: each training pushes a tag of its own, so a later one never replaces "
    "what a deployment pinned (leave the tag unset for <name>-<uid>)"
)
OUTPUT_BASE_IMAGE = "output.image.baseImage applies only to format Image"
OUTPUT_RESTART_POLICY = (
    "output.image needs restartPolicy Never: with OnFailure a failed push would restart the container and train again"
)
SECRET_NAME = "pushSecretName must be the name of a Secret: lowercase letters, digits, - and ., such as regcred"
MODEL_PATH_ABSOLUTE = "model paths must be normalized absolute paths such as /data/model: no //, no . or .. segment"
MODEL_SOURCE = "model needs image or sourcePath: where the base model comes from"
MODEL_SOURCE_IN_IMAGE = "model.sourcePath must be model.mountPath or a directory below it when model.image is set"
MODEL_LOCAL_IN_IMAGE = "model.localPath must not be model.mountPath or below it: the image is mounted read-only there"
MODEL_MOUNT_TAKEN = "model.mountPath and model.localPath must differ from every spec.volumes mountPath"
MODEL_SOURCE_IN_VOLUME = (
    "model.sourcePath must be inside the mountPath of one of spec.volumes when copyToLocal is set without "
    "model.image or model.loader.image: the model-loader sees only those volumes (and its own image)"
)
MODEL_LOCAL_VOLUME = (
    "model.localVolume must name one of spec.volumes that is not readOnly, and model.localPath must be inside "
    "its mountPath"
)


def rank_placeholder(placeholder: str) -> str:
    return f"envConfig cannot contain {placeholder}: the operator writes each rank's number in its place"
