"""FineTuneJobs through the operator on the real node: the rendered pod runs for real, with the stand-in
trainer (e2e/standin/phisonai2.py) in its image, its output on a hostPath PersistentVolume."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.standin import phisonai2

from e2e import localcluster as lc
from tests.e2e.helpers import condition, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import (
    RealNode,
    container_state,
    on_real_node,
    wait_file_contains,
    wait_pod_gone_from_node,
)
from tests.rule_cases import finetunejob

NAME_LABEL = "finetune.aidaptiv.io/name"
RESOURCES = {"phison.com/ai100": 1, "otterscale.com/vgpu": 1, "otterscale.com/vgpumem-percentage": 60}
OUT = "/mnt/out"


def trainer_spec(node: RealNode, claim: str, prescript: str = "", **extra: Any) -> dict[str, Any]:
    """A FineTuneJob spec for the real node: the stand-in's image, outputDir on the claim."""
    spec: dict[str, Any] = {
        "image": node.image_parts(),
        "ttlSecondsAfterFinished": None,
        "backoffLimit": 0,
        "prescript": prescript,
        "volumes": [{"name": "out", "mountPath": OUT, "persistentVolumeClaim": {"claimName": claim}}],
        "envConfig": {"pathSettings": {"outputDir": f"{OUT}/run"}},
        "expConfig": {"runSettings": {"numTrainEpochs": 2, "maxIter": 6}},
        "resources": {"requests": RESOURCES, "limits": RESOURCES},
    }
    spec.update(extra)
    return on_real_node(spec)


def phase_story(cluster: lc.Cluster, namespace: str, uid: str) -> list[str]:
    """The phases the FineTuneJob's phase Events told ("<phase>: ..."), in the order they were made."""
    phases = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
    told = sorted(
        (int(e["metadata"]["resourceVersion"]), e.get("message", "").split(":", 1)[0])
        for e in cluster.events(namespace)
        if e["involvedObject"].get("uid") == uid
    )
    return [phase for _, phase in told if phase in phases]


def metrics(ftj: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["value"] for m in ftj["status"].get("trainerStatus", {}).get("metrics", [])}


