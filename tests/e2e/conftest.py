"""Fixtures of the e2e tests: a real Kubernetes control plane.

* ``cluster`` (session): brings up the local cluster of ``e2e/cluster`` once per session
  (building the toolchain first if it is missing) and tears it down at the end; or, when
  ``E2E_KUBECONFIG`` is set, uses that existing cluster (e.g. kind) and leaves it alone.
  It is an ``e2e.localcluster.Cluster``: ``.kubeconfig``, ``.kubectl(*args)``,
  ``.apply(manifest)``, ``.get_json(...)``, ``.wait_job_finished(...)``, the kwok helpers
  ``.fake_logs(...)``, ``.hold_namespace(...)``, ``.fail_namespace(...)``, ... (``.local``
  tells whether kwok helpers work).
* ``local_cluster``: the same, but skips the test on an external cluster.
* ``local_control_plane``: the ``e2e.localcluster.LocalCluster`` behind ``local_cluster`` (also
  ``lc.LocalCluster.of(cluster)``), to SIGKILL and restart one of its processes with the same
  arguments: ``.kill_component("kube-apiserver")``, ``.start_component("etcd")``,
  ``.wait_healthy()``. A test that kills something restarts it.
* ``namespace`` (per test): a fresh namespace, deleted after the test.
* ``operator_image`` (session): the operator's container image of this checkout (``scripts/image
  build``, `make image`: rebuilt only when its inputs changed); skips where it cannot be built (not
  root, outside CI).

Every test under tests/e2e is marked ``e2e``, so ``pytest -m "not e2e"`` needs no cluster.
Environment: ``E2E_KUBECONFIG`` (use an existing cluster), ``E2E_CLUSTER_NAME`` (name of the
local cluster, default "pytest-<pid>"), ``E2E_KEEP_CLUSTER=1`` (leave the local cluster running).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from e2e import localcluster as lc  # noqa: E402
from tests.e2e.operator_process import OperatorProcess  # noqa: E402

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Iterator[lc.Cluster]:
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        handle = lc.external_cluster(external)
        handle.kubectl("get", "--raw", "/readyz")
        yield handle
        return
    # One cluster per session, named after this process so concurrent sessions do not meet;
    # clusters of sessions that died before their teardown are removed first.
    lc.reap_stale_clusters("pytest-")
    local = lc.LocalCluster(lc.ClusterConfig(name=os.environ.get("E2E_CLUSTER_NAME") or f"pytest-{os.getpid()}"))
    try:
        handle = local.up()
    except (lc.ClusterError, TimeoutError) as exc:
        pytest.fail(f"could not bring the local cluster up: {exc}", pytrace=False)
    try:
        yield handle
    finally:
        if os.environ.get("E2E_KEEP_CLUSTER") == "1":
            lc.log(f"E2E_KEEP_CLUSTER=1: leaving cluster {local.config.name!r} up ({local.kubeconfig})")
        else:
            local.down()


@pytest.fixture
def local_cluster(cluster: lc.Cluster) -> lc.Cluster:
    if not cluster.local:
        pytest.skip("needs the local kwok cluster (fake GPU nodes, fake logs); E2E_KUBECONFIG is set")
    return cluster


@pytest.fixture
def local_control_plane(local_cluster: lc.Cluster) -> lc.LocalCluster:
    return lc.LocalCluster.of(local_cluster)


@pytest.fixture
def namespace(cluster: lc.Cluster) -> Iterator[str]:
    name = cluster.create_namespace()
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


# -- the operator under test ------------------------------------------------------------

CRD_FILE = REPO_ROOT / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"


@pytest.fixture(scope="session")
def crd(cluster: lc.Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.wait_established("finetunejobs.finetune.aidaptiv.io")


_SHARED_OPERATORS: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def operator(cluster: lc.Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        ("--log-interval", "1", "--metrics-address", "127.0.0.1", "--install-crd"),
    )
    _SHARED_OPERATORS.append(process)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def without_shared_operator() -> None:
    """Stops the session's operator if a test before started it, for tests of operators with another
    identity or peering that must be the only ones acting; `running` starts it again."""
    for process in _SHARED_OPERATORS:
        process.stop()


@pytest.fixture
def running(operator: OperatorProcess) -> OperatorProcess:
    """The operator, started again if a test before this one killed it."""
    if operator.process is None or operator.process.poll() is not None:
        operator.start()
    return operator


@pytest.fixture(scope="session")
def operator_image() -> str:
    """The image of this checkout: built by `scripts/image build` unless its inputs are unchanged."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("building and running the image here needs root (rootful buildah and podman)")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "image"), "build"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/image build failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result.stdout.strip().splitlines()[-1]
