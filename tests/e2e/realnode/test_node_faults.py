"""Faults under a real training: a rank's container killed (gang retry), the kubelet and containerd
killed and started again (the training goes on)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e import localcluster as lc
from e2e import realnode
from tests.e2e.helpers import condition, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode, container_state, wait_file_contains
from tests.e2e.realnode.test_finetunejob import pods_of, run_log, trainer_spec
from tests.rule_cases import finetunejob

# The first attempt of each rank hangs (a marker file on the shared volume remembers it); later ones train.
FIRST_ATTEMPT_HANGS = """\
marker="/mnt/out/attempted-rank-${NODE_RANK:-0}"
if [ ! -e "$marker" ]; then : > "$marker"; export PHISONAI2_STANDIN_BEHAVIOUR=hang; fi
export PHISONAI2_STANDIN_STEP_SECONDS=0.2
"""


def _container_id(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return str(next(s["containerID"] for s in statuses if s["name"] == "trainer")).removeprefix("containerd://")


def test_killing_one_ranks_container_retries_the_whole_group(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    directory, claim = host_volumes("out")
    spec = trainer_spec(real_node, claim, FIRST_ATTEMPT_HANGS, numNodes=2, backoffLimit=1)
    cluster.apply(finetunejob(spec, "gang", namespace))
    ftj = wait_phase(cluster, namespace, "gang", "Running", running, timeout=120)
    uid8 = ftj["metadata"]["uid"][:8]
    for rank in ("0", "1"):
        wait_file_contains(directory / "run" / f"output.gang-{uid8}.rank-{rank}.log", "[PHISON START]")
    rank1 = next(
        p for p in pods_of(cluster, namespace, "gang")
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    )  # fmt: skip
    # Kill rank 1's container as the OOM killer would: SIGKILL to its init, through containerd.
    realnode.RealNode(real_node.cluster).ctr("tasks", "kill", "--signal", "SIGKILL", _container_id(rank1))
    done = wait_phase(cluster, namespace, "gang", "Succeeded", running, timeout=240)
    assert (done["status"]["attempt"], done["status"]["failedAttempts"]) == (2, 1), done["status"]
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    retrying = [
        e for e in cluster.events(namespace) if e["reason"] == "Retrying" and e["involvedObject"]["name"] == "gang"
    ]
    assert retrying and "rank 1" in retrying[0]["message"], retrying
    # Attempt 2 ran under a Job (and rank 0's address) of its own, its ranks meeting through CoreDNS; the
    # failed attempt's Job is kept beside it, with the killed rank's pod and its log (issue 20 #14).
    uid5 = ftj["metadata"]["uid"][:5]
    assert done["status"]["jobName"] == f"gang-a2-{uid5}"
    kept = cluster.get_json("job", "gang", "-n", namespace)
    assert kept is not None and condition(kept, "Failed")["status"] == "True"
    killed = cluster.kubectl("logs", "-n", namespace, rank1["metadata"]["name"]).stdout
    assert "[PHISON START]" in killed, killed[-2000:]


def test_the_training_goes_on_while_the_kubelet_is_killed_and_started_again(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    directory, claim = host_volumes("out")
    prescript = "export PHISONAI2_STANDIN_STEP_SECONDS=0.5 PHISONAI2_STANDIN_ITERATIONS=10\n"
    cluster.apply(
        finetunejob(
            trainer_spec(real_node, claim, prescript, expConfig={"runSettings": {"maxIter": -1}}), "steady", namespace
        )
    )
    ftj = wait_phase(cluster, namespace, "steady", "Running", running, timeout=120)
    log = run_log(directory, ftj)
    wait_file_contains(log, "[PHISON END] Iteration: 0")
    local = real_node.cluster
    assert local.kill_component("kubelet")
    try:
        # The container runs on without its kubelet: its log grows.
        wait_file_contains(log, "[PHISON END] Iteration: 3")
    finally:
        local.start_component("kubelet")
    done = wait_phase(cluster, namespace, "steady", "Succeeded", running, timeout=180)
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    (trainer_pod,) = pods_of(cluster, namespace, "steady")
    assert container_state(trainer_pod, "trainer")["terminated"]["exitCode"] == 0
    assert trainer_pod["status"]["containerStatuses"][0]["restartCount"] == 0
    _node_serves_again(cluster, real_node)


def test_the_training_goes_on_while_containerd_is_killed_and_started_again(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    """The containers' shims outlive containerd; containerd started again finds them."""
    directory, claim = host_volumes("out")
    prescript = "export PHISONAI2_STANDIN_STEP_SECONDS=0.5 PHISONAI2_STANDIN_ITERATIONS=10\n"
    cluster.apply(
        finetunejob(
            trainer_spec(real_node, claim, prescript, expConfig={"runSettings": {"maxIter": -1}}), "steady", namespace
        )
    )
    ftj = wait_phase(cluster, namespace, "steady", "Running", running, timeout=120)
    log = run_log(directory, ftj)
    wait_file_contains(log, "[PHISON END] Iteration: 0")
    local = real_node.cluster
    assert local.kill_component("containerd")
    try:
        wait_file_contains(log, "[PHISON END] Iteration: 3")
    finally:
        local.start_component("containerd")
    done = wait_phase(cluster, namespace, "steady", "Succeeded", running, timeout=180)
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    (trainer_pod,) = pods_of(cluster, namespace, "steady")
    assert container_state(trainer_pod, "trainer")["terminated"]["exitCode"] == 0
    _node_serves_again(cluster, real_node)


def _node_serves_again(cluster: lc.Cluster, real_node: RealNode) -> None:
    """Ready again, its four resources advertised (the device plugin registered again)."""

    def serving() -> bool:
        node = cluster.get_json("node", real_node.name) or {}
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
        )
        allocatable = node.get("status", {}).get("allocatable", {})
        return (
            ready
            and allocatable.get("phison.com/ai100") == "4"
            and allocatable.get("otterscale.com/vgpumem") == str(8 * 24576)
        )

    cluster.wait_for(serving, what=f"node {real_node.name} Ready with its resources", timeout=120)
