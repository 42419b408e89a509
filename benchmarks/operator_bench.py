"""Benchmarks of the operator on the local control plane: numbers, never pass/fail.

  python benchmarks/operator_bench.py [--jobs 50] [--lifetime 10]

Brings up its own local cluster (`bench-<pid>`), then reports:
  * reaction: seconds from `kubectl create` of a FineTuneJob to its Job existing (median, p95, max);
  * throughput: N FineTuneJobs created at once -> all Succeeded (wall clock, kube pods included);
  * API requests the operator made per FineTuneJob, by operation (its own Prometheus counter);
  * reconcile time from controller_runtime_reconcile_time_seconds (sum / count);
  * failover: SIGKILL of the active replica -> the standby creates the Job of a new FineTuneJob,
    against --peering-lifetime.
The machine is shared and noisy: compare runs on one machine, not with a threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def jobs_in(cluster: lc.Cluster, namespace: str) -> set[str]:
    listed = cluster.get_json("jobs", "-n", namespace) or {"items": []}
    return {item["metadata"]["name"] for item in listed["items"]}


def reaction(cluster: lc.Cluster, namespace: str, count: int) -> list[float]:
    def job_exists(name: str) -> bool:
        return cluster.get_json("job", name, "-n", namespace) is not None

    delays = []
    for index in range(count):
        name = f"react-{index}"
        cluster.create(ftj(name), namespace=namespace)
        delays.append(wait(lambda name=name: job_exists(name), 60, name, 0.02))
    return delays


def throughput(cluster: lc.Cluster, namespace: str, count: int) -> float:
    start = time.monotonic()
    cluster.apply([ftj(f"many-{index}") for index in range(count)], namespace=namespace)

    def all_succeeded() -> bool:
        listed = cluster.get_json("finetunejobs", "-n", namespace) or {"items": []}
        phases = [
            (i.get("status") or {}).get("phase") for i in listed["items"] if i["metadata"]["name"].startswith("many-")
        ]
        return len(phases) == count and all(p == "Succeeded" for p in phases)

    wait(all_succeeded, 600, "all Succeeded", 0.5)
    return time.monotonic() - start


def failover(cluster: lc.Cluster, namespace: str, lifetime: int, workdir: Path) -> float:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
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
    parser.add_argument("--jobs", type=int, default=50, help="FineTuneJobs created at once for throughput")
    parser.add_argument("--reactions", type=int, default=20, help="FineTuneJobs created one by one for reaction")
    parser.add_argument("--lifetime", type=int, default=10, help="--peering-lifetime of the failover run")
    args = parser.parse_args()
    local = lc.LocalCluster(lc.ClusterConfig(name=f"bench-{os.getpid()}", run_duration="2s"))
    cluster = local.up()
    report: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/finetunejobs.finetune.aidaptiv.io")
        with tempfile.TemporaryDirectory() as tmp:
            operator = OperatorProcess(cluster.kubeconfig, Path(tmp) / "single", ("--metrics-address", "127.0.0.1"))
            operator.start()
            try:
                namespace = cluster.create_namespace()
                delays = sorted(reaction(cluster, namespace, args.reactions))
                report["reaction_seconds"] = {
                    "median": round(statistics.median(delays), 3),
                    "p95": round(delays[int(0.95 * (len(delays) - 1))], 3),
                    "max": round(delays[-1], 3),
                }
                before = operator.api_requests()
                report["throughput"] = {
                    "jobs": args.jobs,
                    "all_succeeded_seconds": round(throughput(cluster, namespace, args.jobs), 1),
                }
                after = operator.api_requests()
                report["api_requests_per_job"] = {
                    op: round((after[op] - before.get(op, 0)) / args.jobs, 2)
                    for op in sorted(after)
                    if after[op] != before.get(op, 0)
                }
                scraped = operator.samples()
                labels = '{controller="finetunejob"}'
                total = scraped[f"controller_runtime_reconcile_time_seconds_sum{labels}"]
                count = scraped[f"controller_runtime_reconcile_time_seconds_count{labels}"]
                report["reconcile"] = {"count": int(count), "mean_ms": round(1000 * total / count, 1)}
            finally:
                operator.stop()
            report["failover_seconds"] = {
                "peering_lifetime": args.lifetime,
                "kill_to_job_created": round(
                    failover(cluster, cluster.create_namespace(), args.lifetime, Path(tmp)), 1
                ),
            }
    finally:
        local.down()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
