"""Starting the operator where FineTuneJobs are not served: one clear line and exit status 2, or, with
--install-crd, the CRD installed and its FineTuneJobs served from the first one on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob


@pytest.fixture
def bare_cluster(cluster: lc.Cluster) -> Iterator[lc.Cluster]:
    """A second local cluster on which no CRD was ever installed (the session's has one)."""
    if not cluster.local:
        pytest.skip("starts a local cluster of its own")
    lc.reap_stale_clusters("pytest-bare-")  # left by a session killed before its teardown
    local = lc.LocalCluster(lc.ClusterConfig(name=f"pytest-bare-{os.getpid()}", nodes=1))
    handle = local.up()
    try:
        yield handle
    finally:
        local.down()


def test_without_the_crd_the_operator_says_how_to_install_it(bare_cluster: lc.Cluster) -> None:
    env = {**os.environ, "KUBECONFIG": str(bare_cluster.kubeconfig)}
    result = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "error: the API server does not serve finetunejobs.finetune.aidaptiv.io/v1alpha1: install the CRD first "
        "(kubectl apply -f crds/, or the Helm chart), or pass --install-crd\n"
    )


def test_the_crd_the_operator_installs_is_watched_from_the_start(bare_cluster: lc.Cluster, tmp_path: Path) -> None:
    """Found by `make demo`: kopf, which resolves its resources once, started before the new CRD was served
    and never watched FineTuneJobs."""
    operator = OperatorProcess(bare_cluster.kubeconfig, tmp_path, ("--install-crd", "--metrics-address", "127.0.0.1"))
    operator.start()
    try:
        namespace = bare_cluster.create_namespace()
        bare_cluster.apply(finetunejob({**LIGHT, "suspend": True}, name="first"), namespace=namespace)
        bare_cluster.wait_for(
            lambda: bare_cluster.get_json("job", "first", "-n", namespace),
            what="the Job of the first FineTuneJob",
            timeout=60,
            state=operator.log,
        )
        assert "Unresolved resources" not in operator.log()
    finally:
        operator.stop()