def pods_of(cluster: lc.Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return cluster.pods(namespace, f"{NAME_LABEL}={name}")


def run_log(directory: Path, ftj: dict[str, Any]) -> Path:
    """The trainer's log file: logName `output.log` becomes `output.<name>-<uid prefix>.log`."""
    return directory / "run" / f"output.{ftj['metadata']['name']}-{ftj['metadata']['uid'][:8]}.log"


def test_a_finetunejob_on_the_real_node_succeeds_with_progress_from_the_real_log(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    directory, claim = host_volumes("out")
    prescript = "export PHISONAI2_STANDIN_STEP_SECONDS=1.5\n"
    cluster.apply(finetunejob(trainer_spec(real_node, claim, prescript), "tiny", namespace))

    def running_with_progress() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, "tiny") or {}
        status = ftj.get("status") or {}
        progress = (status.get("trainerStatus") or {}).get("progressPercentage")
        return ftj if status.get("phase") == "Running" and progress is not None and 0 < progress < 100 else None

    seen = cluster.wait_for(
        running_with_progress,
        what="FineTuneJob tiny Running with a progress between 0 and 100",
        timeout=120,
        state=lambda: cluster.describe("ftj", "tiny", "-n", namespace) + running.log()[-3000:],
    )
    assert seen["status"]["phase"] == "Running"
    done = wait_phase(cluster, namespace, "tiny", "Succeeded", running, timeout=120)
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    assert done["status"]["trainerStatus"]["progressPercentage"] == 100
    assert {k: metrics(done)[k] for k in ("epoch", "totalEpochs", "step", "totalSteps", "loss")} == {
        "epoch": "2",
        "totalEpochs": "2",
        "step": "6",
        "totalSteps": "6",
        "loss": str(phisonai2.loss_at(5)),
    }
    (trainer_pod,) = pods_of(cluster, namespace, "tiny")
    assert trainer_pod["spec"]["nodeName"] == real_node.name
    terminated = container_state(trainer_pod, "trainer")["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["message"].splitlines()[:5] == [
        "verdict: succeeded",
        "reason: TrainingComplete",
        "exitCode: 0",
        "step: 6",
        f"loss: {phisonai2.loss_at(5)}",
    ]
    # The Events tell each phase once, in order: a real container's end (the kubelet reports the pod
    # before the Job controller counts it) is no step back to Pending (found here: Running, Pending, ...).
    assert phase_story(cluster, namespace, done["metadata"]["uid"]) == ["Pending", "Running", "Succeeded"]
    # What the trainer wrote is in the volume: its log, and a checkpoint per epoch.
    log = run_log(directory, done).read_text()
    assert phisonai2.COMPLETE in log
    assert sorted(p.name for p in (directory / "run").iterdir() if p.is_dir()) == [
        "checkpoint-epoch-1",
        "checkpoint-epoch-2",
    ]
    assert (directory / "run" / "checkpoint-epoch-2" / "model.safetensors").is_file()
    # `kubectl logs` of the real container: the entrypoint's words and the trainer's log streamed.
    pod_log = cluster.kubectl("logs", "-n", namespace, trainer_pod["metadata"]["name"]).stdout
    assert "[finetune-operator] trainer verdict: succeeded (TrainingComplete)" in pod_log
    assert phisonai2.COMPLETE in pod_log


def test_deleting_a_running_finetunejob_stops_its_trainer_with_sigterm(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    """The kubelet's SIGTERM reaches the trainer (REALNODE-FINDINGS.md, finding 1): it logs it and stops
    before the grace period ends, and nothing of the FineTuneJob is left."""
    directory, claim = host_volumes("out")
    prescript = "export PHISONAI2_STANDIN_BEHAVIOUR=hang\n"
    cluster.apply(finetunejob(trainer_spec(real_node, claim, prescript), "stopme", namespace))
    ftj = wait_phase(cluster, namespace, "stopme", "Running", running, timeout=120)
    log = run_log(directory, ftj)
    wait_file_contains(log, "[PHISON START] Epoch: 0, Iteration: 0")
    (trainer_pod,) = pods_of(cluster, namespace, "stopme")
    cluster.kubectl("delete", "ftj", "stopme", "-n", namespace, "--wait=false")
    cluster.wait_for(
        lambda: (
            not pods_of(cluster, namespace, "stopme") and cluster.get_json("job", "stopme", "-n", namespace) is None
        ),
        what="the FineTuneJob's Job and pod to be gone",
        timeout=120,
        state=lambda: cluster.namespace_state(namespace),
    )
    text = log.read_text()
    pid = re.search(r"create current swap data path: /mnt/nvme0/phison_(\d+)", text)
    assert pid, text
    assert text.rstrip().splitlines()[-4:] == [
        "[WARNING] received SIGTERM: stopping the training",
        f"Killing subprocess {pid[1]}",
        "['/usr/bin/python3', '-u', 'train.py'] exits with return code = -15",
        f"[INFO] remove current swap data path: /mnt/nvme0/phison_{pid[1]}",
    ]
    wait_pod_gone_from_node(cluster, real_node, trainer_pod["metadata"]["uid"])


def _deadline_run(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> tuple[dict[str, Any], str]:
    """A hanging training past its activeDeadlineSeconds: the FineTuneJob once Failed, and the log."""
    directory, claim = host_volumes("out")
    spec = trainer_spec(real_node, claim, "export PHISONAI2_STANDIN_BEHAVIOUR=hang\n", activeDeadlineSeconds=15)
    cluster.apply(finetunejob(spec, "late", namespace))
    done = wait_phase(cluster, namespace, "late", "Failed", running, timeout=120)
    return done, wait_file_contains(run_log(directory, done), "exits with return code = -15")


def test_active_deadline_stops_the_trainer_with_sigterm(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    """The Job controller ends the pod at the deadline: the trainer is told (SIGTERM), not only killed."""
    done, log = _deadline_run(cluster, namespace, real_node, running, host_volumes)
    assert "[WARNING] received SIGTERM: stopping the training" in log
    job = cluster.get_json("job", "late", "-n", namespace)
    assert [c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"] == ["DeadlineExceeded"]
    assert done["status"]["phase"] == "Failed"


def test_a_deadline_is_named_as_the_cause(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    done, _ = _deadline_run(cluster, namespace, real_node, running, host_volumes)
    assert condition(done, "Failed")["reason"] == "DeadlineExceeded", condition(done, "Failed")


def test_suspend_stops_the_real_container_and_resume_trains_again(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    directory, claim = host_volumes("out")
    prescript = "export PHISONAI2_STANDIN_STEP_SECONDS=0.5 PHISONAI2_STANDIN_ITERATIONS=12\n"
    spec = trainer_spec(real_node, claim, prescript, expConfig={"runSettings": {"numTrainEpochs": 1, "maxIter": -1}})
    cluster.apply(finetunejob(spec, "paused", namespace))
    ftj = wait_phase(cluster, namespace, "paused", "Running", running, timeout=120)
    log = run_log(directory, ftj)
    wait_file_contains(log, "[PHISON END] Iteration: 1")
    cluster.kubectl("patch", "ftj", "paused", "-n", namespace, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    wait_phase(cluster, namespace, "paused", "Suspended", running, timeout=120)
    cluster.wait_for(lambda: not pods_of(cluster, namespace, "paused"), what="the suspended pod gone", timeout=120)
    assert "[WARNING] received SIGTERM: stopping the training" in log.read_text()
    cluster.kubectl("patch", "ftj", "paused", "-n", namespace, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    done = wait_phase(cluster, namespace, "paused", "Succeeded", running, timeout=180)
    assert condition(done, "Succeeded")["reason"] == "TrainingComplete"
    # The second pod's entrypoint kept the first one's log beside its own (it judged only its own).
    (previous,) = (directory / "run").glob(f"{log.name}.*.previous")
    assert "exits with return code = -15" in previous.read_text()
    assert phisonai2.COMPLETE in log.read_text() and "received SIGTERM" not in log.read_text()
