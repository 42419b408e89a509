"""A FineTuneJob into the objects that run it: one ConfigMap and one batch/v1 Job.

Pure: the same FineTuneJob always gives the same manifests, so the operator can compare what it
would create with what exists, and `finetune-operator render` shows exactly what will run.
"""

from __future__ import annotations

import copy
from typing import Any

from finetune_operator.api.base import ANNOTATION_REQUESTED_SUSPEND, API_VERSION, KIND, LABEL_NAME
from finetune_operator.api.resource import FineTuneJob
from finetune_operator.api.spec import FineTuneJobSpec, Volume
from finetune_operator.render import configs
from finetune_operator.render import entrypoint as ep

COPIED_LABELS = ("kueue.x-k8s.io/queue-name", "kueue.x-k8s.io/priority-class")
CONFIG_VOLUMES = (
    ("exp-config", configs.EXP_CONFIG_DIR, (configs.EXP_CONFIG_FILE,)),
    ("env-config", configs.ENV_CONFIG_DIR, (configs.ENV_CONFIG_FILE,)),
    ("train-data", configs.TRAIN_DATA_DIR, (configs.TRAIN_DATA_FILE,)),
    ("scripts", configs.SCRIPTS_DIR, (configs.PRESCRIPT_FILE, configs.POSTSCRIPT_FILE)),
)
SHM_VOLUME = "dshm"
USER_VOLUME_PREFIX = "data-"


def job_name(ftj: FineTuneJob) -> str:
    """The Job keeps the FineTuneJob's name, as the chart's Job kept `job.name`."""
    return ftj.metadata.name


def config_map_name(ftj: FineTuneJob) -> str:
    """With the uid's start: a FineTuneJob deleted and re-created under its name (as the immutability
    message advises) never meets the ConfigMap of the one before, still being garbage-collected."""
    uid = (ftj.metadata.uid or "")[:8]
    return f"{ftj.metadata.name}-config-{uid}" if uid else f"{ftj.metadata.name}-config"


def selector_labels(ftj: FineTuneJob) -> dict[str, str]:
    return {LABEL_NAME: ftj.metadata.name}


def child_labels(ftj: FineTuneJob) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "aidaptiv-finetune",
        "app.kubernetes.io/instance": ftj.metadata.name,
        "app.kubernetes.io/managed-by": "finetune-operator",
        **selector_labels(ftj),
    }
    for key in COPIED_LABELS:
        if key in ftj.metadata.labels:
            labels[key] = ftj.metadata.labels[key]
    return labels


