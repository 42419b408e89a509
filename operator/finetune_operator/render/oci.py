"""The pod's part of spec.model and spec.output.image: image volumes, the model-loader and push-tool init
containers, and the environment the entrypoint's push step reads.

User text (references, paths) goes into fields and arguments only: the loader's script is fixed, and
gets its two paths as positional parameters. In env values and commands, text is literal(): the kubelet
expands $(VAR) and $$ there.
"""

from __future__ import annotations

import copy
from typing import Any

from finetune_operator.api.base import LOADER_CONTAINER
from finetune_operator.api.quantity import parse_quantity
from finetune_operator.api.resource import FineTuneJob
from finetune_operator.api.spec import Model, OutputImage
from finetune_operator.api.spec.pod import Resources
from finetune_operator.render import entrypoint as ep
from finetune_operator.render.expansion import literal

EXIT_PUSH_FAILED = ep.EXIT_PUSH_FAILED

MODEL_VOLUME = "model"
MODEL_LOCAL_VOLUME = "model-local"
PUSH_TOOLS_VOLUME = "push-tools"
PUSH_AUTH_VOLUME = "push-auth"
PUSH_WORK_VOLUME = "push-work"
# Under /config, which no user volume may use: nothing of the user's can shadow them.
TOOLS_DIR = "/config/tools"
AUTH_DIR = "/config/push-auth"
# One copy of outputDir while it is packed (the Image's tar, kit's storage): on the node's disk, never in
# the container's writable layer, which may be small or read-only.
WORK_DIR = "/config/push-work"
# The Secret's key as kubectl create secret docker-registry writes it; crane and kit read config.json
# in $DOCKER_CONFIG.
DOCKER_CONFIG_KEY = ".dockerconfigjson"
# set -e: the first failing step ends the copy with its own message, which the container's log (and
# so its termination message, FallbackToLogsOnError) carries to the ModelLoadFailed condition.
LOADER_SCRIPT = (
    "set -e\n"
    'printf "model-loader: copying %s to %s\\n" "$1" "$2"\n'
    'mkdir -p -- "$2"\n'
    'cp -R -- "$1/." "$2/"\n'
    'printf "model-loader: done\\n"\n'
)
# A pod's init resources are the largest of its init containers'; a cp of one binary needs little.
TOOL_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}


def tools_for(output: OutputImage) -> list[str]:
    """The tools the push needs: crane for an Image (and for the digest of every push), kit for the
    KitOps formats."""
    return ["crane"] if output.format == "Image" else ["kit", "crane"]


def _output_image(ftj: FineTuneJob) -> OutputImage | None:
    return ftj.spec.output.image if ftj.spec.output is not None else None


def output_tag(ftj: FineTuneJob) -> str:
    """The tag pushed: the user's, else <name>-<uid8> (a name has at most 63 characters, a tag 128)."""
    output = _output_image(ftj)
    if output is not None and output.tag:
        return output.tag
    uid = (ftj.metadata.uid or "")[:8]
    return f"{ftj.metadata.name}-{uid}" if uid else ftj.metadata.name


def volumes(ftj: FineTuneJob) -> list[dict[str, Any]]:
    model, output = ftj.spec.model, _output_image(ftj)
    made: list[dict[str, Any]] = []
    if model is not None and model.image is not None:
        made.append(
            {
                "name": MODEL_VOLUME,
                "image": {"reference": model.image.reference, "pullPolicy": model.image.pull_policy},
            }
        )
    if model is not None and model.copy_to_local and model.local_volume is None:
        empty_dir: dict[str, Any] = {}
        if model.local_size_limit is not None:
            empty_dir["sizeLimit"] = model.local_size_limit
        made.append({"name": MODEL_LOCAL_VOLUME, "emptyDir": empty_dir})
    if output is not None:
        made.append({"name": PUSH_TOOLS_VOLUME, "emptyDir": {}})
        work: dict[str, Any] = {}
        if output.work_size_limit is not None:
            work["sizeLimit"] = output.work_size_limit
        made.append({"name": PUSH_WORK_VOLUME, "emptyDir": work})
        if output.push_secret_name is not None:
            made.append(
                {
                    "name": PUSH_AUTH_VOLUME,
                    "secret": {
                        "secretName": output.push_secret_name,
                        "items": [{"key": DOCKER_CONFIG_KEY, "path": "config.json"}],
                        "defaultMode": 0o440,
                    },
                }
            )
    return made


def _model_mounts(model: Model, for_loader: bool) -> list[dict[str, Any]]:
    mounts = []
    if model.image is not None and (for_loader or not model.copy_to_local):
        mounts.append({"name": MODEL_VOLUME, "mountPath": model.mount_path, "readOnly": True})
    if model.copy_to_local and model.local_volume is None:
        mounts.append({"name": MODEL_LOCAL_VOLUME, "mountPath": model.local_path})
    return mounts


