"""The operator against the real control plane: reconcile, follow, suspend, TTL, restarts, no drift."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, condition, config_maps_of, ftj_events, get_ftj, wait_phase, wait_seen
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import (
    LONG_NAME,
    MULTI_NODE_BAD_NAMES,
    MULTI_NODE_NAME_CASE,
    NAME_CASE,
    RULE_CASES,
    UPDATE_CASES,
    RuleCase,
    UpdateCase,
    finetunejob,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"


def _reasons(cluster: lc.Cluster, namespace: str, name: str) -> list[str]:
    return sorted(ftj_events(cluster, namespace, name))


def test_basic_example_runs_to_succeeded(cluster: lc.Cluster, namespace: str, running: OperatorProcess) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "basic.yaml"))
    name = "finetune-llama-job"
    ftj = wait_phase(cluster, namespace, name, "Succeeded", running)
    uid = ftj["metadata"]["uid"]
    job = cluster.get_json("job", name, "-n", namespace)
    assert job is not None, f"job {name} is missing"
    (ref,) = job["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("FineTuneJob", name, uid, True)
    # The ConfigMap belongs to the Job, and goes with it (the operator cannot delete ConfigMaps).
    (config,) = config_maps_of(cluster, namespace, name)
    assert config["metadata"]["name"] == f"{name}-config-{uid[:8]}"
    (ref,) = config["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Job", name, job["metadata"]["uid"], True)
    assert ftj["status"]["jobName"] == name
    assert ftj["status"]["observedGeneration"] == ftj["metadata"]["generation"]
    assert ftj["status"]["completionTime"] and ftj["status"]["startTime"]
    assert condition(ftj, "Succeeded")["reason"] == "TrainingComplete"
    assert condition(ftj, "Stalled")["status"] == "False"
    table = cluster.kubectl("get", "finetunejobs", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "NODES", "PROGRESS", "LOSS", "ETA", "TREND", "AGE"]
    assert table.split("\n")[1].split()[:2] == [name, "Succeeded"]
    events = ftj_events(cluster, namespace, name)
    assert {"JobCreated", "TrainingComplete"} <= set(events), events
    assert events["JobCreated"] <= events["TrainingComplete"]
    described = cluster.describe("ftj", name, "-n", namespace)
    assert "TrainingComplete" in described
    ours = [e for e in cluster.events(namespace) if e["involvedObject"].get("kind") == "FineTuneJob"]
    sources = {e["source"].get("component") for e in ours}
    assert sources == {"finetune-operator"}, sources


def test_failing_pod_ends_failed_backoff_limit_exceeded(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    local_cluster.fail_namespace(namespace)
    local_cluster.apply(finetunejob({**LIGHT, "backoffLimit": 1}, name="fails"), namespace=namespace)
    ftj = wait_phase(local_cluster, namespace, "fails", "Failed", running)
    assert condition(ftj, "Failed")["reason"] == "BackoffLimitExceeded"
    assert condition(ftj, "Stalled")["status"] == "True"
    assert len(local_cluster.pods(namespace)) == 2  # the first try and one retry
    assert "BackoffLimitExceeded" in _reasons(local_cluster, namespace, "fails")


def test_deadline_overrun_ends_failed_deadline_exceeded(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    local_cluster.hold_namespace(namespace)
    local_cluster.apply(finetunejob({**LIGHT, "activeDeadlineSeconds": 5}, name="slow"), namespace=namespace)
    wait_phase(local_cluster, namespace, "slow", "Running", running)
    ftj = wait_phase(local_cluster, namespace, "slow", "Failed", running)
    assert condition(ftj, "Failed")["reason"] == "DeadlineExceeded"


def test_suspend_then_resume(cluster: lc.Cluster, namespace: str, running: OperatorProcess) -> None:
    cluster.apply(finetunejob({**LIGHT, "suspend": True}, name="held"), namespace=namespace)
    ftj = wait_phase(cluster, namespace, "held", "Suspended", running)
    assert condition(ftj, "Suspended")["status"] == "True"
    assert cluster.get_json("job", "held", "-n", namespace)["spec"]["suspend"] is True

    def suspended_by_job_controller() -> bool | None:
        job = cluster.get_json("job", "held", "-n", namespace) or {}
        conditions = (job.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Suspended" and c["status"] == "True" for c in conditions) or None

    # Once the Job controller has recorded the suspension it has decided: no pod, now or later.
    cluster.wait_for(suspended_by_job_controller, what="the Job controller to see the suspension", timeout=60)
    assert cluster.pods(namespace) == []
    cluster.kubectl("patch", "ftj", "held", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_phase(cluster, namespace, "held", "Succeeded", running)
    events = ftj_events(cluster, namespace, "held")
    assert {"JobSuspended", "Resumed", "TrainingComplete"} <= set(events), events
    assert events["JobSuspended"] <= events["Resumed"] <= events["TrainingComplete"]


def test_queue_controller_suspend_is_not_fought(cluster: lc.Cluster, namespace: str, running: OperatorProcess) -> None:
    """A queue controller (Kueue) suspends the Job itself; the operator leaves that alone."""
    body = finetunejob(LIGHT, name="queued")
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpus", "kueue.x-k8s.io/priority-class": "high"}
    body["spec"]["suspend"] = True
    cluster.apply(body, namespace=namespace)
    wait_phase(cluster, namespace, "queued", "Suspended", running)
    job = cluster.get_json("job", "queued", "-n", namespace)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    # The "queue" admits the Job; the FineTuneJob's own spec.suspend is unchanged and must not win.
    cluster.kubectl("patch", "job", "queued", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_phase(cluster, namespace, "queued", "Succeeded", running)


def test_ttl_deletes_children_keeps_the_record_across_restarts(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    cluster.apply(finetunejob({**LIGHT, "ttlSecondsAfterFinished": 3}, name="short-lived"), namespace=namespace)
    wait_phase(cluster, namespace, "short-lived", "Succeeded", running)

    def cleaned() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, "short-lived")
        return ftj if ftj and ftj["status"].get("cleanupTime") else None

    ftj = cluster.wait_for(cleaned, what="TTL cleanup", timeout=60, state=running.log)
    assert cluster.get_json("job", "short-lived", "-n", namespace) is None
    cluster.wait_for(
        lambda: config_maps_of(cluster, namespace, "short-lived") == [] or None,
        what="the ConfigMap collected with its Job",
        timeout=60,
    )
    cluster.wait_for(lambda: cluster.pods(namespace) == [] or None, what="pods deleted with the Job", timeout=60)
    assert condition(ftj, "CleanedUp")["reason"] == "TTLExpired"
    assert "TTLExpired" in _reasons(cluster, namespace, "short-lived")

    assert running.stop() == 0, running.log()  # SIGTERM: kopf stops cleanly
    running.start()
    everywhere = len(cluster.get_json("finetunejobs", "--all-namespaces")["items"])
    wait_seen(cluster, running, everywhere)  # the new process has looked at each, this one too
    after = get_ftj(cluster, namespace, "short-lived")
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"]["cleanupTime"] == ftj["status"]["cleanupTime"]
    assert cluster.get_json("job", "short-lived", "-n", namespace) is None
    # Nothing re-created, nothing re-written: counted by the new process itself, not inferred from a 409.
    made = running.api_requests()
    assert (made.get("create_job", 0), made.get("create_configmap", 0), made.get("patch_status", 0)) == (0, 0, 0)


def test_ttl_deletes_the_finetunejob_only_when_asked(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    spec = {**LIGHT, "ttlSecondsAfterFinished": 5, "ttlPolicy": "DeleteFineTuneJob"}
    cluster.apply(finetunejob(spec, name="gone"), namespace=namespace)
    wait_phase(cluster, namespace, "gone", "Succeeded", running)
    cluster.wait_for(lambda: get_ftj(cluster, namespace, "gone") is None or None, what="self-deletion", timeout=60)


def test_invalid_spec_the_crd_lets_through_is_stalled_with_no_children(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    raw = "ds:\n  data_path: x\n  user_prompt: no placeholder\n"
    cluster.apply(finetunejob({**LIGHT, "trainDataConfig": raw}, name="bad-data"), namespace=namespace)
    ftj = wait_phase(cluster, namespace, "bad-data", "Failed", running)
    stalled = condition(ftj, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "user_prompt must contain the placeholder {question}" in stalled["message"]
    assert cluster.get_json("job", "bad-data", "-n", namespace) is None
    assert config_maps_of(cluster, namespace, "bad-data") == []
    warnings = [e for e in cluster.events(namespace) if e["type"] == "Warning" and e["reason"] == "InvalidSpec"]
    assert warnings and "{question}" in warnings[0]["message"]


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"ds:\n  data_path: x\n  user_prompt: *a{levels}"]) + "\n"


def test_hostile_objects_the_api_server_stores_cannot_stop_the_operator(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    """Found by a probe: a 700-byte alias bomb in trainDataConfig took 1.5 GB and crash-looped the operator;
    3,000 nested brackets raised RecursionError on every pass. Both are stored by the API server (YAML in
    a string): each must end InvalidSpec, and a FineTuneJob created after them must still get its Job."""
    hostile = {"alias-bomb": _alias_bomb(9), "deep-brackets": "[" * 3000}
    for name, raw in hostile.items():
        cluster.apply(finetunejob({**LIGHT, "trainDataConfig": raw}, name=name), namespace=namespace)
    cluster.apply(finetunejob({**LIGHT, "suspend": True}, name="after-them"), namespace=namespace)
    for name in hostile:
        stalled = condition(wait_phase(cluster, namespace, name, "Failed", running), "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
        assert "trainDataConfig" in stalled["message"]
    wait_phase(cluster, namespace, "after-them", "Suspended", running)
    assert cluster.get_json("job", "after-them", "-n", namespace) is not None
    assert running.process is not None and running.process.poll() is None
    assert _rss_mb(running.process.pid) < 1024  # the bomb would have cost 1.5 GB, or more with a level more


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _server_dry_run(cluster: lc.Cluster, namespace: str, spec: dict[str, Any], name: str = "rule-case") -> str:
    proc = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(finetunejob(spec, name=name)),
        check=False,
    )
    return "" if proc.returncode == 0 else proc.stderr


@pytest.mark.parametrize("case", [c for c in RULE_CASES if c.server], ids=lambda c: c.id)
def test_api_server_enforces_each_rule(cluster: lc.Cluster, crd: None, namespace: str, case: RuleCase) -> None:
    assert _server_dry_run(cluster, namespace, case.good) == ""
    refusal = _server_dry_run(cluster, namespace, case.bad)
    assert case.message in refusal, refusal


def test_api_server_refuses_a_long_name(cluster: lc.Cluster, crd: None, namespace: str) -> None:
    assert NAME_CASE.message in _server_dry_run(cluster, namespace, {}, name=LONG_NAME)


@pytest.mark.parametrize("name", MULTI_NODE_BAD_NAMES)
def test_api_server_refuses_a_multi_node_name_unfit_for_a_service(
    cluster: lc.Cluster, crd: None, namespace: str, name: str
) -> None:
    assert _server_dry_run(cluster, namespace, MULTI_NODE_NAME_CASE.good, name="a" * 60) == ""
    assert MULTI_NODE_NAME_CASE.message in _server_dry_run(cluster, namespace, MULTI_NODE_NAME_CASE.bad, name=name)


@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: c.id)
def test_api_server_judges_each_update(cluster: lc.Cluster, crd: None, namespace: str, case: UpdateCase) -> None:
    """The same update cases as the unit test of the CRD's transition rules (evaluated there by cel-python)."""
    name = f"update-{UPDATE_CASES.index(case)}"
    cluster.apply(finetunejob(case.old, name=name), namespace=namespace)
    # kubectl replace takes the live resourceVersion: a status write of the session's operator in between
    # is a Conflict, not the API server's judgement of the update. At most a few tries.
    for _ in range(5):
        proc = cluster.kubectl(
            "replace",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(finetunejob(case.new, name=name)),
            check=False,
        )
        if "the object has been modified" not in proc.stderr:
            break
    if case.message is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and case.message in proc.stderr, proc.stderr


