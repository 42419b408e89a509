"""One FineTuneJob across N nodes: a headless Service and an Indexed Job whose ranks the operator wires.

Each rank is one pod of an Indexed Job: the Job controller names it `<job>-<index>` as host, and the
headless Service (`subdomain`) makes that resolvable as `<job>-<index>.<service>.<namespace>.svc`,
before the pod is Ready (`publishNotReadyAddresses`), so rank 0 is reachable while the others start.
Every rank learns the group from its environment, under the names torchrun and Kubeflow use; the
trainer's own `multi_node_settings` in exp_config.yaml points at rank 0. One rank's failure ends the
attempt at once (`podFailurePolicy: FailJob`), so no rank hangs in a collective waiting for a peer
that is gone; the operator then starts a new attempt of all ranks (backoffLimit counts attempts).
"""

from __future__ import annotations

from typing import Any

from finetune_operator.api.base import TRAINER_CONTAINER
from finetune_operator.api.resource import FineTuneJob, rank_zero_address
from finetune_operator.render.expansion import literal
from finetune_operator.render.objects import job_name, metadata, owner_reference, selector_labels

# Set by the Job controller on each pod of an Indexed Job.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# Set by the Job controller on each of its pods: the Job's uid, which no earlier or foreign pod carries.
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
ENV_MULTI_NODE_FILE = "FTO_MULTI_NODE_ENV_FILE"
# The variables every rank gets (and again with the PET_ prefix of torchrun's elastic agent and Kubeflow).
RANK_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES", "NPROC_PER_NODE", "WORLD_SIZE")
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def is_multi_node(ftj: FineTuneJob) -> bool:
    return ftj.spec.num_nodes > 1


def master_address(ftj: FineTuneJob, attempt: int = 1) -> str:
    """Where rank 0 of this attempt runs, as every rank (and the trainer's exp_config) is told."""
    return rank_zero_address(job_name(ftj, attempt), ftj.metadata.namespace)


def multi_node_settings(ftj: FineTuneJob, attempt: int = 1) -> dict[str, Any]:
    """exp_config's process_settings.multi_node_settings for this FineTuneJob's attempt."""
    given = ftj.spec.exp_config.process_settings.multi_node_settings
    if not is_multi_node(ftj):
        return given.model_dump(mode="python")  # numNodes 1: the chart's manual mode, as given
    return {"enable": True, "master_addr": master_address(ftj, attempt)}


def service(ftj: FineTuneJob, job: dict[str, Any] | None = None, attempt: int = 1) -> dict[str, Any]:
    """The headless Service that gives each rank a name, named like its Job (the pods' subdomain). Made
    for one attempt's Job (when given): owned by it, so it goes with the attempt's Job, and selecting
    only that Job's pods by the controller-uid label the Job controller sets, so that no other pod with
    the FineTuneJob's labels is published under a rank's name."""
    port = ftj.spec.exp_config.process_settings.master_port
    meta = metadata(ftj, job["metadata"]["name"] if job is not None else job_name(ftj, attempt))
    selector = selector_labels(ftj)
    if job is not None:
        meta["ownerReferences"] = [owner_reference("batch/v1", "Job", job)]
        selector = {**selector, JOB_CONTROLLER_UID_LABEL: job["metadata"]["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": "master", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def rank_environment(ftj: FineTuneJob, attempt: int = 1) -> list[dict[str, Any]]:
    spec = ftj.spec
    gpus = spec.exp_config.process_settings.num_gpus
    rank: dict[str, Any] = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
    values: dict[str, dict[str, Any]] = {
        "MASTER_ADDR": {"value": master_address(ftj, attempt)},
        "MASTER_PORT": {"value": str(spec.exp_config.process_settings.master_port)},
        "NODE_RANK": {"valueFrom": rank},
        "NNODES": {"value": str(spec.num_nodes)},
        "NPROC_PER_NODE": {"value": str(gpus)},
        "WORLD_SIZE": {"value": str(spec.num_nodes * gpus)},
    }
    env = [{"name": name, **values[name]} for name in RANK_VARIABLES]
    env += [{"name": f"PET_{name}", **values[name]} for name in RANK_VARIABLES]
    path = spec.env_config.path_settings.multi_node_env_path
    if path:
        # Each rank's own file (the same name its env_config gives the trainer), never shared.
        env.append({"name": ENV_MULTI_NODE_FILE, "value": f"{literal(path)}.rank-$(NODE_RANK)"})
    return env


def _ranks_apart(ftj: FineTuneJob) -> dict[str, Any]:
    # Preferred, not required: each rank asks for its node's GPUs anyway, and a cluster with fewer
    # free nodes than ranks then still runs (packed) instead of waiting forever.
    term = {"labelSelector": {"matchLabels": selector_labels(ftj)}, "topologyKey": HOSTNAME_TOPOLOGY}
    return {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}


def wire(ftj: FineTuneJob, job_spec: dict[str, Any], attempt: int = 1) -> None:
    """Turn a single-pod Job spec into the Indexed Job of all ranks (in place)."""
    nodes = ftj.spec.num_nodes
    pod = job_spec["template"]["spec"]
    job_spec.update(completionMode="Indexed", completions=nodes, parallelism=nodes)
    # Attempts of the whole group are the operator's (a new Job each); the Job itself never retries.
    job_spec["backoffLimit"] = 0
    job_spec["podFailurePolicy"]["rules"].append(
        {"action": "FailJob", "onExitCodes": {"containerName": TRAINER_CONTAINER, "operator": "NotIn", "values": [0]}}
    )
    pod["subdomain"] = job_name(ftj, attempt)  # the Service is named like the Job
    affinity = dict(pod.get("affinity") or {})
    # Ranks on different nodes, unless the user placed them themselves.
    affinity.setdefault("podAntiAffinity", _ranks_apart(ftj))
    pod["affinity"] = affinity
