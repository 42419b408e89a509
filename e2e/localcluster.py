"""A local Kubernetes control plane for the e2e tests, run as plain processes.

``LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok on 127.0.0.1 (free ports, one work dir per cluster, certificates made with openssl),
then creates fake GPU nodes that kwok keeps Ready; it can also SIGKILL and restart one of
those processes with the same arguments. ``Cluster`` is a handle on any cluster reachable
through a kubeconfig (the local one, or e.g. kind through ``E2E_KUBECONFIG``) with small
kubectl helpers for tests; its kwok helpers (fake logs, held or failing pods) need the
local cluster.

Pod lifecycle on the fake nodes (see ``e2e/kwok/stages.yaml``), driven by pod annotations:

* ``e2e.finetune.aidaptiv.io/start-delay``  Pending -> Running after this Go duration.
* ``e2e.finetune.aidaptiv.io/run-duration`` Running -> Succeeded after this duration
  (pods with restartPolicy Never/OnFailure, i.e. Job pods; others stay Running).
* ``e2e.finetune.aidaptiv.io/fail: "true"`` ends Failed instead (``exit-code``, default 1;
  ``fail-message``).
* ``e2e.finetune.aidaptiv.io/hold: "true"`` stays Running until the annotation is removed.

This module gathers the public names; the code lives in ``common`` (names, errors, polling),
``config`` (settings, fake nodes), ``commands`` (command lines, pure), ``pki`` (openssl,
kubeconfig), ``processes`` (start and stop by pid, state file), ``handle`` and
``kwok_helpers`` (``Cluster``), ``fakes`` (log files, Job manifests) and ``controlplane``
(``LocalCluster``). Standard library only (the tests may use more).
"""

from __future__ import annotations

from .commands import Component, Layout, Ports
from .common import (
    COMPLETE_MESSAGE_ANNOTATION,
    COMPONENTS,
    ENV_MARKER,
    EXIT_CODE_ANNOTATION,
    FAIL_ANNOTATION,
    FAIL_MESSAGE_ANNOTATION,
    FAIL_NAMESPACES_KEY,
    GPU_PRESENT_LABEL,
    HOLD_ANNOTATION,
    HOLD_NAMESPACES_KEY,
    KWOK_NODE_ANNOTATION,
    NAMESPACE_LABEL,
    POD_END_STAGES,
    PREFIX,
    RUN_DURATION_ANNOTATION,
    START_DELAY_ANNOTATION,
    ClusterError,
    ProcessExited,
    clusters_root,
    log,
    parse_duration_ms,
    wait_until,
)
from .config import ClusterConfig, NodeCapacity, RealNodeCapacity, node_manifests
from .controlplane import LocalCluster, reap_stale_clusters
from .fakes import DEFAULT_IMAGE, append_log, cri_log_lines, job_manifest
from .handle import Cluster, external_cluster, find_kubectl
from .nodeconfig import NODE_COMPONENTS, NODE_KIND_LABEL, NODE_NAME, REAL_NODE_TAINT
from .pki import make_pki, write_kubeconfig
from .processes import ProcessRecord

__all__ = [
    "COMPLETE_MESSAGE_ANNOTATION",
    "COMPONENTS",
    "DEFAULT_IMAGE",
    "ENV_MARKER",
    "EXIT_CODE_ANNOTATION",
    "FAIL_ANNOTATION",
    "FAIL_MESSAGE_ANNOTATION",
    "FAIL_NAMESPACES_KEY",
    "GPU_PRESENT_LABEL",
    "HOLD_ANNOTATION",
    "HOLD_NAMESPACES_KEY",
    "KWOK_NODE_ANNOTATION",
    "NAMESPACE_LABEL",
    "NODE_COMPONENTS",
    "NODE_KIND_LABEL",
    "NODE_NAME",
    "POD_END_STAGES",
    "PREFIX",
    "REAL_NODE_TAINT",
    "RUN_DURATION_ANNOTATION",
    "START_DELAY_ANNOTATION",
    "Cluster",
    "ClusterConfig",
    "ClusterError",
    "Component",
    "Layout",
    "LocalCluster",
    "NodeCapacity",
    "Ports",
    "ProcessExited",
    "ProcessRecord",
    "RealNodeCapacity",
    "append_log",
    "clusters_root",
    "cri_log_lines",
    "external_cluster",
    "find_kubectl",
    "job_manifest",
    "log",
    "make_pki",
    "node_manifests",
    "parse_duration_ms",
    "reap_stale_clusters",
    "wait_until",
    "write_kubeconfig",
]
