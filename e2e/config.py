"""What a local cluster is made of: its settings and the fake nodes they describe (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import GPU_PRESENT_LABEL, KWOK_NODE_ANNOTATION
from .nodeconfig import NODE_KIND_LABEL
from .nodeconfig import NodeCapacity as RealNodeCapacity


@dataclass
class NodeCapacity:
    """Capacity (= allocatable) of each fake node."""

    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    ai100: int = 4
    vgpu: int = 8
    vgpumem: int = 8 * 24576  # MiB: 8 vGPUs of 24 GiB
    vgpumem_percentage: int = 8 * 100

    def resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "phison.com/ai100": str(self.ai100),
            "otterscale.com/vgpu": str(self.vgpu),
            "otterscale.com/vgpumem": str(self.vgpumem),
            "otterscale.com/vgpumem-percentage": str(self.vgpumem_percentage),
        }


@dataclass
class ClusterConfig:
    name: str = "e2e"
    nodes: int = 2
    node_prefix: str = "fake-gpu"
    capacity: NodeCapacity = field(default_factory=NodeCapacity)
    #: Default Pending -> Running delay of a pod (annotation start-delay overrides).
    start_delay: str = "1s"
    #: Default Running -> Succeeded/Failed delay (annotation run-duration overrides).
    run_duration: str = "3s"
    #: Scheduler names served by the kube-scheduler (one profile each).
    scheduler_names: tuple[str, ...] = ("default-scheduler", "hami-scheduler")
    workdir: Path | None = None
    #: Add one real node (kubelet + containerd, e2e/realnode.py) beside the fake ones.
    real_node: bool = False
    real_node_capacity: RealNodeCapacity = field(default_factory=RealNodeCapacity)
    #: Build the toolchain first when a binary is missing.
    build: bool = True
    ready_timeout: float = 180.0


def node_manifests(config: ClusterConfig) -> list[dict[str, Any]]:
    """The fake nodes: kwok manages them by annotation; the label marks them as GPU nodes."""
    resources = config.capacity.resources()
    return [_node(f"{config.node_prefix}-{i}", resources) for i in range(config.nodes)]


def _node(name: str, resources: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                NODE_KIND_LABEL: "kwok",
                GPU_PRESENT_LABEL: "true",
            },
        },
        "spec": {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }
