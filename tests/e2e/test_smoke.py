"""Smoke tests of the e2e control plane: scheduler, Job/TTL/GC controllers, logs, CEL.

Pods run on kwok's fake nodes (nothing is executed); the images and commands are still real
so the same tests can run on a kind cluster through E2E_KUBECONFIG.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from e2e import localcluster as lc

pytestmark = pytest.mark.e2e

AI100 = "phison.com/ai100"
VGPU = "otterscale.com/vgpu"
IMAGE = lc.DEFAULT_IMAGE


def gpu_capacity(cluster: lc.Cluster) -> int:
    """Largest phison.com/ai100 allocatable of any node (0 when no node has any)."""
    data = cluster.get_json("nodes")
    return max((int(n["status"].get("allocatable", {}).get(AI100, "0")) for n in data["items"]), default=0)


def test_gpu_job_is_scheduled_on_a_fake_node_and_completes(cluster: lc.Cluster, namespace: str) -> None:
    if gpu_capacity(cluster) == 0:
        pytest.skip(f"no node advertises {AI100}")
    cluster.apply(lc.job_manifest("gpu-job", {AI100: "1", VGPU: "1", "cpu": "100m", "memory": "64Mi"}), namespace)

    assert cluster.wait_job_finished(namespace, "gpu-job") == "Complete", cluster.namespace_state(namespace)
    pods = cluster.pods(namespace, "job-name=gpu-job")
    assert pods, cluster.namespace_state(namespace)
    node_name = pods[0]["spec"]["nodeName"]
    node = cluster.get_json("node", node_name)
    assert node["metadata"]["labels"].get("phison.com/ai100-present") == "true"
    assert int(node["status"]["allocatable"][AI100]) >= 1
    assert pods[0]["status"]["phase"] == "Succeeded"


def test_pod_asking_more_gpus_than_any_node_stays_pending(cluster: lc.Cluster, namespace: str) -> None:
    too_many = str(gpu_capacity(cluster) + 1)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "too-big"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "resources": {"requests": {AI100: too_many}, "limits": {AI100: too_many}},
                }
            ],
        },
    }
    cluster.apply(pod, namespace)

    def failed_scheduling() -> dict[str, Any] | None:
        for event in cluster.events(namespace):
            if event.get("reason") == "FailedScheduling" and event["involvedObject"].get("name") == "too-big":
                return event
        return None

    event = cluster.wait_for(
        failed_scheduling, what="a FailedScheduling event", state=lambda: cluster.namespace_state(namespace)
    )
    assert f"Insufficient {AI100}" in event["message"], event["message"]
    current = cluster.get_json("pod", "too-big", "-n", namespace)
    assert current["status"]["phase"] == "Pending"
    assert not current["spec"].get("nodeName")


def test_ttl_controller_and_garbage_collector(cluster: lc.Cluster, namespace: str) -> None:
    # A finished Job with ttlSecondsAfterFinished is deleted by the TTL controller, and the
    # ConfigMap it owns then goes with it (garbage collector).
    cluster.apply(lc.job_manifest("ttl-job", ttl=1), namespace)
    job = cluster.get_json("job", "ttl-job", "-n", namespace)
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned-by-job",
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "ttl-job", "uid": job["metadata"]["uid"]}
            ],
        },
        "data": {"k": "v"},
    }
    cluster.apply(owned, namespace)
    cluster.wait_for(
        lambda: cluster.get_json("job", "ttl-job", "-n", namespace) is None,
        what="the TTL controller to delete Job ttl-job",
        state=lambda: cluster.namespace_state(namespace),
    )
    cluster.wait_for(
        lambda: cluster.get_json("configmap", "owned-by-job", "-n", namespace) is None,
        what="the garbage collector to delete ConfigMap owned-by-job",
    )

    # Deleting an owner explicitly deletes what it owns.
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    owner = cluster.get_json("configmap", "owner", "-n", namespace)
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
            ],
        },
    }
    cluster.apply(child, namespace)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    cluster.wait_for(
        lambda: cluster.get_json("configmap", "child", "-n", namespace) is None,
        what="the garbage collector to delete ConfigMap child",
    )


def test_kubectl_logs_returns_the_chosen_file(local_cluster: lc.Cluster, namespace: str, tmp_path: Path) -> None:
    log_file = tmp_path / "trainer.log"
    lc.append_log(log_file, "step 1/10 loss=2.0\nstep 2/10 loss=1.5")
    local_cluster.fake_logs(namespace, log_file, pod="logger")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "logger", "annotations": {lc.HOLD_ANNOTATION: "true"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]},
    }
    local_cluster.apply(pod, namespace)
    local_cluster.wait_pod_phase(namespace, ["Running"], pod="logger")

    out = local_cluster.kubectl("logs", "-n", namespace, "logger").stdout
    assert out == "step 1/10 loss=2.0\nstep 2/10 loss=1.5\n"

    # The file is read again at each request: appended lines show up.
    lc.append_log(log_file, "step 3/10 loss=1.1")
    out = local_cluster.kubectl("logs", "-n", namespace, "logger").stdout
    assert out.splitlines()[-1] == "step 3/10 loss=1.1"
    out = local_cluster.kubectl("logs", "-n", namespace, "logger", "--tail=1").stdout
    assert out == "step 3/10 loss=1.1\n"

    # Held pods stay Running until released, then complete.
    assert local_cluster.get_json("pod", "logger", "-n", namespace)["status"]["phase"] == "Running"
    local_cluster.release_pod(namespace, "logger")
    local_cluster.wait_pod_phase(namespace, ["Succeeded"], pod="logger")


def test_crd_cel_rule_refuses_a_bad_object(cluster: lc.Cluster) -> None:
    suffix = uuid.uuid4().hex[:6]
    plural = f"widgets{suffix}"
    group = "e2e.finetune.aidaptiv.io"
    message = "replicas must not exceed maxReplicas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": f"widget{suffix}", "kind": f"Widget{suffix.upper()}"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "replicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.replicas <= self.maxReplicas", "message": message}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.apply(crd)
    try:
        cluster.wait_established(f"{plural}.{group}")

        def widget(name: str, replicas: int) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": f"Widget{suffix.upper()}",
                    "metadata": {"name": name},
                    "spec": {"replicas": replicas, "maxReplicas": 2},
                }
            )

        # kubectl may need a moment to see the new kind in discovery.
        good = cluster.wait_for(
            lambda: cluster.create(widget("good", 1)).returncode == 0 or None,
            what="a valid object of the new CRD to be accepted",
            timeout=60,
        )
        assert good
        bad = cluster.create(widget("bad", 3))
        assert bad.returncode != 0
        assert message in bad.stderr, bad.stderr
        assert cluster.get_json(f"{plural}.{group}", "bad") is None
    finally:
        cluster.kubectl("delete", "crd", f"{plural}.{group}", "--ignore-not-found", "--wait=false", check=False)
