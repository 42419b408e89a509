"""Multi-node training on the real node (both ranks there): the ranks find each other through the
operator's headless Service (CoreDNS) and meet over TCP before training."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from e2e import localcluster as lc
from tests.e2e.helpers import condition, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode, container_state
from tests.e2e.realnode.test_finetunejob import pods_of, trainer_spec
from tests.rule_cases import finetunejob


def test_two_ranks_rendezvous_through_the_headless_service_and_succeed(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    directory, claim = host_volumes("out")
    spec = trainer_spec(real_node, claim, "export PHISONAI2_STANDIN_STEP_SECONDS=0.2\n", numNodes=2)
    spec["expConfig"]["processSettings"] = {"masterPort": 29500}
    # The rank's wiring also as a file, which the stand-in reads as the trainer would (env_config).
    spec["envConfig"]["pathSettings"]["multiNodeEnvPath"] = "/mnt/out/run/multi.env"
    cluster.apply(finetunejob(spec, "pair", namespace))
    done = wait_phase(cluster, namespace, "pair", "Succeeded", running, timeout=180)
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    pods = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p
        for p in pods_of(cluster, namespace, "pair")
    }
    assert sorted(pods) == ["0", "1"]
    assert {p["spec"]["nodeName"] for p in pods.values()} == {real_node.name}
    uid8 = done["metadata"]["uid"][:8]
    logs = {rank: (directory / "run" / f"output.pair-{uid8}.rank-{rank}.log").read_text() for rank in ("0", "1")}
    master = f"pair-0.pair.{namespace}.svc"
    # Rank 1 reached rank 0 by its name (resolved by CoreDNS from the headless Service) and both met.
    assert f"[INFO] rank 1 joined rank 0 at {master}:29500" in logs["1"], logs["1"]
    assert re.search(r"\[INFO\] rank 1 joined from 10\.245\.\d+\.\d+", logs["0"]), logs["0"]
    for rank, text in logs.items():
        assert "[INFO] rendezvous complete: 2 nodes, ranks 0,1" in text, text
        assert f"nnodes=2, num_local_procs=1, node_rank={rank}" in text
        assert "[INFO] training complete!" in text
        assert container_state(pods[rank], "trainer")["terminated"]["exitCode"] == 0
    for rank in ("0", "1"):  # written by each rank's entrypoint before its trainer started
        assert (directory / "run" / f"multi.env.rank-{rank}").read_text() == (
            f"MASTER_ADDR={master}\nMASTER_PORT=29500\nNODE_RANK={rank}\nNNODES=2\nNPROC_PER_NODE=1\nWORLD_SIZE=2\n"
        )
    # Only rank 0 saves the model.
    assert sorted(p.name for p in (directory / "run").iterdir() if p.is_dir()) == [
        "checkpoint-epoch-1",
        "checkpoint-epoch-2",
    ]
