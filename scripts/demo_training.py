"""The demo's training: examples/basic.yaml on the local cluster, with a trainer log that grows.

Where this machine can run a real node (root, cgroup v1: e2e/realnode.py says why not), the training
runs for real: the cluster gets its real kubelet node, and examples/basic.yaml, pointed at that node,
at the stand-in trainer's image (built here: no aiDAPTIV image can be pulled) and at a volume on the
node's disk, runs in a real container whose log grows as it trains. Elsewhere (one line says why) no
aiDAPTIV image runs on kwok's fake nodes, so kwok serves a synthetic trainer log (in the real format)
as the pod's `kubectl logs`, and this script appends to it step by step while the pod is held Running.
The operator reads either like any other log: Progress, Loss and ETA move.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from e2e import localcluster as lc  # noqa: E402
from e2e import nodeconfig, realnode  # noqa: E402

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
    local = lc.LocalCluster(lc.ClusterConfig(name=name))
    cluster = local.handle()
    if cluster.get_json("namespace", NAMESPACE) is not None:
        cluster.delete_namespace(NAMESPACE, wait=True)
    cluster.kubectl("create", "namespace", NAMESPACE)
    why_not = realnode.unsupported_reason()
    if why_not is None:
        print("the training runs in a real container on the cluster's real node (kubelet, containerd, runc)")
        local.add_real_node()
        return on_the_real_node(local, cluster)
    print(f"kwok demo (no real node here: {why_not}): a synthetic trainer log grows on a fake GPU node")
    return on_kwok(cluster)


def on_the_real_node(local: lc.LocalCluster, cluster: lc.Cluster) -> int:
    """examples/basic.yaml on the real node: the stand-in trainer's image, its output on the node's disk."""
    state = (local.load_state() or {})["real_node"]
    directory = local.workdir / "node" / "volumes" / "demo-output"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o1777)
    # The PV of a demo before is Released, its claim gone with the namespace: made anew.
    cluster.kubectl("delete", "pv", f"{NAMESPACE}-output", "--ignore-not-found")
    cluster.apply(nodeconfig.host_volume_manifests(directory, NAMESPACE, "output", {}))
    ftj = yaml.safe_load((ROOT / "examples" / "basic.yaml").read_text())
    repository, tag = state["images"]["trainer"].rsplit(":", 1)
    ftj["spec"].update(
        # The stand-in trainer's image carries a small model where basic.yaml's modelNameOrPath points.
        image={"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        volumes=[{"name": "out", "mountPath": "/mnt/out", "persistentVolumeClaim": {"claimName": "output"}}],
        nodeSelector={nodeconfig.NODE_KIND_LABEL: "real"},
        tolerations=[{"key": nodeconfig.REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        # The stand-in trains 2 epochs of 12 steps, one a second, logging them as the real trainer does.
        prescript="export PHISONAI2_STANDIN_STEP_SECONDS=1 PHISONAI2_STANDIN_ITERATIONS=12\n",
    )
    ftj["spec"]["envConfig"]["pathSettings"]["outputDir"] = "/mnt/out/output"
    ftj["spec"]["expConfig"]["runSettings"].update(numTrainEpochs=2, maxIter=-1)
    print(f"$ kubectl apply -n {NAMESPACE} -f examples/basic.yaml   # on the real node, the stand-in trainer image")
    print(cluster.apply(ftj, namespace=NAMESPACE), flush=True)
    last: list[str] = []
    deadline = time.monotonic() + 180
    while show(cluster, last) not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    pods = cluster.pods(NAMESPACE, f"finetune.aidaptiv.io/name={NAME}")
    if pods:
        pod = pods[-1]["metadata"]["name"]
        print(f"\n$ kubectl logs -n {NAMESPACE} {pod} --tail 6   # the real container's log")
        print(cluster.kubectl("logs", "-n", NAMESPACE, pod, "--tail", "6", check=False).stdout, flush=True)
    print(f"the trained output, on the node's disk: {directory}")
    return 0 if show(cluster, last) == "Succeeded" else 1


def on_kwok(cluster: lc.Cluster) -> int:
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
