"""Failover of the operator on the local control plane: a number, never pass/fail.

  python benchmarks/operator_bench.py [--lifetime 10]

Brings up its own local cluster (`bench-<pid>`): SIGKILL of the active replica -> the standby creates
the Job of a new FineTuneJob, against --peering-lifetime. (Reaction, bursts, API calls, memory and
restarts: benchmarks/scale_bench.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e import localcluster as lc  # noqa: E402
from tests.e2e.operator_process import OperatorProcess  # noqa: E402

PEERING_CRDS = ROOT / "deploy" / "helm" / "finetune-operator" / "crds" / "kopf.dev_peerings.yaml"
CRD = ROOT / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"
LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "10m"}}}


def ftj(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "finetune.aidaptiv.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": LIGHT,
    }


def wait(check: Any, timeout: float, what: str, step: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise TimeoutError(what)


def failover(cluster: lc.Cluster, namespace: str, lifetime: int, workdir: Path) -> float:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cluster.wait_established("clusterkopfpeerings.kopf.dev")
    peering = f"bench-{uuid.uuid4().hex[:6]}"
    cluster.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}})
    args = ("--peering", peering, "--peering-lifetime", str(lifetime), "--metrics-address", "127.0.0.1")
    first = OperatorProcess(cluster.kubeconfig, workdir / "first", args)
    second = OperatorProcess(cluster.kubeconfig, workdir / "second", args)
    first.start()
    second.start()
    try:
        key = f'leader_election_master_status{{name="{peering}"}}'
        wait(lambda: second.samples().get(key) == 0.0 and first.samples().get(key) == 1.0, 60, "roles")
        first.kill()
        killed = time.monotonic()
        cluster.create(ftj("after-failover"), namespace=namespace)
        wait(lambda: cluster.get_json("job", "after-failover", "-n", namespace) is not None, 300, "takeover", 0.1)
        return time.monotonic() - killed
    finally:
        first.kill()
        second.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifetime", type=int, default=10, help="--peering-lifetime of the failover run")
    args = parser.parse_args()
    local = lc.LocalCluster(lc.ClusterConfig(name=f"bench-{os.getpid()}", run_duration="2s"))
    cluster = local.up()
    report: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.wait_established("finetunejobs.finetune.aidaptiv.io")
        with tempfile.TemporaryDirectory() as tmp:
            seconds = failover(cluster, cluster.create_namespace(), args.lifetime, Path(tmp))
        report["failover_seconds"] = {"peering_lifetime": args.lifetime, "kill_to_job_created": round(seconds, 1)}
    finally:
        local.down()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
