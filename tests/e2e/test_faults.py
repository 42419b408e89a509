"""The operator while its control plane fails: SIGKILL of kube-apiserver, then of etcd, mid-burst.

The pods are held Running (kwok) until every FineTuneJob has been seen Running, so each one's
story is the same whatever the timing of the faults: Pending, Running, Succeeded. etcd runs with
--unsafe-no-fsync, which loses nothing here: a SIGKILL of the process leaves its writes in the
page cache, and the restart keeps its data dir.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import localcluster as lc
from tests.e2e.helpers import LIGHT
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

BURST = 20
#: Before creating the FineTuneJob of this index, SIGKILL this component (and start it again).
FAULTS = {7: "kube-apiserver", 14: "etcd"}
AFTER = 3
PHASES = ("Pending", "Running", "Succeeded")
#: The reasons the operator gives for each phase (observe/status.py job_verdict).
#: The ConfigMap every namespace gets (not the operator's).
ROOT_CA = "kube-root-ca.crt"
REASONS = {"Pending": {"JobCreated", "PodsPending"}, "Running": {"PodsRunning"}, "Succeeded": {"TrainingComplete"}}


@pytest.fixture
def control_plane(local_control_plane: lc.LocalCluster) -> Iterator[lc.LocalCluster]:
    """The control plane, with every process running again after the test, whatever happened."""
    yield local_control_plane
    for name in lc.COMPONENTS:
        try:
            local_control_plane.start_component(name)
        except lc.ClusterError as error:
            if "still runs" not in str(error):
                raise
    local_control_plane.wait_healthy(timeout=120)


def api_ready(cluster: lc.Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", "--request-timeout=5s", check=False, timeout=30).returncode == 0


def create(cluster: lc.Cluster, namespace: str, name: str) -> None:
    """Create a FineTuneJob, retrying while the API comes back (an answer lost in a fault may hide a create)."""

    def accepted() -> bool:
        proc = cluster.create(finetunejob(LIGHT, name=name, namespace=namespace))
        if proc.returncode != 0 and "AlreadyExists" not in proc.stderr:
            raise lc.ClusterError(proc.stderr.strip())
        return True

    cluster.wait_for(accepted, what=f"the API server to accept FineTuneJob {name}", timeout=90, interval=1)


def inject(cluster: lc.Cluster, control_plane: lc.LocalCluster, component: str) -> None:
    """SIGKILL ``component``, see the API fail, start it again with the same arguments, wait until all is healthy."""
    assert control_plane.kill_component(component), f"{component} was not running"
    cluster.wait_for(lambda: not api_ready(cluster), what=f"the API to fail without {component}", timeout=30)
    control_plane.start_component(component)
    control_plane.wait_healthy(timeout=120)  # etcd: the API server reconnects by itself
    assert api_ready(cluster)


def ftjs(cluster: lc.Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(cluster.get_json("finetunejobs", "-n", namespace)["items"])


def wait_all(cluster: lc.Cluster, namespace: str, count: int, phase: str, operator: OperatorProcess) -> None:
    def reached() -> bool | None:
        items = ftjs(cluster, namespace)
        phases = [(i.get("status") or {}).get("phase") for i in items]
        return True if len(items) == count and all(p == phase for p in phases) else None

    def state() -> str:
        items = ftjs(cluster, namespace)
        phases = Counter(str((i.get("status") or {}).get("phase")) for i in items)
        behind = [i["metadata"]["name"] for i in items if (i.get("status") or {}).get("phase") != phase]
        return f"phases: {dict(phases)}; operator log {operator.log_path}\n" + cluster.stuck_report(namespace, behind)

    synced: list[str] = []

    def reached_on_synced_nodes() -> bool | None:
        synced.extend(cluster.sync_stuck_pods(namespace))  # what kubelets would do; kwok does not
        return reached()

    def state_with_synced() -> str:
        return f"pods synced again as a kubelet would (kwok drops some stages in a fault): {synced}\n" + state()

    # Bounded by the kubelet's sync period and the Job controller's pod backoff (at most 10 s here).
    cluster.wait_for(
        reached_on_synced_nodes, what=f"{count} FineTuneJobs {phase}", timeout=240, interval=1, state=state_with_synced
    )


def stories(cluster: lc.Cluster, namespace: str) -> dict[str, list[tuple[str, str, str]]]:
    """(type, reason, message) of the Events on each FineTuneJob (by uid), in the order they were made.

    Events have second precision; their resourceVersion (etcd's revision at creation, as the
    operator never updates an Event) orders them exactly.
    """
    found: dict[str, list[tuple[int, tuple[str, str, str]]]] = {}
    for event in cluster.events(namespace):
        involved = event["involvedObject"]
        if involved.get("kind") == "FineTuneJob":
            entry = (event.get("type", ""), event["reason"], event.get("message", ""))
            found.setdefault(involved["uid"], []).append((int(event["metadata"]["resourceVersion"]), entry))
    return {uid: [entry for _, entry in sorted(events)] for uid, events in found.items()}


def _outage_report(reason: str, message: str) -> bool:
    return reason == "PodCreateFailed" and ("Unavailable" in message or "connection refused" in message)


def phase_story(events: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(phase, reason) of the phase-change Events (their message starts with "<phase>: ")."""
    phases = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
    return [(m.split(":", 1)[0], r) for _, r, m in events if m.split(":", 1)[0] in phases]


