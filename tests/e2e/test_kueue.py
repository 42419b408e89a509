"""The real Kueue v0.17.0 (e2e/kueue.py) admits FineTuneJobs on the kwok GPU nodes: quota, preemption and
deactivation go as Kueue decides (the same Job throughout, the attempt unchanged, Succeeded in the end),
and the FineTuneJob says why it waits, in Kueue's words (phase Queued)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.kueue import MANAGED_NAMESPACE_LABEL, Kueue, unsupported_reason

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT, condition, ftj_events, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kueue"
AI100 = "phison.com/ai100"
KUEUE = "kueue.x-k8s.io/v1beta2"
# Every resource the pods ask for must be covered (the training pod asks for cpu and memory too: Kueue
# says "resource cpu unavailable in ClusterQueue" otherwise, found here); ai100 is the scarce one.
QUOTA = [
    {"name": "cpu", "nominalQuota": "64"},
    {"name": "memory", "nominalQuota": "1Ti"},
    {"name": AI100, "nominalQuota": 2},
]


@pytest.fixture(scope="module")
def kueue(cluster: lc.Cluster) -> Iterator[Kueue]:
    """Kueue's manager beside the session's cluster, for this module's tests only: Kueue manages every
    Job with a queue-name label in any namespace (its namespace selector only exempts Jobs without one),
    and would take back the Jobs of the tests elsewhere that play its part."""
    if not cluster.local:
        pytest.skip("needs the local cluster (Kueue runs beside it as a process)")
    reason = unsupported_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Kueue cannot run here: {reason}", pytrace=False)
        pytest.skip(reason)
    manager = Kueue(lc.LocalCluster.of(cluster))
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture
def queue(cluster: lc.Cluster, kueue: Kueue) -> Iterator[tuple[str, str]]:
    """A namespace whose Jobs Kueue manages, with a LocalQueue "lq" of a ClusterQueue of 2 ai100 (its
    own flavor on the kwok GPU nodes); returns (namespace, flavor). Preemption within the queue by priority."""
    namespace = cluster.create_namespace(labels={MANAGED_NAMESPACE_LABEL: "true"})
    flavor, cq = f"ai100-{namespace}", f"cq-{namespace}"
    cluster.apply(
        [
            {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": flavor},
             "spec": {"nodeLabels": {"phison.com/ai100-present": "true"}}},
            {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": cq},
             "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                      "preemption": {"withinClusterQueue": "LowerPriority"},
                      "resourceGroups": [{"coveredResources": ["cpu", "memory", AI100],
                                          "flavors": [{"name": flavor, "resources": QUOTA}]}]}},
            {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": "lq", "namespace": namespace},
             "spec": {"clusterQueue": cq}},
        ]
    )  # fmt: skip
    cluster.hold_namespace(namespace)  # pods run until released: the quota stays taken meanwhile
    try:
        yield namespace, flavor
    finally:
        cluster.release_namespace(namespace)
        cluster.delete_namespace(namespace)
        for kind, name in (("clusterqueue", cq), ("resourceflavor", flavor)):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)


def _queued(name: str, ai100: int = 1, priority: str | None = None, **spec: Any) -> dict[str, Any]:
    resources = {"requests": {"cpu": "10m", AI100: str(ai100)}, "limits": {"cpu": "10m", AI100: str(ai100)}}
    body = finetunejob({**LIGHT, "resources": resources, **spec}, name=name)
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    if priority is not None:
        body["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] = priority
    return body


def _wait_reason(
    cluster: lc.Cluster,
    namespace: str,
    name: str,
    reason: str,
    running: OperatorProcess,
    saying: str = "",
    timeout: float = 90,
) -> dict[str, Any]:
    """Until the FineTuneJob is Queued for this reason, its message holding ``saying`` (Kueue writes its
    words a moment after it made the Workload; the operator reads them again while the Job waits)."""

    def reached() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, name)
        if not ftj or (ftj.get("status") or {}).get("phase") != "Queued":
            return None
        held = condition(ftj, "Suspended")
        return ftj if held["reason"] == reason and saying in held["message"] else None

    return cluster.wait_for(
        reached,
        what=f"FineTuneJob {namespace}/{name} Queued, {reason}",
        timeout=timeout,
        state=lambda: cluster.describe("ftj", name, "-n", namespace) + running.log()[-4000:],
    )


def _job_uid(cluster: lc.Cluster, namespace: str, name: str) -> str:
    job = cluster.get_json("job", name, "-n", namespace)
    assert job is not None, f"no Job {name}"
    return str(job["metadata"]["uid"])


def _workload_of(cluster: lc.Cluster, namespace: str, job_uid: str) -> dict[str, Any]:
    (workload,) = cluster.get_json("workloads", "-n", namespace, "-l", f"kueue.x-k8s.io/job-uid={job_uid}")["items"]
    return dict(workload)


def _print_tables(cluster: lc.Cluster, namespace: str, when: str) -> None:
    """What a user sees, in the test's output (the issue note quotes it)."""
    for kind in ("ftj", "workloads"):
        print(f"--- kubectl get {kind} ({when})\n{cluster.kubectl('get', kind, '-n', namespace).stdout}")