def trainer_mounts(ftj: FineTuneJob) -> list[dict[str, Any]]:
    model, output = ftj.spec.model, _output_image(ftj)
    mounts = _model_mounts(model, for_loader=False) if model is not None else []
    if output is not None:
        mounts.append({"name": PUSH_TOOLS_VOLUME, "mountPath": TOOLS_DIR, "readOnly": True})
        mounts.append({"name": PUSH_WORK_VOLUME, "mountPath": WORK_DIR})
        if output.push_secret_name is not None:
            mounts.append({"name": PUSH_AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True})
    return mounts


def trainer_environment(ftj: FineTuneJob) -> list[dict[str, Any]]:
    """What the entrypoint's push step reads; nothing without spec.output.image."""
    output = _output_image(ftj)
    if output is None:
        return []
    env = [
        {"name": ep.ENV_PUSH_FORMAT, "value": output.format},
        {"name": ep.ENV_PUSH_REFERENCE, "value": literal(f"{output.repository}:{output_tag(ftj)}")},
        {"name": ep.ENV_PUSH_INSECURE, "value": "true" if output.insecure else "false"},
        {"name": ep.ENV_PUSH_TOOLS, "value": TOOLS_DIR},
        {"name": ep.ENV_PUSH_WORK_DIR, "value": WORK_DIR},
    ]
    if output.work_size_limit is not None:
        env.append({"name": ep.ENV_PUSH_WORK_LIMIT_KIB, "value": str(work_limit_kib(output.work_size_limit))})
    if output.base_image is not None:
        env.append({"name": ep.ENV_PUSH_BASE_IMAGE, "value": literal(output.base_image)})
    if output.push_secret_name is not None:
        env.append({"name": ep.ENV_DOCKER_CONFIG, "value": AUTH_DIR})
    return env


def work_limit_kib(size_limit: str) -> int:
    """The scratch's sizeLimit in whole KiB, which the entrypoint compares with `du -sk` of the output
    before copying it: a copy beyond the limit would get the pod evicted by the kubelet, and an evicted
    pod is a disruption the Job replaces (podFailurePolicy), i.e. the training would run again."""
    return int(parse_quantity(size_limit) // 1024)


def _resources(resources: Resources) -> dict[str, dict[str, str]]:
    given = {"requests": resources.requests, "limits": resources.limits}
    return {kind: {name: str(value) for name, value in values.items()} for kind, values in given.items() if values}


def _loader(
    ftj: FineTuneJob, model: Model, user_mounts: list[dict[str, Any]], security: dict[str, Any]
) -> dict[str, Any]:
    image = model.loader.image or ftj.spec.image
    return {
        "name": LOADER_CONTAINER,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": [
            literal(part)
            for part in ("/bin/sh", "-c", LOADER_SCRIPT, LOADER_CONTAINER, model.source(), model.local_path)
        ],
        "resources": _resources(model.loader.resources),
        # Every user volume, as the trainer sees it: the source or the target may be in any of them.
        "volumeMounts": [*_model_mounts(model, for_loader=True), *copy.deepcopy(user_mounts)],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(security),
    }


def _tool_copier(output: OutputImage, tool: str, security: dict[str, Any]) -> dict[str, Any]:
    source = getattr(output.tools, tool)
    return {
        "name": f"push-tool-{tool}",
        "image": source.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cp", "--", literal(source.path), f"{TOOLS_DIR}/{tool}"],
        "resources": copy.deepcopy(TOOL_RESOURCES),
        "volumeMounts": [{"name": PUSH_TOOLS_VOLUME, "mountPath": TOOLS_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(security),
    }


def init_containers(
    ftj: FineTuneJob, user_mounts: list[dict[str, Any]], security: dict[str, Any]
) -> list[dict[str, Any]]:
    """The push tools first (seconds), then the model copy (minutes): a missing tool image fails fast."""
    model, output = ftj.spec.model, _output_image(ftj)
    made = [_tool_copier(output, tool, security) for tool in tools_for(output)] if output is not None else []
    if model is not None and model.copy_to_local:
        made.append(_loader(ftj, model, user_mounts, security))
    return made


def failure_rules(ftj: FineTuneJob) -> list[dict[str, Any]]:
    """A failed push is not retried by training again: the Job fails at once (the trained files stay)."""
    if _output_image(ftj) is None:
        return []
    return [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": ep.CONTAINER_NAME, "operator": "In", "values": [EXIT_PUSH_FAILED]},
        }
    ]