def test_immutable_fields_are_refused_and_mutable_ones_accepted(cluster: lc.Cluster, crd: None, namespace: str) -> None:
    body = finetunejob({**LIGHT, "suspend": True}, name="frozen")
    cluster.apply(body, namespace=namespace)
    edited = copy.deepcopy(body)
    edited["spec"]["expConfig"] = {"runSettings": {"maxIter": 50}}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(edited), check=False)
    assert proc.returncode != 0
    assert "expConfig cannot be changed after creation" in proc.stderr
    edited = copy.deepcopy(body)
    edited["spec"]["resources"] = {"requests": {"cpu": "20m"}, "limits": {"cpu": "20m"}}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(edited), check=False)
    assert "resources cannot be changed after creation" in proc.stderr
    edited = copy.deepcopy(body)
    edited["spec"].update(suspend=False, ttlSecondsAfterFinished=600)
    cluster.apply(edited, namespace=namespace)
    # numNodes: only while the stored FineTuneJob is suspended.
    edited["spec"]["numNodes"] = 2
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(edited), check=False)
    assert "numNodes can be changed only while the FineTuneJob is suspended" in proc.stderr
    edited["spec"].update(suspend=True, numNodes=1)
    cluster.apply(edited, namespace=namespace)
    edited["spec"]["numNodes"] = 2
    cluster.apply(edited, namespace=namespace)


