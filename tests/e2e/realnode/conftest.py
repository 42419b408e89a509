"""Fixtures of the real-node tests (real containers: kubelet + containerd + runc on this machine).

* ``real_node`` (session): the session cluster's real node, started on first use
  (``LocalCluster.add_real_node``) and stopped with the cluster. Where the machine cannot run one
  (not root, no cgroup v1, ``FTO_REAL_NODE=0``) every test using it is skipped with the reason, which
  pytest's summary prints (``-ra``); where it can, a node that fails to start is an error, not a skip.
  With ``E2E_KUBECONFIG`` of an ``e2e/cluster up --real-node`` cluster its node is used as it is.
* ``host_volumes``: makes hostPath PersistentVolumes on the node's disk for a test's namespace
  (``host_volumes(name)`` -> (host dir, claim name)), deleted after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import localcluster as lc
from e2e import realnode
from tests.e2e.realnode.nodes import RealNode, delete_host_volumes, host_volume


@pytest.fixture(scope="session")
def real_node(cluster: lc.Cluster) -> RealNode:
    if not cluster.local:
        pytest.skip("needs a local cluster of e2e/cluster (E2E_KUBECONFIG names another cluster)")
    local = lc.LocalCluster.of(cluster)
    if not (local.load_state() or {}).get("real_node"):
        reason = realnode.unsupported_reason()
        if reason:
            pytest.skip(f"no real node on this machine: {reason}")
        try:
            local.add_real_node()
        except (lc.ClusterError, TimeoutError) as exc:
            pytest.fail(f"the real node did not start: {exc}", pytrace=False)
    return RealNode.of(local)


@pytest.fixture
def host_volumes(
    cluster: lc.Cluster, real_node: RealNode, namespace: str
) -> Iterator[Callable[[str], tuple[Path, str]]]:
    def make(name: str) -> tuple[Path, str]:
        return host_volume(cluster, real_node, namespace, name)

    try:
        yield make
    finally:
        delete_host_volumes(cluster, namespace)
