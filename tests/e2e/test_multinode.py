"""One FineTuneJob across several (fake) nodes on the real control plane: the ranks wired, the group
failing and retrying as one, resized while suspended, admitted by a queue, and not failed by an eviction."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import localcluster as lc
from finetune_operator.observe.times import parse_timestamp
from tests.e2e.helpers import LIGHT, condition, ftj_events, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
INDEX = "batch.kubernetes.io/job-completion-index"
PREFIX = "e2e.finetune.aidaptiv.io"
NCCL = "verdict: failed\nreason: TrainerExitCode\nexitCode: 3\nevidence: NCCL error: remote process exited\n"


def _ranks(cluster: lc.Cluster, namespace: str, name: str, phase: str = "Running") -> dict[int, dict[str, Any]]:
    pods = cluster.pods(namespace, f"finetune.aidaptiv.io/name={name}")
    return {
        int(p["metadata"]["labels"][INDEX]): p
        for p in pods
        if (p.get("status") or {}).get("phase") == phase and not p["metadata"].get("deletionTimestamp")
    }


def _wait_ranks(cluster: lc.Cluster, namespace: str, name: str, count: int) -> dict[int, dict[str, Any]]:
    def all_running() -> dict[int, dict[str, Any]] | None:
        found = _ranks(cluster, namespace, name)
        return found if len(found) == count else None

    return cluster.wait_for(all_running, what=f"{count} ranks of {name} running", timeout=90)


def _annotate(cluster: lc.Cluster, namespace: str, pod: dict[str, Any], **annotations: str) -> None:
    pairs = [f"{PREFIX}/{key.replace('_', '-')}={value}" for key, value in annotations.items()]
    cluster.kubectl("annotate", "pod", pod["metadata"]["name"], "-n", namespace, "--overwrite", *pairs)


@pytest.fixture
def held(local_cluster: lc.Cluster, namespace: str) -> Iterator[str]:
    local_cluster.hold_namespace(namespace)
    yield namespace
    local_cluster.release_namespace(namespace)


class JobWatch:
    """Every Job event of a namespace, from a `kubectl get --watch` running beside the test."""

    def __init__(self, cluster: lc.Cluster, namespace: str, path: Path) -> None:
        self.path = path
        argv = [cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig), "get", "jobs", "-n", namespace]
        argv += ["--watch", "--output-watch-events", "-o", "json"]
        self.handle = path.open("w")
        self.process = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.DEVNULL)

    def events(self) -> list[tuple[str, str, str, bool]]:
        """(type, attempt annotation, uid, whether the Job has failed) of each event, in order."""
        decoder, text, found, position = json.JSONDecoder(), self.path.read_text(), [], 0
        while position < len(text):
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            event, position = decoder.raw_decode(text, position)
            job = event["object"]
            found.append(
                (
                    event["type"],
                    job["metadata"]["annotations"].get("finetune.aidaptiv.io/attempt", ""),
                    job["metadata"]["uid"],
                    any(
                        c.get("type") == "Failed" and c.get("status") == "True"
                        for c in (job.get("status") or {}).get("conditions") or []
                    ),
                )
            )
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.handle.close()


def _two_nodes(**spec: Any) -> dict[str, Any]:
    return {**LIGHT, "numNodes": 2, "backoffLimit": 0, **spec}


def test_two_ranks_are_wired_and_rank_zero_tells_the_progress(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess, tmp_path: Path
) -> None:
    cluster, namespace = local_cluster, held
    one_ai100 = {"cpu": "10m", "phison.com/ai100": "1"}
    cluster.apply(
        finetunejob(_two_nodes(resources={"requests": one_ai100, "limits": one_ai100}), name="pair"),
        namespace=namespace,
    )
    ranks = _wait_ranks(cluster, namespace, "pair", 2)
    # rank 0's log is halfway; rank 1's says nothing of progress: the status follows rank 0.
    halfway = tmp_path / "rank-0.log"
    text = (FIXTURES / "two-epochs-capped.log").read_text()
    marker = text.index("08:00:51.000000] [PHISON END]")
    lc.append_log(halfway, text[: text.index("\n", marker) + 1])
    quiet = tmp_path / "rank-1.log"
    lc.append_log(quiet, "[INFO] rank 1 ready\n")
    cluster.fake_logs(namespace, halfway, pod=ranks[0]["metadata"]["name"])
    cluster.fake_logs(namespace, quiet, pod=ranks[1]["metadata"]["name"])

    service = cluster.get_json("service", "pair", "-n", namespace)
    assert (service["spec"]["clusterIP"], service["spec"]["publishNotReadyAddresses"]) == ("None", True)
    assert {p["spec"]["nodeName"] for p in ranks.values()} == {"fake-gpu-0", "fake-gpu-1"}
    for rank, pod in ranks.items():
        assert pod["spec"]["hostname"] == f"pair-{rank}" and pod["spec"]["subdomain"] == "pair"
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == f"pair-0.pair.{namespace}.svc"
        assert (env["NNODES"], env["NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("2", "1", "2")
        assert env["NODE_RANK"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX}']"}}
        assert pod["metadata"]["annotations"][INDEX] == str(rank)

    def halfway_there() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, "pair") or {}
        status = ftj.get("status") or {}
        return ftj if (status.get("trainerStatus") or {}).get("progressPercentage") == 50 else None

    ftj = cluster.wait_for(halfway_there, what="rank 0's progress", timeout=60, state=running.log)
    assert (ftj["status"]["phase"], ftj["status"]["nodes"]) == ("Running", "2/2")
    table = cluster.kubectl("get", "ftj", "pair", "-n", namespace).stdout.splitlines()
    assert table[1].split()[1:3] == ["Running", "2/2"]
    # GPU-hours by hand: each rank's phison.com/ai100 from its start to the time counted, summed.
    usage = ftj["status"]["usage"]
    until = parse_timestamp(usage["countedUntil"])
    starts = [
        parse_timestamp(p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
        for p in cluster.get_json("pods", "-n", namespace)["items"]
    ]
    held_seconds = sum(int((until - start).total_seconds()) for start in starts)
    assert len(starts) == 2 and held_seconds > 0
    assert usage["acceleratorSeconds"] == [{"resource": "phison.com/ai100", "seconds": held_seconds}]
    cluster.release_namespace(namespace)
    done = wait_phase(cluster, namespace, "pair", "Succeeded", running)
    assert (done["status"]["nodes"], done["status"]["attempt"], done["status"]["failedAttempts"]) == ("2/2", 1, 0)


def test_one_rank_failing_fails_the_group_at_once_and_names_it(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess
) -> None:
    cluster, namespace = local_cluster, held
    cluster.apply(finetunejob(_two_nodes(), name="breaks"), namespace=namespace)
    ranks = _wait_ranks(cluster, namespace, "breaks", 2)
    _annotate(cluster, namespace, ranks[0], hold="true")  # rank 0 would train on forever
    _annotate(cluster, namespace, ranks[1], fail="true", exit_code="3", fail_message=NCCL, run_duration="0s")
    cluster.release_namespace(namespace)
    cluster.wait_for(
        lambda: any(p["status"]["phase"] == "Failed" for p in cluster.pods(namespace, f"{INDEX}=1")) or None,
        what="rank 1 to fail",
        timeout=60,
        interval=0.2,
    )
    failed_at = time.monotonic()
    ftj = wait_phase(cluster, namespace, "breaks", "Failed", running, timeout=60)
    lc.log(f"multi-node: rank 1 failed -> FineTuneJob Failed seen in {time.monotonic() - failed_at:.1f}s")
    failed = condition(ftj, "Failed")
    assert failed["reason"] == "TrainerReportedFailure"
    assert failed["message"] == "rank 1 failed first (exit code 3): NCCL error: remote process exited"
    gone = cluster.wait_for(
        lambda: not any(p["status"]["phase"] == "Running" for p in cluster.pods(namespace)) or None,
        what="no rank left running",
        timeout=60,
    )
    assert gone


def test_a_failed_attempt_is_retried_as_a_group_once_at_a_time_across_an_operator_crash(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess, tmp_path: Path
) -> None:
    cluster, namespace = local_cluster, held
    watch = JobWatch(cluster, namespace, tmp_path / "jobs.jsonl")
    try:
        cluster.apply(finetunejob(_two_nodes(backoffLimit=1), name="again"), namespace=namespace)
        ranks = _wait_ranks(cluster, namespace, "again", 2)
        _annotate(cluster, namespace, ranks[0], hold="true")
        _annotate(cluster, namespace, ranks[1], fail="true", exit_code="3", fail_message=NCCL, run_duration="0s")
        cluster.release_namespace(namespace)

        def rank_one_failed() -> bool | None:
            pods = cluster.pods(namespace, f"{INDEX}=1")
            return any((p.get("status") or {}).get("phase") == "Failed" for p in pods) or None

        def retrying() -> dict[str, Any] | None:
            ftj = get_ftj(cluster, namespace, "again") or {}
            return ftj if (ftj.get("status") or {}).get("attempt") == 2 else None

        cluster.wait_for(rank_one_failed, what="rank 1 to fail", timeout=60, interval=0.2)
        failed_at = time.monotonic()
        cluster.wait_for(retrying, what="the second attempt", timeout=60, state=running.log, interval=0.2)
        lc.log(f"multi-node: rank 1 failed -> attempt 2 recorded in {time.monotonic() - failed_at:.1f}s")
        running.kill()  # in the middle of the retry
        running.start()
        ftj = wait_phase(cluster, namespace, "again", "Succeeded", running, timeout=120)
    finally:
        watch.stop()
    assert (ftj["status"]["attempt"], ftj["status"]["failedAttempts"], ftj["status"]["nodes"]) == (2, 1, "2/2")
    retries = [e for e in cluster.events(namespace) if e["reason"] == "Retrying"]
    assert len(retries) == 1, [(e["involvedObject"], e.get("source"), e["message"]) for e in retries]
    assert "attempt 1 failed: rank 1 failed first (exit code 3): NCCL error" in retries[0]["message"]
    # Every Job the namespace ever had: attempt 1, then attempt 2 only once attempt 1 had failed (its
    # ranks ended); attempt 1's Job is kept, never deleted (issue 20 #14), with its failed rank's pod.
    events = watch.events()
    added = [(attempt, uid) for kind, attempt, uid, _ in events if kind == "ADDED"]
    assert [attempt for attempt, _ in added] == ["1", "2"], events
    first_failed = next(i for i, (_, _, uid, failed) in enumerate(events) if failed and uid == added[0][1])
    second_made = next(i for i, (kind, _, uid, _) in enumerate(events) if kind == "ADDED" and uid == added[1][1])
    assert first_failed < second_made
    assert not [e for e in events if e[0] == "DELETED"], events
    jobs = {j["metadata"]["uid"]: j for j in cluster.get_json("jobs", "-n", namespace)["items"]}
    assert jobs[added[0][1]]["metadata"]["name"] == "again"
    assert jobs[added[1][1]]["metadata"]["name"] == f"again-a2-{ftj['metadata']['uid'][:5]}"
    assert ftj["status"]["jobName"] == f"again-a2-{ftj['metadata']['uid'][:5]}"
    kept = cluster.pods(namespace, f"batch.kubernetes.io/controller-uid={added[0][1]}")
    assert {(p["metadata"]["labels"][INDEX], p["status"]["phase"]) for p in kept} >= {("1", "Failed")}
    assert "its Job again is kept with its pods and their logs" in retries[0]["message"]


def test_the_node_count_changed_while_suspended_is_used_on_resume(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    cluster = local_cluster
    body = finetunejob(_two_nodes(suspend=True), name="resized")
    cluster.apply(body, namespace=namespace)
    wait_phase(cluster, namespace, "resized", "Suspended", running)
    body["spec"]["numNodes"] = 3
    cluster.apply(body, namespace=namespace)
    remade = f"resized-a2-{get_ftj(cluster, namespace, 'resized')['metadata']['uid'][:5]}"
    cluster.wait_for(
        lambda: (
            (
                ((cluster.get_json("job", remade, "-n", namespace) or {}).get("spec") or {}).get("parallelism") == 3
                and cluster.get_json("job", "resized", "-n", namespace) is None
            )
            or None
        ),
        what="the Job made anew with 3 ranks, the held one gone",
        timeout=60,
        state=running.log,
    )
    assert cluster.pods(namespace) == []
    body["spec"]["suspend"] = False
    cluster.apply(body, namespace=namespace)
    ftj = wait_phase(cluster, namespace, "resized", "Succeeded", running, timeout=120)
    assert ftj["status"]["nodes"] == "3/3"
    assert ftj["status"]["failedAttempts"] == 0
    assert "Resized" in ftj_events(cluster, namespace, "resized")


def test_a_queue_admits_all_ranks_at_once(local_cluster: lc.Cluster, namespace: str, running: OperatorProcess) -> None:
    """Kueue admits a Job as one workload: suspended until admitted, then every rank starts together."""
    cluster = local_cluster
    body = finetunejob(_two_nodes(suspend=True), name="queued")
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpus"}
    cluster.apply(body, namespace=namespace)
    wait_phase(cluster, namespace, "queued", "Suspended", running)
    job = cluster.get_json("job", "queued", "-n", namespace)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    assert cluster.pods(namespace) == []
    # Kueue's admission, played here: it unsuspends the Job, all ranks together.
    cluster.kubectl("patch", "job", "queued", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    ftj = wait_phase(cluster, namespace, "queued", "Succeeded", running, timeout=120)
    assert ftj["status"]["nodes"] == "2/2"


def test_an_evicted_rank_is_replaced_not_counted_as_a_failure(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess
) -> None:
    cluster, namespace = local_cluster, held
    cluster.apply(finetunejob(_two_nodes(), name="evicted"), namespace=namespace)
    ranks = _wait_ranks(cluster, namespace, "evicted", 2)
    victim = ranks[1]["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim, "namespace": namespace}}
    cluster.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{victim}/eviction",
        "-f",
        "-",
        input=json.dumps(eviction),
    )
    cluster.wait_for(
        lambda: (
            ((found := _ranks(cluster, namespace, "evicted")) and 1 in found and found[1]["metadata"]["name"] != victim)
            or None
        ),
        what="rank 1 replaced",
        timeout=90,
    )
    cluster.release_namespace(namespace)
    ftj = wait_phase(cluster, namespace, "evicted", "Succeeded", running, timeout=120)
    assert (ftj["status"]["attempt"], ftj["status"]["failedAttempts"]) == (1, 0)
    assert "Retrying" not in ftj_events(cluster, namespace, "evicted")


def test_an_evicted_single_node_pod_is_replaced_not_counted_as_a_failure(
    local_cluster: lc.Cluster, held: str, running: OperatorProcess
) -> None:
    """backoffLimit 0: were the eviction counted as a failure, the Job would fail at once."""
    cluster, namespace = local_cluster, held
    cluster.apply(finetunejob({**LIGHT, "backoffLimit": 0}, name="evicted-one"), namespace=namespace)

    def running_pods() -> list[dict[str, Any]] | None:
        pods = cluster.pods(namespace, "finetune.aidaptiv.io/name=evicted-one")
        alive = [
            p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return alive or None

    (victim,) = cluster.wait_for(running_pods, what="the training pod running", timeout=90)
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": victim["metadata"]["name"], "namespace": namespace},
    }
    cluster.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{victim['metadata']['name']}/eviction",
        "-f",
        "-",
        input=json.dumps(eviction),
    )
    cluster.wait_for(
        lambda: [p for p in running_pods() or [] if p["metadata"]["uid"] != victim["metadata"]["uid"]] or None,
        what="the evicted pod replaced",
        timeout=90,
    )
    cluster.release_namespace(namespace)
    wait_phase(cluster, namespace, "evicted-one", "Succeeded", running, timeout=120)
    assert "Failed" not in ftj_events(cluster, namespace, "evicted-one")