def test_over_quota_a_finetunejob_is_queued_saying_what_it_lacks_and_runs_when_room_frees(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    namespace, flavor = queue
    for name in ("a", "b", "c"):
        cluster.apply(_queued(name), namespace=namespace)
    for name in ("a", "b"):
        wait_phase(cluster, namespace, name, "Running", running)
    waiting = _wait_reason(cluster, namespace, "c", "WaitingForAdmission", running, saying="more needed")
    _print_tables(cluster, namespace, "quota of 2 ai100 taken")
    said = condition(waiting, "Suspended")["message"]
    assert said == (
        "waiting for admission by queue lq: couldn't assign flavors to pod set main: insufficient unused quota "
        f"for {AI100} in flavor {flavor}, 1 more needed"
    ), said
    assert condition(waiting, "Reconciling")["status"] == "True"  # kstatus: InProgress
    row = cluster.kubectl("get", "ftj", "c", "-n", namespace, "--no-headers").stdout.split()
    assert row[:2] == ["c", "Queued"], row
    job_uid = _job_uid(cluster, namespace, "c")
    cluster.kubectl("delete", "ftj", "a", "-n", namespace)  # its quota frees up
    wait_phase(cluster, namespace, "c", "Running", running)
    assert _job_uid(cluster, namespace, "c") == job_uid  # admitted as it was: the same Job
    cluster.release_namespace(namespace)
    wait_phase(cluster, namespace, "c", "Succeeded", running)
    events = ftj_events(cluster, namespace, "c")
    assert events["WaitingForAdmission"] <= events["PodsRunning"] <= events["TrainingComplete"], events


def test_a_multi_node_finetunejob_is_admitted_whole_or_not_at_all(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    """Two ranks of 1 ai100 are one Workload of count 2: with 1 free it waits whole, saying so."""
    namespace, flavor = queue
    cluster.apply(_queued("one"), namespace=namespace)
    wait_phase(cluster, namespace, "one", "Running", running)
    cluster.apply(_queued("pair", numNodes=2, backoffLimit=0), namespace=namespace)
    waiting = _wait_reason(cluster, namespace, "pair", "WaitingForAdmission", running, saying="more needed")
    assert condition(waiting, "Suspended")["message"].endswith(
        f"insufficient unused quota for {AI100} in flavor {flavor}, 1 more needed"
    )
    job_uid = _job_uid(cluster, namespace, "pair")
    workload = _workload_of(cluster, namespace, job_uid)
    assert [p["count"] for p in workload["spec"]["podSets"]] == [2]
    assert cluster.pods(namespace, "job-name=pair") == []  # no rank starts alone
    cluster.kubectl("delete", "ftj", "one", "-n", namespace)
    running_pair = wait_phase(cluster, namespace, "pair", "Running", running)
    assert running_pair["status"]["nodes"] == "2/2"
    cluster.release_namespace(namespace)
    done = wait_phase(cluster, namespace, "pair", "Succeeded", running)
    assert _job_uid(cluster, namespace, "pair") == job_uid and done["status"]["attempt"] == 1


def test_a_preempted_finetunejob_says_by_whom_keeps_its_job_and_attempt_and_succeeds_when_readmitted(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    namespace, _ = queue
    cluster.apply(
        [
            {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": f"low-{namespace}"},
             "value": 100},
            {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": f"high-{namespace}"},
             "value": 1000},
        ]
    )  # fmt: skip
    try:
        cluster.apply(_queued("low", ai100=2, priority=f"low-{namespace}"), namespace=namespace)
        wait_phase(cluster, namespace, "low", "Running", running)
        job_uid = _job_uid(cluster, namespace, "low")
        cluster.apply(_queued("high", ai100=2, priority=f"high-{namespace}"), namespace=namespace)
        preempted = _wait_reason(cluster, namespace, "low", "Preempted", running)
        wait_phase(cluster, namespace, "high", "Running", running)
        _print_tables(cluster, namespace, "low preempted by high")
        # Each one's wait for its queue, from creation to Running, once: low's and high's.
        waits = running.samples()[f'finetune_operator_queue_wait_seconds_count{{namespace="{namespace}"}}']
        assert waits == 2, waits
        message = condition(preempted, "Suspended")["message"]
        assert message.startswith("evicted by Kueue (Preempted): Preempted to accommodate a workload"), message
        assert "due to prioritization in the ClusterQueue" in message, message
        (eviction,) = preempted["status"]["evictions"]
        assert eviction["reason"] == "Preempted" and eviction["message"] in message
        assert _job_uid(cluster, namespace, "low") == job_uid  # suspended in place, not made anew
        assert "attempt" not in preempted["status"] and "failedAttempts" not in preempted["status"]
        assert condition(preempted, "Reconciling")["status"] == "True"
        events = ftj_events(cluster, namespace, "low")
        assert "Preempted" in events, events
        cluster.release_namespace(namespace)  # high ends; low is admitted again and runs to its end
        wait_phase(cluster, namespace, "high", "Succeeded", running)
        done = wait_phase(cluster, namespace, "low", "Succeeded", running)
        assert _job_uid(cluster, namespace, "low") == job_uid
        assert [e["reason"] for e in done["status"]["evictions"]] == ["Preempted"]
    finally:
        for level in ("low", "high"):
            cluster.kubectl(
                "delete", "workloadpriorityclass", f"{level}-{namespace}", "--ignore-not-found", check=False
            )


def test_a_deactivated_workload_says_it_will_not_run_until_reactivated(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    namespace, _ = queue
    cluster.apply(_queued("paused"), namespace=namespace)
    wait_phase(cluster, namespace, "paused", "Running", running)
    job_uid = _job_uid(cluster, namespace, "paused")
    name = _workload_of(cluster, namespace, job_uid)["metadata"]["name"]
    cluster.kubectl("patch", "workload", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"active":false}}')
    off = _wait_reason(cluster, namespace, "paused", "Deactivated", running)
    _print_tables(cluster, namespace, "workload deactivated")
    assert condition(off, "Suspended")["message"].startswith(
        f"Workload {name} is deactivated (spec.active: false): the training will not run until it is reactivated"
    )
    assert condition(off, "Reconciling")["status"] == "False"  # not on its way: Argo CD Suspended, kstatus Current
    assert "Deactivated" in ftj_events(cluster, namespace, "paused")
    cluster.kubectl("patch", "workload", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"active":true}}')
    wait_phase(cluster, namespace, "paused", "Running", running)
    cluster.release_namespace(namespace)
    wait_phase(cluster, namespace, "paused", "Succeeded", running)
    assert _job_uid(cluster, namespace, "paused") == job_uid


def test_a_users_suspend_deactivates_the_workload_and_resume_reactivates_it(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    """Kueue's way to stop an admitted Job: its Workload deactivated, not its spec.suspend raced."""
    namespace, _ = queue
    cluster.apply(_queued("user", activeDeadlineSeconds=3600), namespace=namespace)
    wait_phase(cluster, namespace, "user", "Running", running)
    job_uid = _job_uid(cluster, namespace, "user")
    # activeDeadlineSeconds told to Kueue, which counts admitted time across evictions.
    assert _workload_of(cluster, namespace, job_uid)["spec"]["maximumExecutionTimeSeconds"] == 3600
    cluster.kubectl("patch", "ftj", "user", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    held = wait_phase(cluster, namespace, "user", "Suspended", running)
    assert condition(held, "Suspended")["reason"] == "JobSuspended"
    assert _workload_of(cluster, namespace, job_uid)["spec"]["active"] is False
    assert cluster.get_json("job", "user", "-n", namespace)["spec"]["suspend"] is True  # by Kueue's eviction
    cluster.kubectl("patch", "ftj", "user", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_phase(cluster, namespace, "user", "Running", running)
    assert _workload_of(cluster, namespace, job_uid)["spec"]["active"] is True
    cluster.release_namespace(namespace)
    wait_phase(cluster, namespace, "user", "Succeeded", running)
    assert _job_uid(cluster, namespace, "user") == job_uid
    events = ftj_events(cluster, namespace, "user")
    assert events["Suspended"] <= events["Resumed"] <= events["TrainingComplete"], events


def test_a_finetunejob_made_suspended_is_not_run_by_its_queue(
    cluster: lc.Cluster, queue: tuple[str, str], running: OperatorProcess
) -> None:
    namespace, _ = queue
    cluster.apply(_queued("later", suspend=True), namespace=namespace)
    held = wait_phase(cluster, namespace, "later", "Suspended", running)
    job_uid = _job_uid(cluster, namespace, "later")
    cluster.wait_for(
        lambda: _workload_of(cluster, namespace, job_uid)["spec"]["active"] is False or None,
        what="its Workload deactivated",
        timeout=30,
    )
    assert condition(held, "Suspended")["reason"] == "JobSuspended"
    job = cluster.get_json("job", "later", "-n", namespace)
    assert job["spec"]["suspend"] is True and not (job.get("status") or {}).get("startTime"), job.get("status")
    cluster.kubectl("patch", "ftj", "later", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.release_namespace(namespace)
    wait_phase(cluster, namespace, "later", "Succeeded", running)


def test_the_readmes_kueue_example_is_admitted_and_runs(
    cluster: lc.Cluster, kueue: Kueue, running: OperatorProcess
) -> None:
    """examples/kueue/ as the README shows it, in a namespace of this test (its cluster-wide objects named
    after it, its claim left out: kwok mounts nothing)."""
    namespace = cluster.create_namespace(labels={MANAGED_NAMESPACE_LABEL: "true"})
    queues = [doc for doc in yaml.safe_load_all((EXAMPLES / "queues.yaml").read_text()) if doc]
    (ftj,) = [doc for doc in yaml.safe_load_all((EXAMPLES / "finetunejob.yaml").read_text()) if doc]
    renamed = {doc["metadata"]["name"]: f"{doc['metadata']['name']}-{namespace}" for doc in queues
               if doc["kind"] != "LocalQueue"}  # fmt: skip
    for doc in queues:
        if doc["kind"] == "LocalQueue":
            doc["metadata"]["namespace"] = namespace
            doc["spec"]["clusterQueue"] = renamed[doc["spec"]["clusterQueue"]]
            continue
        doc["metadata"]["name"] = renamed[doc["metadata"]["name"]]
        if doc["kind"] == "ClusterQueue":
            doc["spec"]["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            for group in doc["spec"]["resourceGroups"]:
                for flavor in group["flavors"]:
                    flavor["name"] = renamed[flavor["name"]]
    ftj["metadata"]["namespace"] = namespace
    labels = ftj["metadata"]["labels"]
    labels["kueue.x-k8s.io/priority-class"] = renamed[labels["kueue.x-k8s.io/priority-class"]]
    del ftj["spec"]["volumes"]
    try:
        cluster.apply(queues)
        cluster.apply(ftj)
        done = wait_phase(cluster, namespace, "llama-queued", "Succeeded", running)
        events = ftj_events(cluster, namespace, "llama-queued")
        assert {"PodsRunning", "TrainingComplete"} <= set(events), events
        job = cluster.get_json("job", "llama-queued", "-n", namespace)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/max-exec-time-seconds"] == "86400"
        assert done["status"]["phase"] == "Succeeded"
    finally:
        cluster.delete_namespace(namespace)
        for doc in queues:
            if doc["kind"] != "LocalQueue":
                cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found",
                                "--wait=false", check=False)  # fmt: skip