def assert_one_child_each(cluster: lc.Cluster, namespace: str, items: list[dict[str, Any]]) -> None:
    """Exactly one Job per FineTuneJob (controller reference to its uid, same name), one ConfigMap each."""
    owners = {i["metadata"]["uid"]: i["metadata"]["name"] for i in items}
    jobs = cluster.get_json("jobs", "-n", namespace)["items"]
    owned = Counter(
        ref["uid"]
        for job in jobs
        for ref in job["metadata"].get("ownerReferences", [])
        if ref.get("kind") == "FineTuneJob" and ref.get("controller")
    )
    assert owned == Counter(owners.keys()), f"Jobs per FineTuneJob uid: {dict(owned)} (FineTuneJobs: {owners})"
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(owners.values())
    configs = [c for c in cluster.get_json("configmaps", "-n", namespace)["items"] if c["metadata"]["name"] != ROOT_CA]
    assert len(configs) == len(items), sorted(c["metadata"]["name"] for c in configs)


def test_apiserver_and_etcd_killed_mid_burst(
    local_cluster: lc.Cluster,
    control_plane: lc.LocalCluster,
    namespace: str,
    running: OperatorProcess,
    tmp_path: Path,
) -> None:
    cluster = local_cluster
    log = tmp_path / "trainer.log"
    log.write_text("")
    cluster.fake_logs(namespace, log)  # readable (empty) logs: log reads are not what is tested here
    cluster.hold_namespace(namespace)
    for index in range(BURST):
        if index in FAULTS:
            inject(cluster, control_plane, FAULTS[index])
        create(cluster, namespace, f"burst-{index:02d}")
    wait_all(cluster, namespace, BURST, "Running", running)

    for index in range(AFTER):  # the control plane is whole again: new work is served
        create(cluster, namespace, f"after-{index}")
    wait_all(cluster, namespace, BURST + AFTER, "Running", running)
    cluster.release_namespace(namespace)
    wait_all(cluster, namespace, BURST + AFTER, "Succeeded", running)

    assert running.process is not None and running.process.poll() is None, running.log()
    assert "controller_runtime_reconcile_total" in running.metrics()
    items = ftjs(cluster, namespace)
    assert_one_child_each(cluster, namespace, items)
    told = stories(cluster, namespace)
    wrong: dict[str, list[tuple[str, str, str]]] = {}
    for item in items:
        events = told.get(item["metadata"]["uid"], [])
        story = phase_story(events)
        complete = [p for p, _ in story] == list(PHASES) and all(r in REASONS[p] for p, r in story)
        # A fault the operator recovered from is not the user's business: no Warning either, but for the
        # Job controller's own words when the API server died under its pod create (a true report).
        if not complete or any(kind != "Normal" and not _outage_report(reason, text) for kind, reason, text in events):
            wrong[item["metadata"]["name"]] = events
    # One Event per phase change: a repeated phase (e.g. "Pending" twice) is not a change.
    assert not wrong, (
        f"{len(wrong)} of {len(items)} FineTuneJobs whose Events do not tell exactly Pending, Running, Succeeded"
        f" (operator log {running.log_path}):\n"
        + "\n".join(f"{n}: {e}" for n, e in sorted(wrong.items()))
        + "\n"
        + cluster.stuck_report(namespace, sorted(wrong))
    )
