"""A FineTuneJob into the objects that run it: one ConfigMap and one batch/v1 Job (and, for more than one
node, a headless Service: render/multinode.py).

Pure: the same FineTuneJob always gives the same manifests, so the operator can compare what it
would create with what exists, and `finetune-operator render` shows exactly what will run.
"""

from __future__ import annotations

import copy
from typing import Any

from finetune_operator.api.base import ANNOTATION_ATTEMPT, suspend_annotation
from finetune_operator.api.resource import FineTuneJob
from finetune_operator.api.spec import FineTuneJobSpec, Volume
from finetune_operator.render import configs, multinode, oci
from finetune_operator.render import entrypoint as ep
from finetune_operator.render.expansion import literal
from finetune_operator.render.objects import (
    MAX_EXEC_TIME_LABEL,
    QUEUE_LABEL,
    child_labels,
    config_map_name,
    job_name,
    metadata,
    owner_reference,
)


def config_volumes(ftj: FineTuneJob) -> list[tuple[str, str, tuple[str, ...]]]:
    """(volume, mount directory, ConfigMap keys) of the trainer's files."""
    env_files = (configs.ENV_CONFIG_FILE,)
    return [
        ("exp-config", configs.EXP_CONFIG_DIR, (configs.EXP_CONFIG_FILE,)),
        ("env-config", configs.ENV_CONFIG_DIR, env_files),
        ("train-data", configs.TRAIN_DATA_DIR, (configs.TRAIN_DATA_FILE,)),
        ("scripts", configs.SCRIPTS_DIR, (configs.PRESCRIPT_FILE, configs.POSTSCRIPT_FILE)),
    ]


SHM_VOLUME = "dshm"
RANK_VOLUME = "rank-config"  # the rank's own env_config, written by the entrypoint
RANK_VOLUME_SIZE = "1Mi"
USER_VOLUME_PREFIX = "data-"


def config_map(ftj: FineTuneJob, job: dict[str, Any] | None = None, attempt: int = 1) -> dict[str, Any]:
    """The trainer's files. Owned by the created Job (when given), so the garbage collector removes it
    with the Job: the operator needs no permission to delete ConfigMaps."""
    meta = metadata(ftj, config_map_name(ftj, attempt))
    if job is not None:
        meta["ownerReferences"] = [owner_reference("batch/v1", "Job", job)]
    # Immutable: the spec that feeds it is immutable too, and kubelets need not watch it.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": configs.config_files(ftj, attempt),
    }


def _volumes(ftj: FineTuneJob, attempt: int) -> list[dict[str, Any]]:
    spec = ftj.spec
    volumes: list[dict[str, Any]] = [
        {
            "name": name,
            "configMap": {
                "name": config_map_name(ftj, attempt),
                "items": [{"key": key, "path": key} for key in keys],
            },
        }
        for name, _, keys in config_volumes(ftj)
    ]
    if spec.shared_memory.enabled:
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if spec.shared_memory.size_limit is not None:
            empty_dir["sizeLimit"] = spec.shared_memory.size_limit
        volumes.append({"name": SHM_VOLUME, "emptyDir": empty_dir})
    if multinode.is_multi_node(ftj):
        volumes.append({"name": RANK_VOLUME, "emptyDir": {"sizeLimit": RANK_VOLUME_SIZE}})
    volumes.extend(_user_volume(volume) for volume in spec.volumes)
    volumes.extend(oci.volumes(ftj))
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


def _volume_mounts(ftj: FineTuneJob) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": name, "mountPath": path, "readOnly": True} for name, path, _ in config_volumes(ftj)
    ]
    if ftj.spec.shared_memory.enabled:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    if multinode.is_multi_node(ftj):
        mounts.append({"name": RANK_VOLUME, "mountPath": configs.RANK_CONFIG_DIR})
    return [*mounts, *_user_mounts(ftj), *oci.trainer_mounts(ftj)]


def _user_mounts(ftj: FineTuneJob) -> list[dict[str, Any]]:
    mounts = []
    for volume in ftj.spec.volumes:
        mount: dict[str, Any] = {
            "name": USER_VOLUME_PREFIX + volume.name,
            "mountPath": volume.mount_path,
            "readOnly": volume.read_only,
        }
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)
    return mounts


def _environment(ftj: FineTuneJob, attempt: int) -> list[dict[str, Any]]:
    # Several ranks: each its own env_config and log, named by its rank (NODE_RANK comes first then).
    # User text as literal(): the kubelet expands $(VAR) and $$ in env values.
    rank = configs.RANK if multinode.is_multi_node(ftj) else None
    wiring = multinode.rank_environment(ftj, attempt) if rank is not None else []
    return [
        *wiring,
        {"name": ep.ENV_OUTPUT_DIR, "value": literal(configs.output_dir(ftj))},
        {"name": ep.ENV_LOG_FILE, "value": configs.log_file_value(ftj, multi_node=rank is not None)},
        *_env_config_environment(ftj),
        {"name": ep.ENV_EXP_CONFIG, "value": f"{configs.EXP_CONFIG_DIR}/{configs.EXP_CONFIG_FILE}"},
        {"name": ep.ENV_PRESCRIPT, "value": f"{configs.SCRIPTS_DIR}/{configs.PRESCRIPT_FILE}"},
        {"name": ep.ENV_POSTSCRIPT, "value": f"{configs.SCRIPTS_DIR}/{configs.POSTSCRIPT_FILE}"},
        *oci.trainer_environment(ftj),
    ]


def _env_config_environment(ftj: FineTuneJob) -> list[dict[str, Any]]:
    """Where the trainer reads env_config: the ConfigMap's file; with several ranks, the rank's own copy
    the entrypoint writes from it (the ConfigMap holds one for all ranks)."""
    shared = f"{configs.ENV_CONFIG_DIR}/{configs.ENV_CONFIG_FILE}"
    if not multinode.is_multi_node(ftj):
        return [{"name": ep.ENV_ENV_CONFIG, "value": shared}]
    return [
        {"name": ep.ENV_ENV_CONFIG_TEMPLATE, "value": shared},
        {"name": ep.ENV_ENV_CONFIG, "value": f"{configs.RANK_CONFIG_DIR}/{configs.ENV_CONFIG_FILE}"},
    ]


def _container(ftj: FineTuneJob, attempt: int) -> dict[str, Any]:
    spec = ftj.spec
    container: dict[str, Any] = {
        "name": ep.CONTAINER_NAME,
        "image": spec.image.reference,
        "imagePullPolicy": spec.image.pull_policy,
        "command": ["/bin/sh", "-c"],
        "args": [literal(ep.ENTRYPOINT)],  # the kubelet would turn the script's own $$ into $
        "env": _environment(ftj, attempt),
        "resources": _resources(spec),
        "volumeMounts": _volume_mounts(ftj),
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


# The SELinux types Pod Security "baseline" lets a container choose (its user and role: none).
BASELINE_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def privileges(given: dict[str, Any]) -> list[str]:
    """What in a container's securityContext Pod Security "baseline" refuses: powers over the node
    beyond a normal container's (capabilities: any added at all)."""
    found = []
    if given.get("privileged") is True:
        found.append("privileged: true")
    added = _field(given, "capabilities", "add")
    if added:
        found.append(f"capabilities.add: {added}")
    for profile in ("seccompProfile", "appArmorProfile"):
        if _field(given, profile, "type") == "Unconfined":
            found.append(f"{profile}.type: Unconfined")
    selinux = given.get("seLinuxOptions")
    if isinstance(selinux, dict):
        if str(selinux.get("type") or "") not in BASELINE_SELINUX_TYPES:
            found.append(f"seLinuxOptions.type: {selinux.get('type')}")
        found.extend(f"seLinuxOptions.{key}: {selinux[key]}" for key in ("user", "role") if selinux.get(key))
    if given.get("procMount") not in (None, "Default"):
        found.append(f"procMount: {given.get('procMount')}")
    if _field(given, "windowsOptions", "hostProcess") is True:
        found.append("windowsOptions.hostProcess: true")
    return found


def _field(given: dict[str, Any], outer: str, inner: str) -> Any:
    value = given.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


# What the model loader and push helpers take of the user's securityContext: who they run as.
IDENTITY_KEYS = ("runAsUser", "runAsGroup", "runAsNonRoot")


def tolerates_everything(tolerations: list[dict[str, Any]]) -> list[str]:
    """Tolerations that let the trainer onto any node, whatever its taints (control-plane nodes too)."""
    found = []
    for toleration in tolerations:
        key = toleration.get("key")
        if toleration.get("operator") == "Exists" and not key:
            found.append("a toleration with operator Exists and no key (every taint)")
        elif key in CONTROL_PLANE_TAINTS:
            found.append(f"a toleration of {key}")
    return found


CONTROL_PLANE_TAINTS = frozenset({"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"})


def _resources(spec: FineTuneJobSpec) -> dict[str, dict[str, str]]:
    # Quantities as strings: the canonical form, and what typed clients insist on.
    given = {"requests": spec.resources.requests, "limits": spec.resources.limits}
    return {kind: {name: str(value) for name, value in values.items()} for kind, values in given.items() if values}


def _pod_spec(ftj: FineTuneJob, attempt: int) -> dict[str, Any]:
    spec = ftj.spec
    pod: dict[str, Any] = {
        "restartPolicy": spec.restart_policy,
        # The trainer needs no Kubernetes API and no service environment variables.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [_container(ftj, attempt)],
        "volumes": _volumes(ftj, attempt),
    }
    # Helpers get the defaults and the user's identity, never the user's powers or relaxations.
    helper_security = security_context({k: v for k, v in spec.security_context.items() if k in IDENTITY_KEYS})
    init = oci.init_containers(ftj, _user_mounts(ftj), helper_security)
    if init:
        pod["initContainers"] = init
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


# A pod taken away from the training (preemption, eviction, a drained node) is no failure of it: the
# Job controller replaces the pod without counting it against backoffLimit.
DISRUPTION_IS_NO_FAILURE = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def job(ftj: FineTuneJob, attempt: int = 1) -> dict[str, Any]:
    """The training Job. No ttlSecondsAfterFinished: the operator runs the TTL itself, after it has
    recorded the final status, so the record survives the Job."""
    spec = ftj.spec
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "suspend": spec.suspend,
        "template": {
            "metadata": {"labels": child_labels(ftj)},
            "spec": _pod_spec(ftj, attempt),
        },
    }
    if spec.restart_policy == "Never":  # the API server allows a podFailurePolicy only then
        job_spec["podFailurePolicy"] = {"rules": [*oci.failure_rules(ftj), dict(DISRUPTION_IS_NO_FAILURE)]}
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    meta = metadata(ftj, job_name(ftj, attempt))
    if spec.active_deadline_seconds is not None and QUEUE_LABEL in meta["labels"]:
        meta["labels"][MAX_EXEC_TIME_LABEL] = str(spec.active_deadline_seconds)
    meta["annotations"] = suspend_annotation(spec.suspend)
    if multinode.is_multi_node(ftj):
        multinode.wire(ftj, job_spec, attempt)
    if multinode.is_multi_node(ftj) or attempt > 1:  # a group's, or one remade with a new node count
        meta["annotations"][ANNOTATION_ATTEMPT] = str(attempt)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def render(ftj: FineTuneJob, attempt: int = 1) -> list[dict[str, Any]]:
    """Everything a FineTuneJob needs: the headless Service of a multi-node one, the Job and its ConfigMap.
    The operator makes them Job first, then the Service and the ConfigMap, both owned by the Job (its
    pods wait for the ConfigMap volume meanwhile, so no rank starts before its Service exists)."""
    made = [job(ftj, attempt), config_map(ftj, attempt=attempt)]
    return [multinode.service(ftj, attempt=attempt), *made] if multinode.is_multi_node(ftj) else made
