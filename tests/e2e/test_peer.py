"""The peer of the benchmark (e2e/peer.py): Kubeflow Trainer v2.2.0 and JobSet v0.11.1 as processes beside
the local cluster. A TrainJob on the runtime of 1 ai100 becomes a JobSet, a batch Job and a pod Running
on a kwok GPU node; stopped, the managers are gone and their webhooks unregistered."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.peer import AI100, JOBSET_POD_LABEL, JOBSET_VERSION, RUNTIME, WEBHOOK_CONFIGURATIONS, Peer, trainjob

from e2e import localcluster as lc
from e2e import processes


@pytest.fixture(scope="module")
def peer(cluster: lc.Cluster) -> Iterator[Peer]:
    """Both managers, for this module only (their webhooks see the peer's kinds and JobSets' pods only)."""
    if not cluster.local:
        pytest.skip("needs the local cluster (the peer runs beside it as processes)")
    started = Peer(lc.LocalCluster.of(cluster))
    started.start()
    yield started
    started.stop()


def _owner_kinds(thing: dict[str, Any]) -> list[str]:
    return [owner["kind"] for owner in thing["metadata"].get("ownerReferences") or []]


def test_a_trainjob_becomes_a_jobset_a_job_and_a_pod_running_on_a_kwok_gpu_node(
    cluster: lc.Cluster, peer: Peer, namespace: str
) -> None:
    cluster.hold_namespace(namespace)  # the pod stays Running: what is checked is that it got there
    cluster.apply(trainjob("tj"), namespace=namespace)
    jobset = cluster.wait_for(
        lambda: cluster.get_json("jobsets.jobset.x-k8s.io", "tj", "-n", namespace), what="JobSet tj", timeout=60
    )
    assert (jobset["apiVersion"], _owner_kinds(jobset)) == (JOBSET_VERSION, ["TrainJob"])
    job = cluster.wait_for(
        lambda: cluster.get_json("job", "tj-node-0", "-n", namespace), what="Job tj-node-0", timeout=60
    )
    assert _owner_kinds(job) == ["JobSet"]
    pod = cluster.wait_pod_phase(namespace, ["Running"], selector=f"{JOBSET_POD_LABEL}=tj", timeout=60)
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"][AI100] == "1"
    node = cluster.get_json("node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["type"] == "kwok"
    assert cluster.get_json("clustertrainingruntime", RUNTIME)["metadata"]["name"] == RUNTIME


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stopped_the_managers_are_gone_and_their_webhooks_unregistered(cluster: lc.Cluster, peer: Peer) -> None:
    pids = peer.pids()
    assert len(pids) == 2
    peer.stop()
    try:
        assert [pid for pid in pids if processes.pid_alive(pid)] == []
        assert [p.webhook for p in peer.ports.values() if _listening(p.webhook)] == []
        registered = [
            name
            for (_, kind), name in WEBHOOK_CONFIGURATIONS.items()
            if cluster.get_json(kind.lower(), name) is not None
        ]
        assert registered == []
    finally:
        peer.start()  # the module's other test may run after this one
