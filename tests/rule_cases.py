"""Every validation rule with a good and a bad spec: one table for the models and the API server.

The unit tests run each case through the pydantic models; the e2e tests send the same cases to a
real API server with the generated CRD, so the two enforcements cannot drift apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RuleCase:
    id: str
    good: dict[str, Any]
    bad: dict[str, Any]
    message: str  # a fragment both the model and the API server must show
    server: bool = True  # False: only the models can check it (the operator reports it as InvalidSpec)


def _exp(process: dict[str, Any] | None = None, run: dict[str, Any] | None = None) -> dict[str, Any]:
    exp: dict[str, Any] = {}
    if process is not None:
        exp["processSettings"] = process
    if run is not None:
        exp["runSettings"] = run
    return {"expConfig": exp}


def _dataset(**fields: Any) -> dict[str, Any]:
    return {"trainData": [{"name": "ds", "dataPath": "org/data", **fields}]}


def _resources(requests: dict[str, Any], limits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"resources": {"requests": requests, "limits": requests if limits is None else limits}}


def _nfs(**fields: Any) -> dict[str, Any]:
    volume = {"name": "data", "mountPath": "/mnt/data", "nfs": {"server": "nfs.local", "path": "/x"}, **fields}
    return {"volumes": [volume]}


def _model(**fields: Any) -> dict[str, Any]:
    return {"model": {"image": {"reference": "registry.example.com/models/llama:v1"}, **fields}}


def _output(**fields: Any) -> dict[str, Any]:
    return {"output": {"image": {"repository": "registry.example.com/team/llama-ft", **fields}}}


DIGEST = "sha256:" + "ab" * 32
IN_VOLUME = {"volumes": [{"name": "data", "mountPath": "/mnt/data", "nfs": {"server": "nfs.local", "path": "/x"}}]}
NO_IMAGE_COPY = {"model": {"sourcePath": "/mnt/data/llama", "copyToLocal": True}}

RULE_CASES: list[RuleCase] = [
    RuleCase(
        "config-texts-fit",
        # Characters within each field's maxLength; bytes (UTF-8) over the ConfigMap's room together.
        {"prescript": "\u00e9" * 262_144, "postscript": "q" * 262_144},
        {"prescript": "\u00e9" * 262_144, "postscript": "\u00e9" * 262_144},
        "must fit in 921600 bytes",
    ),
    RuleCase("numGpus", _exp({"numGpus": 4}, {"perUpdateTotalBatchSize": 16}), _exp({"numGpus": 3}), "numGpus"),
    RuleCase(
        "batch-multiple",
        _exp({"numGpus": 2}, {"perDeviceTrainBatchSize": 4, "perUpdateTotalBatchSize": 24}),
        _exp({"numGpus": 2}, {"perDeviceTrainBatchSize": 4, "perUpdateTotalBatchSize": 20}),
        "perUpdateTotalBatchSize must be a multiple of numGpus × perDeviceTrainBatchSize",
    ),
    RuleCase(
        "batch-multiple-defaults",
        _exp(run={"perUpdateTotalBatchSize": 8}),
        _exp(run={"perUpdateTotalBatchSize": 10}),
        "perUpdateTotalBatchSize must be a multiple of numGpus × perDeviceTrainBatchSize",
    ),
    RuleCase("userPrompt", _dataset(userPrompt="Q: {question}"), _dataset(userPrompt="Q: {q}"), "{question}"),
    RuleCase("strategy", _dataset(strategy="QA"), _dataset(strategy="chat"), "strategy must be one of qa"),
    RuleCase("expType", _dataset(expType="eval"), _dataset(expType="test"), "expType"),
    RuleCase("precisionMode", _exp(run={"precisionMode": 0}), _exp(run={"precisionMode": 2}), "precisionMode"),
    RuleCase(
        "lrScheduler.mode", _exp(run={"lrScheduler": {"mode": -1}}), _exp(run={"lrScheduler": {"mode": 6}}), "mode"
    ),
    RuleCase(
        "weightFileFormat",
        _exp(run={"weightFileFormat": "safetensors"}),
        _exp(run={"weightFileFormat": "onnx"}),
        "weightFileFormat",
    ),
    RuleCase("maxIter", _exp(run={"maxIter": -1}), _exp(run={"maxIter": 0}), "maxIter must be -1"),
    RuleCase(
        "specifyGpus-format",
        _exp({"numGpus": 2, "specifyGpus": "0,1"}, {"perUpdateTotalBatchSize": 16}),
        _exp({"numGpus": 2, "specifyGpus": "0;1"}, {"perUpdateTotalBatchSize": 16}),
        "specifyGpus must be a comma-separated list",
    ),
    RuleCase(
        "specifyGpus-count",
        _exp({"numGpus": 4, "specifyGpus": "0,1,2,3"}, {"perUpdateTotalBatchSize": 16}),
        _exp({"numGpus": 4, "specifyGpus": "0,1"}, {"perUpdateTotalBatchSize": 16}),
        "specifyGpus must list exactly numGpus GPUs",
    ),
    RuleCase(
        "specifyGpus-unique",
        _exp({"numGpus": 2, "specifyGpus": "2,3"}, {"perUpdateTotalBatchSize": 16}),
        _exp({"numGpus": 2, "specifyGpus": "1,1"}, {"perUpdateTotalBatchSize": 16}),
        "specifyGpus must not name the same GPU twice",
    ),
    RuleCase(
        "quantity",
        _resources({"memory": "16Gi", "cpu": "500m"}),
        _resources({"memory": "16 GB"}),
        "valid Kubernetes quantity",
    ),
    RuleCase(
        "vgpumem-percentage",
        _resources({"otterscale.com/vgpumem-percentage": 100}),
        _resources({"otterscale.com/vgpumem-percentage": 101}),
        "from 0 to 100",
    ),
    RuleCase(
        "vgpumem-exclusive",
        _resources({"otterscale.com/vgpumem": 8192}),
        _resources({"otterscale.com/vgpumem": 8192, "otterscale.com/vgpumem-percentage": 50}),
        "cannot be used together",
    ),
    RuleCase(
        "extended-whole",
        _resources({"phison.com/ai100": 2}),
        _resources({"phison.com/ai100": "1500m"}),
        "must be whole numbers",
    ),
    RuleCase(
        "extended-not-overcommitted",
        _resources({"phison.com/ai100": 1, "cpu": 1}, {"phison.com/ai100": 1, "cpu": 2}),
        _resources({"phison.com/ai100": 1}, {"phison.com/ai100": 2}),
        "cannot be overcommitted",
    ),
    RuleCase(
        "trainData-exclusive",
        _dataset(),
        {**_dataset(), "trainDataConfig": "a:\n  data_path: x\n"},
        "either trainData or trainDataConfig",
    ),
    RuleCase(
        "volume-source",
        _nfs(),
        {"volumes": [{"name": "data", "mountPath": "/mnt/data"}]},
        "exactly one source",
    ),
    RuleCase("mountPath-absolute", _nfs(mountPath="/data"), _nfs(mountPath="data"), "absolute path"),
    RuleCase("mountPath-reserved", _nfs(mountPath="/configs"), _nfs(mountPath="/config/x"), "/config, /dev or below"),
    # Found by a probe: reserved directories behind other spellings, and one directory spelt twice.
    RuleCase("mountPath-dev", _nfs(mountPath="/devices"), _nfs(mountPath="/dev"), "/config, /dev or below"),
    RuleCase("mountPath-root", _nfs(mountPath="/r"), _nfs(mountPath="/"), "normalized absolute path"),
    RuleCase("mountPath-slashes", _nfs(mountPath="/a/b"), _nfs(mountPath="//config/exp"), "normalized absolute path"),
    RuleCase("mountPath-dot", _nfs(mountPath="/a/.b"), _nfs(mountPath="/./config/exp"), "normalized absolute path"),
    RuleCase("mountPath-dotdot", _nfs(mountPath="/a/..b"), _nfs(mountPath="/mnt/../config"), "normalized absolute"),
    RuleCase("mountPath-trailing", _nfs(mountPath="/mnt/data"), _nfs(mountPath="/mnt/data/"), "no trailing /"),
    RuleCase("subPath", _nfs(subPath="models/a"), _nfs(subPath="../etc"), "subPath must be a relative path"),
    RuleCase(
        "outputDir-absolute",
        {"envConfig": {"pathSettings": {"outputDir": "/-v"}}},
        {"envConfig": {"pathSettings": {"outputDir": "-v"}}},
        "outputDir must be an absolute path",
    ),
    RuleCase(
        "logName-file",
        {"envConfig": {"pathSettings": {"logName": "logs/train.log"}}},
        {"envConfig": {"pathSettings": {"logName": "logs/"}}},
        "logName must name a file",
    ),
    RuleCase(
        "data_path-text",
        _dataset(userPrompt="{question} data path"),
        _dataset(userPrompt="{question} data_path"),
        "the text data_path may appear only as the data_path key",
    ),
    RuleCase("quantity-newline", _resources({"cpu": "1"}), _resources({"cpu": "1\n"}), "valid Kubernetes quantity"),
    RuleCase(
        "quantity-exponent", _resources({"cpu": "1e2"}), _resources({"cpu": "1e2.5"}), "valid Kubernetes quantity"
    ),
    RuleCase(
        "quantity-range",
        _resources({"example.com/foo": "1e18"}),
        _resources({"example.com/foo": "1e999999"}),
        "between 0 and 9223372036854775807",
    ),
    # Every extended resource, not only the GPU ones (found by the agreement property).
    RuleCase(
        "extended-whole-any",
        _resources({"example.com/foo": 2}),
        _resources({"example.com/foo": "1500m"}),
        "must be whole numbers",
    ),
    RuleCase(
        "extended-not-overcommitted-any",
        _resources({"example.com/foo": 1, "kubernetes.io/x": 1}, {"example.com/foo": 1}),
        _resources({"example.com/foo": 1}, {}),
        "cannot be overcommitted",
    ),
    RuleCase("quantity-negative", _resources({"cpu": "0"}), _resources({"cpu": "-1"}), "between 0 and"),
    RuleCase("resource-name", _resources({"example.com/foo": 1}), _resources({"": 1}), "qualified names"),
    RuleCase(
        "resource-name-long", _resources({"example.com/" + "a" * 63: 1}), _resources({"a" * 64: 1}), "qualified names"
    ),
    RuleCase(
        "nodeSelector-key", {"nodeSelector": {"example.com/gpu": "a100"}}, {"nodeSelector": {"": "x"}}, "qualified"
    ),
    RuleCase(
        "nodeSelector-value",
        {"nodeSelector": {"gpu": "a100_x.y-z"}},
        {"nodeSelector": {"gpu": "{{ .Values }}"}},
        "label values must be at most 63",
    ),
    RuleCase("numGpus-bool", _exp({"numGpus": 1}), _exp({"numGpus": True}), "numGpus"),
    RuleCase("snake_case-key", _exp({"numGpus": 1}), _exp({"num_gpus": 8}), "num_gpus"),
    RuleCase(
        "mountPath-unique",
        {"volumes": _nfs()["volumes"] + [{**_nfs()["volumes"][0], "name": "other", "mountPath": "/mnt/other"}]},
        {"volumes": _nfs()["volumes"] + [{**_nfs()["volumes"][0], "name": "other"}]},
        "share one mountPath",
    ),
    RuleCase(
        "sharedMemory", {"sharedMemory": {"sizeLimit": "8Gi"}}, {"sharedMemory": {"sizeLimit": "8 gigs"}}, "quantity"
    ),
    RuleCase(
        "loraTargetModules",
        _exp(run={"lora": {"loraTargetModules": ["q_proj", "v_proj"]}}),
        _exp(run={"lora": {"loraTargetModules": 7}}),
        "loraTargetModules",
        server=False,
    ),
]

OCI_CASES: list[RuleCase] = [
    RuleCase(
        "model-reference",
        {"model": {"image": {"reference": f"registry.example.com:5000/models/llama@{DIGEST}"}}},
        {"model": {"image": {"reference": "registry.example.com/models/llama:v1 $(touch /tmp/x)"}}},
        "valid OCI references",
    ),
    RuleCase(
        "model-reference-uppercase",
        {"model": {"image": {"reference": "Registry.example.com/models/llama:V1"}}},
        {"model": {"image": {"reference": "registry.example.com/Models/llama:v1"}}},
        "valid OCI references",
    ),
    RuleCase(
        "model-digest",
        _model(),
        {"model": {"image": {"reference": "registry.example.com/models/llama@sha256:abc"}}},
        "valid OCI references",
    ),
    RuleCase("model-source", _model(), {"model": {"copyToLocal": True}}, "model needs image or sourcePath"),
    RuleCase(
        "model-source-in-image",
        _model(sourcePath="/data/model/llama"),
        _model(sourcePath="/data/models"),
        "mountPath or a directory below it",
    ),
    RuleCase(
        "model-local-in-image",
        _model(copyToLocal=True, localPath="/data/local"),
        _model(copyToLocal=True, localPath="/data/model/local"),
        "must not be model.mountPath or below it",
    ),
    RuleCase(
        "model-path-absolute", _model(mountPath="/models"), _model(mountPath="models"), "normalized absolute paths"
    ),
    RuleCase("model-path-reserved", _model(mountPath="/conf"), _model(mountPath="/config/m"), "/config, /dev"),
    RuleCase(
        "model-mount-taken",
        {**_model(mountPath="/mnt/model"), **IN_VOLUME},
        {**_model(mountPath="/mnt/data"), **IN_VOLUME},
        "must differ from every spec.volumes mountPath",
    ),
    RuleCase(
        "model-source-in-volume",
        {**NO_IMAGE_COPY, **IN_VOLUME},
        {"model": {"sourcePath": "/mnt/database/llama", "copyToLocal": True}, **IN_VOLUME},
        "inside the mountPath of one of spec.volumes",
    ),
    RuleCase(
        "model-local-volume",
        {**_model(copyToLocal=True, localVolume="data", localPath="/mnt/data/local"), **IN_VOLUME},
        {**_model(copyToLocal=True, localVolume="data", localPath="/local/model"), **IN_VOLUME},
        "model.localVolume must name one of spec.volumes",
    ),
    RuleCase(
        "model-local-volume-read-only",
        {**_model(copyToLocal=True, localVolume="data", localPath="/mnt/data/local"), **IN_VOLUME},
        {
            **_model(copyToLocal=True, localVolume="data", localPath="/mnt/data/local"),
            "volumes": [{**IN_VOLUME["volumes"][0], "readOnly": True}],
        },
        "model.localVolume must name one of spec.volumes that is not readOnly",
    ),
    RuleCase(
        "model-size-limit", _model(localSizeLimit="200Gi"), _model(localSizeLimit="200 GB"), "valid Kubernetes quantity"
    ),
    RuleCase(
        "output-repository",
        _output(),
        _output(repository="registry.example.com/team/llama-ft:v1"),
        "must be a repository without tag or digest",
    ),
    RuleCase(
        "output-registry-host",
        _output(repository="localhost:5000/llama-ft"),
        _output(repository="team/llama-ft"),
        "must start with the registry's host",
    ),
    RuleCase("output-work-size", _output(workSizeLimit="100Gi"), _output(workSizeLimit="lots"), "valid Kubernetes"),
    RuleCase("output-tag", _output(tag="v1.0_rc-1"), _output(tag="-v1"), "output.image.tag must be at most 128"),
    RuleCase("output-tag-latest", _output(tag="latest-1"), _output(tag="latest"), "must not be latest"),
    RuleCase("output-format", _output(format="ModelPack"), _output(format="Tarball"), "ModelPack"),
    RuleCase(
        "output-restart-policy",
        {**_output(), "restartPolicy": "Never"},
        {**_output(), "restartPolicy": "OnFailure"},
        "output.image needs restartPolicy Never",
    ),
    RuleCase(
        "output-base-image",
        _output(format="Image", baseImage="busybox:1.36"),
        _output(baseImage="busybox:1.36"),
        "applies only to format Image",
    ),
    RuleCase("push-secret", _output(pushSecretName="reg.cred-1"), _output(pushSecretName="Reg_Cred"), "pushSecretName"),
    RuleCase(
        "output-tool-image",
        _output(tools={"crane": {"image": "mirror.local/crane:debug", "path": "/ko-app/crane"}}),
        _output(tools={"crane": {"image": "mirror.local/crane:debug'; rm -rf /", "path": "/ko-app/crane"}}),
        "valid OCI references",
    ),
]
RULE_CASES.extend(OCI_CASES)
RULE_CASES.append(
    RuleCase(
        "multi-node-restart-policy",
        {"numNodes": 2, "restartPolicy": "Never"},
        {"numNodes": 2, "restartPolicy": "OnFailure"},
        "restartPolicy must be Never when numNodes > 1",
    )
)

# The TTLs are bounded as a Job's TTL is (int32): a larger one overflowed the operator's deadline sum.
RULE_CASES.extend(
    RuleCase(
        f"{ttl}-bound",
        {ttl: 2**31 - 1},
        {ttl: 2**31},
        "should be less than or equal to 2147483647",
    )
    for ttl in ("ttlSecondsAfterFinished", "ttlSecondsAfterFailure")
)


@dataclass(frozen=True)
class UpdateCase:
    """A change of a stored spec `old` into `new`: accepted (message None) or refused with the message."""

    id: str
    old: dict[str, Any]
    new: dict[str, Any]
    message: str | None


RESIZE_REFUSED = "numNodes can be changed only while the FineTuneJob is suspended (spec.suspend: true) and stays"
UPDATE_CASES: list[UpdateCase] = [
    UpdateCase("resize-while-suspended", {"numNodes": 2, "suspend": True}, {"numNodes": 4, "suspend": True}, None),
    UpdateCase("grow-to-multi-node-suspended", {"suspend": True}, {"numNodes": 2, "suspend": True}, None),
    UpdateCase("resume-after-resize", {"numNodes": 4, "suspend": True}, {"numNodes": 4, "suspend": False}, None),
    UpdateCase("default-made-explicit", {}, {"numNodes": 1}, None),
    UpdateCase("ttl-of-a-running-one", {"numNodes": 2}, {"numNodes": 2, "ttlSecondsAfterFinished": 600}, None),
    # Found by a probe: one patch {numNodes: 4, suspend: false} resumed the held Job with the old count.
    UpdateCase(
        "resize-and-resume-at-once",
        {"numNodes": 2, "suspend": True},
        {"numNodes": 4, "suspend": False},
        RESIZE_REFUSED,
    ),
    UpdateCase("resize-and-drop-suspend", {"numNodes": 2, "suspend": True}, {"numNodes": 4}, RESIZE_REFUSED),
    UpdateCase("grow-and-resume-at-once", {"suspend": True}, {"numNodes": 2, "suspend": False}, RESIZE_REFUSED),
    UpdateCase("resize-a-running-one", {"numNodes": 2}, {"numNodes": 4}, RESIZE_REFUSED),
    UpdateCase("suspend-and-resize-at-once", {"numNodes": 2}, {"numNodes": 4, "suspend": True}, RESIZE_REFUSED),
    UpdateCase("frozen-field", {"suspend": True}, {"suspend": True, "prescript": "x"}, "prescript cannot be changed"),
]

NAME_CASE = RuleCase("name-length", {}, {}, "at most 63 characters")
LONG_NAME = "a" * 64
# Several ranks: the name also names the headless Service (a DNS label) and, with -<rank>, pod host names.
MULTI_NODE_NAME_CASE = RuleCase("multi-node-name", {"numNodes": 2}, {"numNodes": 2}, "needs a name that is a DNS label")
MULTI_NODE_BAD_NAMES = ("1-starts-with-a-digit", "has.a.dot", "a" * 61)


def finetunejob(spec: dict[str, Any], name: str = "rule-case", namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "finetune.aidaptiv.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": metadata,
        "spec": copy.deepcopy(spec),
    }
