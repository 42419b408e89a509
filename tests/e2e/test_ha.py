"""Two operator replicas with kopf peering: exactly one acts; when it is killed, the other takes over."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

ROOT = Path(__file__).resolve().parents[2]
PEERING_CRDS = ROOT / "deploy" / "helm" / "finetune-operator" / "crds" / "kopf.dev_peerings.yaml"
LIFETIME = 6  # seconds: how long a killed replica still counts as alive


def replica(cluster: lc.Cluster, peering: str, namespace: str, log_dir: Path) -> OperatorProcess:
    # Watching only the test's namespace: a cluster-wide replica would also act on what earlier tests
    # left in namespaces being deleted, and the counts below are of this test's work alone.
    args = ("--namespace", namespace, "--peering", peering, "--peering-lifetime", str(LIFETIME), "--log-interval", "1")
    process = OperatorProcess(cluster.kubeconfig, log_dir, (*args, "--metrics-address", "127.0.0.1"))
    process.start()
    return process


def leader(process: OperatorProcess, peering: str) -> float | None:
    return process.samples().get(f'leader_election_master_status{{name="{peering}"}}')


def test_one_replica_acts_and_the_other_takes_over_when_it_is_killed(
    cluster: lc.Cluster, crd: None, without_shared_operator: None, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cluster.wait_established("kopfpeerings.kopf.dev")
    peering = f"ha-{uuid.uuid4().hex[:6]}"
    cluster.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering}}, namespace)

    first = replica(cluster, peering, namespace, tmp_path / "first")
    second = replica(cluster, peering, namespace, tmp_path / "second")  # younger: it stands by
    try:
        cluster.wait_for(
            lambda: leader(first, peering) == 1.0 and leader(second, peering) == 0.0,
            what="the first replica to be active and the second to stand by",
            timeout=30,
            state=lambda: str(cluster.get_json("kopfpeering", peering, "-n", namespace)) + second.log()[-3000:],
        )
        peers = (cluster.get_json("kopfpeering", peering, "-n", namespace) or {}).get("status") or {}
        assert len(peers) == 2, peers
        cluster.apply(finetunejob(LIGHT, name="before"), namespace=namespace)
        wait_phase(cluster, namespace, "before", "Succeeded", first, second)
        assert first.api_requests().get("create_job") == 1
        assert second.api_requests().get("create_job", 0) == 0
        assert second.api_requests().get("patch_status", 0) == 0
        assert "Resuming operations" not in second.log()

        first.kill()
        killed_at = time.monotonic()
        cluster.apply(finetunejob(LIGHT, name="after"), namespace=namespace)
        wait_phase(cluster, namespace, "after", "Succeeded", second, timeout=90)
        lc.log(f"takeover: 'after' Succeeded {time.monotonic() - killed_at:.1f}s after SIGKILL (lifetime {LIFETIME}s)")
        assert second.api_requests().get("create_job") == 1
        assert leader(second, peering) == 1.0
        assert "Resuming operations after the pause" in second.log()
    finally:
        first.kill()
        second.stop()
        cluster.kubectl("delete", "kopfpeering", peering, "-n", namespace, "--ignore-not-found")