def _metadata(ftj: FineTuneJob, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": child_labels(ftj)}
    if ftj.metadata.namespace:
        meta["namespace"] = ftj.metadata.namespace
    if ftj.metadata.uid:
        owner = {"metadata": {"name": ftj.metadata.name, "uid": ftj.metadata.uid}}
        meta["ownerReferences"] = [_owner_reference(API_VERSION, KIND, owner)]
    return meta


def config_map(ftj: FineTuneJob, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer's files. Owned by the created Job (when given), so the garbage collector removes it
    with the Job: the operator needs no permission to delete ConfigMaps."""
    metadata = _metadata(ftj, config_map_name(ftj))
    if job is not None:
        metadata["ownerReferences"] = [_owner_reference("batch/v1", "Job", job)]
    # Immutable: the spec that feeds it is immutable too, and kubelets need not watch it.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "immutable": True,
        "data": configs.config_files(ftj),
    }


def _owner_reference(api_version: str, kind: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _volumes(ftj: FineTuneJob) -> list[dict[str, Any]]:
    spec = ftj.spec
    volumes: list[dict[str, Any]] = [
        {
            "name": name,
            "configMap": {
                "name": config_map_name(ftj),
                "items": [{"key": key, "path": key} for key in keys],
            },
        }
        for name, _, keys in CONFIG_VOLUMES
    ]
    if spec.shared_memory.enabled:
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if spec.shared_memory.size_limit is not None:
            empty_dir["sizeLimit"] = spec.shared_memory.size_limit
        volumes.append({"name": SHM_VOLUME, "emptyDir": empty_dir})
    volumes.extend(_user_volume(volume) for volume in spec.volumes)
    return volumes


def _user_volume(volume: Volume) -> dict[str, Any]:
    name = USER_VOLUME_PREFIX + volume.name
    if volume.nfs is not None:
        return {
            "name": name,
            "nfs": {"server": volume.nfs.server, "path": volume.nfs.path, "readOnly": volume.read_only},
        }
    assert volume.persistent_volume_claim is not None
    return {
        "name": name,
        "persistentVolumeClaim": {"claimName": volume.persistent_volume_claim.claim_name, "readOnly": volume.read_only},
    }


def _volume_mounts(spec: FineTuneJobSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": name, "mountPath": path, "readOnly": True} for name, path, _ in CONFIG_VOLUMES
    ]
    if spec.shared_memory.enabled:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    for volume in spec.volumes:
        mount: dict[str, Any] = {
            "name": USER_VOLUME_PREFIX + volume.name,
            "mountPath": volume.mount_path,
            "readOnly": volume.read_only,
        }
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)
    return mounts


def _environment(ftj: FineTuneJob) -> list[dict[str, str]]:
    spec = ftj.spec
    return [
        {"name": ep.ENV_OUTPUT_DIR, "value": spec.env_config.path_settings.output_dir},
        {"name": ep.ENV_LOG_FILE, "value": configs.log_file(ftj)},
        {"name": ep.ENV_ENV_CONFIG, "value": f"{configs.ENV_CONFIG_DIR}/{configs.ENV_CONFIG_FILE}"},
        {"name": ep.ENV_EXP_CONFIG, "value": f"{configs.EXP_CONFIG_DIR}/{configs.EXP_CONFIG_FILE}"},
        {"name": ep.ENV_PRESCRIPT, "value": f"{configs.SCRIPTS_DIR}/{configs.PRESCRIPT_FILE}"},
        {"name": ep.ENV_POSTSCRIPT, "value": f"{configs.SCRIPTS_DIR}/{configs.POSTSCRIPT_FILE}"},
    ]


def _container(ftj: FineTuneJob) -> dict[str, Any]:
    spec = ftj.spec
    container: dict[str, Any] = {
        "name": ep.CONTAINER_NAME,
        "image": spec.image.reference,
        "imagePullPolicy": spec.image.pull_policy,
        "command": ["/bin/sh", "-c"],
        "args": [ep.ENTRYPOINT],
        "env": _environment(ftj),
        "resources": _resources(spec),
        "volumeMounts": _volume_mounts(spec),
        "terminationMessagePath": ep.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": security_context(spec.security_context),
    }
    return container


# What Pod Security "restricted" asks of a container and a root trainer tolerates; runAsNonRoot is
# left to the user (the vendor image's user is not known). A key the user sets replaces its default.
DEFAULT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def security_context(given: dict[str, Any]) -> dict[str, Any]:
    """The container's securityContext: the defaults, key by key overridden by the user's."""
    merged = {**copy.deepcopy(DEFAULT_SECURITY_CONTEXT), **copy.deepcopy(given)}
    if merged.get("privileged") is True and "allowPrivilegeEscalation" not in given:
        del merged["allowPrivilegeEscalation"]  # the API server refuses privileged without escalation
    return merged


def privileges(given: dict[str, Any]) -> list[str]:
    """What in a securityContext gives the trainer powers beyond a normal container's."""
    found = []
    if given.get("privileged") is True:
        found.append("privileged: true")
    capabilities = given.get("capabilities")
    added = capabilities.get("add") if isinstance(capabilities, dict) else None
    if added:
        found.append(f"capabilities.add: {added}")
    return found


def _resources(spec: FineTuneJobSpec) -> dict[str, dict[str, str]]:
    # Quantities as strings: the canonical form, and what typed clients insist on.
    given = {"requests": spec.resources.requests, "limits": spec.resources.limits}
    return {kind: {name: str(value) for name, value in values.items()} for kind, values in given.items() if values}


def _pod_spec(ftj: FineTuneJob) -> dict[str, Any]:
    spec = ftj.spec
    pod: dict[str, Any] = {
        "restartPolicy": spec.restart_policy,
        # The trainer needs no Kubernetes API and no service environment variables.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [_container(ftj)],
        "volumes": _volumes(ftj),
    }
    if spec.scheduler_name:
        pod["schedulerName"] = spec.scheduler_name
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret.name} for secret in spec.image_pull_secrets]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = list(spec.tolerations)
    if spec.affinity:
        pod["affinity"] = dict(spec.affinity)
    return pod


def job(ftj: FineTuneJob) -> dict[str, Any]:
    """The training Job. No ttlSecondsAfterFinished: the operator runs the TTL itself, after it has
    recorded the final status, so the record survives the Job."""
    spec = ftj.spec
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "suspend": spec.suspend,
        "template": {
            "metadata": {"labels": child_labels(ftj)},
            "spec": _pod_spec(ftj),
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    metadata = _metadata(ftj, job_name(ftj))
    metadata["annotations"] = {ANNOTATION_REQUESTED_SUSPEND: suspend_text(spec.suspend)}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def suspend_text(suspend: bool) -> str:
    return "true" if suspend else "false"


def render(ftj: FineTuneJob) -> list[dict[str, Any]]:
    """Everything a FineTuneJob needs, in the order to create it: the Job, then its ConfigMap (owned
    by the Job once it exists; its pod waits for the ConfigMap volume meanwhile)."""
    return [job(ftj), config_map(ftj)]
