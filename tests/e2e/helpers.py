"""What the e2e tests ask of FineTuneJobs on the cluster: phases, conditions, events."""

from __future__ import annotations

from typing import Any

from e2e import localcluster as lc
from tests.e2e.operator_process import OperatorProcess

# Small pods that schedule anywhere at once, for tests that are about the operator, not the GPUs.
LIGHT = {
    "schedulerName": "",
    "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}},
    "ttlSecondsAfterFinished": None,
}


def get_ftj(cluster: lc.Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return cluster.get_json("finetunejob", name, "-n", namespace)


def phase_of(cluster: lc.Cluster, namespace: str, name: str) -> str | None:
    return ((get_ftj(cluster, namespace, name) or {}).get("status") or {}).get("phase")


def condition(ftj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in ftj["status"]["conditions"] if c["type"] == kind)


def wait_phase(
    cluster: lc.Cluster,
    namespace: str,
    name: str,
    phase: str,
    *operators: OperatorProcess,
    timeout: float = 120,
) -> dict[str, Any]:
    """Wait for a phase; on timeout, the error shows `kubectl describe` and the operators' logs."""

    def reached() -> dict[str, Any] | None:
        ftj = get_ftj(cluster, namespace, name)
        return ftj if ftj and (ftj.get("status") or {}).get("phase") == phase else None

    def state() -> str:
        logs = "".join(f"\n--- operator log {o.log_path} ---\n{o.log()[-6000:]}" for o in operators)
        return cluster.describe("ftj", name, "-n", namespace) + logs

    return cluster.wait_for(
        reached, what=f"FineTuneJob {namespace}/{name} to reach {phase}", timeout=timeout, state=state
    )


def ftj_events(cluster: lc.Cluster, namespace: str, name: str) -> dict[str, str]:
    """reason -> first time it was posted (events have second precision: compare with <=)."""
    found: dict[str, str] = {}
    for event in cluster.events(namespace):
        involved = event["involvedObject"]
        if involved.get("kind") == "FineTuneJob" and involved.get("name") == name:
            when = event.get("firstTimestamp") or event.get("eventTime") or ""
            found[event["reason"]] = min(found.get(event["reason"], when), when)
    return found


def config_maps_of(cluster: lc.Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The ConfigMaps made for a FineTuneJob (their names carry its uid), by the operator's label."""
    found = cluster.get_json("configmaps", "-n", namespace, "-l", f"finetune.aidaptiv.io/name={name}")
    return list((found or {}).get("items") or [])


def wait_seen(cluster: lc.Cluster, operator: OperatorProcess, count: int, timeout: float = 60) -> None:
    """Wait until the operator knows this many FineTuneJobs by phase (each looked at, or left alone as
    finished and cleaned up), instead of sleeping and hoping it has looked."""
    cluster.wait_for(
        lambda: operator.known_finetunejobs() >= count or None,
        what=f"{count} FineTuneJobs known",
        timeout=timeout,
        state=operator.log,
    )
