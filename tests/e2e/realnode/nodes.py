"""What the real-node tests share: the node's facts, pods and FineTuneJobs placed on it, host volumes."""

from __future__ import annotations

import copy
import json
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e import build_toolchain, nodeconfig, ociarchive, realnode
from e2e import localcluster as lc

#: Pods and FineTuneJobs choose the real node by its label and tolerate its taint.
NODE_SELECTOR = {nodeconfig.NODE_KIND_LABEL: "real"}
TOLERATIONS = [{"key": nodeconfig.REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]


@dataclass(frozen=True)
class RealNode:
    """The session's real node, as its cluster's state.json records it."""

    name: str
    node_ip: str
    bridge: str
    trainer_image: str
    pause_image: str
    crane_image: str
    registry: str
    cluster: lc.LocalCluster

    @property
    def root(self) -> Path:
        """The node's directory on the host (removed with the cluster)."""
        return self.cluster.workdir / "node"

    @classmethod
    def of(cls, local: lc.LocalCluster) -> RealNode:
        state = (local.load_state() or {}).get("real_node") or {}
        images = state["images"]
        return cls(
            name=state["node_name"],
            node_ip=state["node_ip"],
            bridge=state["bridge"],
            trainer_image=images["trainer"],
            pause_image=images["pause"],
            crane_image=images["crane"],
            registry=f"127.0.0.1:{state['ports']['registry']}",
            cluster=local,
        )

    def image_parts(self) -> dict[str, str]:
        """The trainer image as a FineTuneJob's `image` (imported into containerd: never pulled)."""
        repository, tag = self.trainer_image.rsplit(":", 1)
        return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def on_real_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec (or FineTuneJob spec) with the real node's selector and toleration."""
    spec = copy.deepcopy(pod_spec)
    spec.setdefault("nodeSelector", {}).update(NODE_SELECTOR)
    spec["tolerations"] = [*spec.get("tolerations", []), *TOLERATIONS]
    return spec


def pod(name: str, node: RealNode, script: str, **spec: Any) -> dict[str, Any]:
    """A pod on the real node running ``script`` under /bin/sh in the stand-in trainer's image."""
    container = {
        "name": "main",
        "image": node.trainer_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", script],
    }
    container.update(spec.pop("container", {}))
    body = on_real_node({"restartPolicy": "Never", "containers": [container], **spec})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def host_volume(cluster: lc.Cluster, node: RealNode, namespace: str, name: str) -> tuple[Path, str]:
    """A PersistentVolume on the node's disk (hostPath, a directory any uid may write) bound to a claim
    ``name`` in ``namespace``; returns (host directory, claim name). The PV is labelled for cleanup."""
    directory = node.root / "volumes" / f"{namespace}-{name}"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o1777)
    cluster.apply(nodeconfig.host_volume_manifests(directory, namespace, name, {lc.NAMESPACE_LABEL: namespace}))
    cluster.wait_for(
        lambda: (cluster.get_json("pvc", name, "-n", namespace) or {}).get("status", {}).get("phase") == "Bound",
        what=f"PVC {namespace}/{name} bound",
        timeout=60,
    )
    return directory, name


def delete_host_volumes(cluster: lc.Cluster, namespace: str) -> None:
    """Delete the namespace's claims and their PVs without waiting: the protection finalizers hold them
    until no pod uses them (the namespace's deletion ends its pods)."""
    cluster.kubectl("delete", "pvc", "--all", "-n", namespace, "--wait=false", check=False)
    selector = f"{lc.NAMESPACE_LABEL}={namespace}"
    cluster.kubectl("delete", "pv", "-l", selector, "--ignore-not-found", "--wait=false", check=False)


def logs(cluster: lc.Cluster, namespace: str, pod_name: str, container: str | None = None) -> str:
    args = ["logs", "-n", namespace, pod_name] + (["-c", container] if container else [])
    return cluster.kubectl(*args).stdout


def container_state(pod_object: dict[str, Any], container: str = "main") -> dict[str, Any]:
    statuses = pod_object.get("status", {}).get("containerStatuses", [])
    found: dict[str, Any] = next((s for s in statuses if s["name"] == container), {})
    return dict(found.get("state", {}))


def wait_file_contains(path: Path, text: str, bound: int = 600, interval: float = 0.2) -> str:
    """Poll a host file (bounded by count) until it contains ``text``; return its content."""
    content = ""
    for _ in range(bound):
        if path.exists():
            content = path.read_text(errors="replace")
            if text in content:
                return content
        time.sleep(interval)
    raise AssertionError(f"{path} never contained {text!r}; last content:\n{content[-3000:]}")


def describe_pod(cluster: lc.Cluster, namespace: str, name: str) -> str:
    return cluster.describe("pod", name, "-n", namespace) + "\n" + json.dumps(cluster.events(namespace)[-10:])


def push_image(node: RealNode, reference: str, files: dict[str, bytes], work: Path) -> str:
    """Push a one-layer image holding ``files`` to the node's registry (its name ``<registry>/<reference>``)
    with the toolchain's crane; return the full reference."""
    image = ociarchive.empty_image().add_layer([ociarchive.FileEntry(n, d) for n, d in files.items()], "test files")
    full = f"{node.registry}/{reference}"
    archive = work / "image.oci.tar"
    ociarchive.write_archive(image, full, archive)
    layout = work / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    crane = build_toolchain.bin_dir() / "crane"
    pushed = subprocess.run(
        [str(crane), "push", "--insecure", str(layout), full], capture_output=True, text=True, timeout=120
    )
    assert pushed.returncode == 0, pushed.stderr
    return full


def wait_pod_gone_from_node(cluster: lc.Cluster, node: RealNode, uid: str, timeout: float = 150) -> None:
    """Wait until nothing of pod ``uid`` is on the node: no container in containerd, no directory under
    the kubelet's root dir (its garbage collection, every minute, removes what the pod worker left)."""
    handle = realnode.RealNode(node.cluster)

    def containers() -> list[str]:
        listed = handle.ctr("containers", "ls", "-q").stdout.split()
        return [c for c in listed if uid in handle.ctr("containers", "info", c, check=False).stdout]

    cluster.wait_for(
        lambda: not containers() and not (node.cluster.workdir / "kubelet" / "pods" / uid).exists(),
        what=f"the containers and the kubelet's directory of pod {uid} removed",
        timeout=timeout,
        interval=2,
        state=lambda: f"containers: {containers()}",
    )