def test_no_drift_after_reconcile(cluster: lc.Cluster, namespace: str, running: OperatorProcess) -> None:
    applied = yaml.safe_load((ROOT / "examples" / "structured-train-data.yaml").read_text())
    applied["spec"].update(LIGHT)
    del applied["spec"]["volumes"]  # its claim does not exist here
    applied["metadata"]["annotations"] = {"team": "ml"}
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(applied))
    ftj = wait_phase(cluster, namespace, "finetune-two-datasets", "Succeeded", running)
    assert ftj["spec"] == applied["spec"]
    assert ftj["metadata"]["annotations"] == {"team": "ml"}
    assert not ftj["metadata"].get("finalizers")
    assert set(ftj["status"]) <= {
        "observedGeneration",
        "phase",
        "conditions",
        "startTime",
        "completionTime",
        "jobName",
        "cleanupTime",
        "cleanupAfter",
        "nodes",
        "trainerStatus",
    }
    diff = cluster.kubectl("diff", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(applied), check=False)
    assert diff.returncode == 0, diff.stdout


def test_sigkill_after_50_creates_every_one_gets_exactly_one_job(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    names = [f"burst-{i:02d}" for i in range(50)]
    cluster.apply([finetunejob(LIGHT, name=n, namespace=namespace) for n in names])
    time.sleep(0.5)
    running.kill()
    running.start()

    def all_succeeded() -> bool | None:
        items = cluster.get_json("finetunejobs", "-n", namespace)["items"]
        phases = [(i.get("status") or {}).get("phase") for i in items]
        return True if len(items) == 50 and all(p == "Succeeded" for p in phases) else None

    cluster.wait_for(all_succeeded, what="50 FineTuneJobs to succeed", timeout=300, state=running.log)
    jobs = cluster.get_json("jobs", "-n", namespace)["items"]
    assert sorted(j["metadata"]["name"] for j in jobs) == names
    pods = cluster.pods(namespace)
    assert len(pods) == 50


def test_each_child_is_created_once_and_status_written_only_on_change(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    before = running.api_requests()
    names = [f"counted-{i:02d}" for i in range(20)]
    cluster.apply([finetunejob(LIGHT, name=n, namespace=namespace) for n in names])

    def all_succeeded() -> bool | None:
        items = cluster.get_json("finetunejobs", "-n", namespace)["items"]
        return (
            True
            if len(items) == 20 and all((i.get("status") or {}).get("phase") == "Succeeded" for i in items)
            else None
        )

    cluster.wait_for(all_succeeded, what="20 FineTuneJobs to succeed", timeout=300, state=running.log)
    after = running.api_requests()
    made = {op: after.get(op, 0) - before.get(op, 0) for op in after}
    # The Job watch may lag behind the FineTuneJob watch; a create is still never sent twice (no 409s).
    assert (made["create_job"], made["create_configmap"]) == (20, 20)
    # Pending, Running, and the end are the least; a few more when the Job's own steps are seen apart.
    assert 3 * 20 <= made["patch_status"] <= 6 * 20, made


def test_deleting_a_finetunejob_takes_its_children(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess
) -> None:
    cluster.apply(finetunejob({**LIGHT, "suspend": True}, name="doomed"), namespace=namespace)
    wait_phase(cluster, namespace, "doomed", "Suspended", running)
    running.stop()  # no finalizer: the delete must not wait for the operator
    cluster.kubectl("delete", "ftj", "doomed", "-n", namespace, "--timeout=30s")

    def children_gone() -> bool | None:
        job = cluster.get_json("job", "doomed", "-n", namespace)
        return True if job is None and config_maps_of(cluster, namespace, "doomed") == [] else None

    cluster.wait_for(children_gone, what="the garbage collector to delete the Job and ConfigMap", timeout=90)
