"""The demo's training: examples/basic.yaml on the local cluster, with a trainer log that grows.

No aiDAPTIV image runs on kwok's fake nodes, so kwok serves a synthetic trainer log (in the real
format) as the pod's `kubectl logs`, and this script appends to it step by step while the pod is
held Running. The operator reads it like any other log: Progress, Loss and ETA move.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e import localcluster as lc  # noqa: E402

NAMESPACE = "demo"
NAME = "finetune-llama-job"
LOG = ROOT / "tests" / "fixtures" / "logs" / "two-epochs-capped.log"


COLUMNS = (
    "NAME:.metadata.name,PHASE:.status.phase,PROGRESS:.status.trainerStatus.progressPercentage,"
    'LOSS:.status.trainerStatus.metrics[?(@.name=="loss")].value,ETA:.status.trainerStatus.estimatedRemainingTime'
)


def show(cluster: lc.Cluster, last: list[str]) -> str:
    """Print the FineTuneJob's row (the printer columns less AGE) each time it changes; its phase."""
    args = ("get", "finetunejobs", NAME, "-n", NAMESPACE, "-o", f"custom-columns={COLUMNS}")
    table = cluster.kubectl(*args, check=False).stdout.splitlines()
    if len(table) == 2 and table[1] != (last[0] if last else None):
        if not last:
            print(table[0])
        print(table[1], flush=True)
        last[:] = [table[1]]
    return last[0].split()[1] if last else ""


def main(name: str) -> int:
    cluster = lc.LocalCluster(lc.ClusterConfig(name=name)).handle()
    if cluster.get_json("namespace", NAMESPACE) is not None:
        cluster.delete_namespace(NAMESPACE, wait=True)
    cluster.kubectl("create", "namespace", NAMESPACE)
    log = Path(cluster.workdir or ROOT) / "demo-trainer.log"
    log.write_text("")
    cluster.fake_logs(NAMESPACE, log)
    cluster.hold_namespace(NAMESPACE)
    print(f"$ kubectl apply -n {NAMESPACE} -f examples/basic.yaml")
    print(cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "basic.yaml")).stdout, flush=True)

    last: list[str] = []
    lines = LOG.read_text().splitlines()
    deadline = time.monotonic() + 60
    while show(cluster, last) != "Running" and time.monotonic() < deadline:
        time.sleep(0.5)
    for start in range(0, len(lines), 4):
        lc.append_log(log, "\n".join(lines[start : start + 4]))
        for _ in range(6):
            show(cluster, last)
            time.sleep(0.5)
    cluster.release_namespace(NAMESPACE)
    deadline = time.monotonic() + 60
    while show(cluster, last) not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    return 0 if show(cluster, last) == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo"))
