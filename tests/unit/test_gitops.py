"""GitOps health checks (deploy/gitops/): Argo CD's Lua and Flux's CEL, run against FineTuneJob statuses.

The statuses come from the operator's own derive_status, so the checks follow what the operator writes.
The Lua runs in Lua 5.1 (what Argo CD's gopher-lua implements) with every number a float, as Argo CD
passes them; the CEL runs in cel-python with Flux's evaluation order (RFC-0009).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celpy
import lupa.lua51
import pytest
import yaml

from finetune_operator.api.base import API_VERSION, GROUP, KIND
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.status import Observation, derive_status

GITOPS = Path(__file__).resolve().parents[2] / "deploy" / "gitops"
HEALTH_LUA = GITOPS / "argocd" / "health.lua"
ARGOCD_CM_PATCH = GITOPS / "argocd" / "argocd-cm-patch.yaml"
FLUX_KUSTOMIZATION = GITOPS / "flux" / "kustomization-healthcheck.yaml"
ARGOCD_KEY = f"resource.customizations.health.{GROUP}_{KIND}"
TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

BACKOFF = "Job has reached the specified backoff limit"
INVALID = "spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8"
COMPLETE = "the trainer logged 'training complete!' and exited 0"


# --- FineTuneJobs as the operator leaves them ---------------------------------------------------------------


def _job(*, suspend: bool = False, ready: int = 0, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": "gpus"} if suspend else {}
    return {
        "metadata": {"name": "llama", "labels": labels},
        "spec": {"suspend": suspend},
        "status": {"active": 1 if ready else 0, "ready": ready, "conditions": conditions or []},
    }


def _status(job: dict[str, Any] | None, *, generation: int = 1, invalid: list[str] | None = None) -> dict[str, Any]:
    observation = Observation(
        generation=generation, status=FineTuneJobStatus(), job=job, job_name="llama", now=NOW, invalid=invalid
    )
    return derive_status(observation).model_dump(by_alias=True, exclude_none=True, mode="json")


def _ftj(status: dict[str, Any] | None, *, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "llama", "namespace": "ml", "generation": generation},
        "spec": {"image": "aidaptiv:latest"},
    }
    if status is not None:
        obj["status"] = status
    return obj


PENDING = _status(_job())
RUNNING = _status(_job(ready=1))
RUNNING_HALFWAY = {**RUNNING, "trainerStatus": {"progressPercentage": 50, "estimatedRemainingSeconds": 30}}
SUSPENDED = _status(_job(suspend=True))
SUCCEEDED = _status(_job(conditions=[{"type": "Complete", "status": "True"}]))
FAILED = _status(
    _job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": BACKOFF}])
)
INVALID_SPEC = _status(None, invalid=[INVALID])
# Not written by the operator today, but Stalled=True means failed whatever the phase says.
STALLED_RUNNING = {
    **RUNNING,
    "conditions": [
        {**c, "status": "True", "reason": "ImagePullBackOff", "message": "no such image"}
        if c["type"] == "Stalled"
        else c
        for c in RUNNING["conditions"]
    ],
}
NO_OBSERVED_GENERATION = {"phase": "Running"}


@dataclass(frozen=True)
class Case:
    obj: dict[str, Any]
    argocd: tuple[str, str]
    flux: str


LAG = "generation 2 not observed yet (observed 1)"
CASES = {
    "no status": Case(_ftj(None), ("Progressing", "Waiting for the operator to report a status"), "Error"),
    "empty status": Case(
        _ftj({"observedGeneration": 1}), ("Progressing", "Waiting for the operator to set a phase"), "InProgress"
    ),
    "pending": Case(
        _ftj(PENDING), ("Progressing", "Pending: waiting for the training Job and its pod to start"), "InProgress"
    ),
    "running": Case(_ftj(RUNNING), ("Progressing", "PodsRunning: the training pod is running"), "InProgress"),
    "running with progress": Case(
        _ftj(RUNNING_HALFWAY), ("Progressing", "PodsRunning: the training pod is running (50%)"), "InProgress"
    ),
    "suspended": Case(
        _ftj(SUSPENDED), ("Suspended", "JobSuspended: waiting for admission by queue gpus"), "InProgress"
    ),
    "succeeded": Case(_ftj(SUCCEEDED), ("Healthy", f"TrainingComplete: {COMPLETE}"), "Current"),
    "failed": Case(_ftj(FAILED), ("Degraded", f"BackoffLimitExceeded: {BACKOFF}"), "Failed"),
    "invalid spec": Case(_ftj(INVALID_SPEC), ("Degraded", f"InvalidSpec: {INVALID}"), "Failed"),
    "stalled while running": Case(_ftj(STALLED_RUNNING), ("Degraded", "ImagePullBackOff: no such image"), "Failed"),
    "running, generation lags": Case(
        _ftj(RUNNING, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress"
    ),
    "succeeded, generation lags": Case(
        _ftj(SUCCEEDED, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress"
    ),
    "suspended, generation lags": Case(
        _ftj(SUSPENDED, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress"
    ),
    # Failed is final for this operator: Argo CD says so at once; Flux's own generation check comes first.
    "failed, generation lags": Case(
        _ftj(FAILED, generation=2), ("Degraded", f"BackoffLimitExceeded: {BACKOFF}; {LAG}"), "InProgress"
    ),
    "no observedGeneration": Case(
        _ftj(NO_OBSERVED_GENERATION),
        ("Progressing", "Waiting for the operator: generation 1 not observed yet (observed none)"),
        "InProgress",
    ),
}


# --- Argo CD --------------------------------------------------------------------------------------------------


def _to_lua(lua: Any, value: Any) -> Any:
    """A JSON value as Argo CD hands it to Lua: objects and arrays as tables, every number a float."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(lua, item)
        return table
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a JSON value: {value!r}")


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.lua51.LuaRuntime()
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(HEALTH_LUA.read_text())
    return hs.status, hs.message


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_argocd_health(case: Case):
    assert argocd_health(case.obj) == case.argocd


def test_argocd_cm_patch_carries_exactly_health_lua():
    patch = yaml.safe_load(ARGOCD_CM_PATCH.read_text())
    assert (patch["apiVersion"], patch["kind"], patch["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert list(patch["data"]) == [ARGOCD_KEY]
    assert patch["data"][ARGOCD_KEY] == HEALTH_LUA.read_text(), (
        "argocd-cm-patch.yaml differs from health.lua: paste health.lua, indented by 4 spaces, under the key"
    )


# --- Flux -----------------------------------------------------------------------------------------------------


def _flux_check() -> dict[str, str]:
    kustomization = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["spec"]["wait"] is True
    (check,) = kustomization["spec"]["healthCheckExprs"]
    return check


def flux_status(obj: dict[str, Any], check: dict[str, str]) -> str:
    """kustomize-controller's verdict (RFC-0009): a lagging observedGeneration is InProgress; else the first of
    inProgress, failed, current that holds; else InProgress. An expression that cannot be evaluated (no
    `status` yet) is an error: Flux retries until the Kustomization's timeout."""
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"]["generation"]:
        return "InProgress"
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if not check.get(key):
            continue
        # cel-go errors on a top-level variable the object lacks, even inside has(); cel-python says false.
        if any(re.search(rf"(?<![.\w]){name}\b", check[key]) for name in TOP_LEVEL - obj.keys()):
            return "Error"
        try:
            result = env.program(env.compile(check[key])).evaluate(activation)
        except celpy.CELEvalError:
            return "Error"
        if isinstance(result, celpy.CELEvalError):
            return "Error"
        if result:
            return verdict
    return "InProgress"


def test_flux_health_check_is_for_finetunejobs():
    check = _flux_check()
    assert (check["apiVersion"], check["kind"]) == (API_VERSION, KIND)
    assert set(check) == {"apiVersion", "kind", "inProgress", "failed", "current"}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_flux_health(case: Case):
    assert flux_status(case.obj, _flux_check()) == case.flux


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_argocd_and_flux_agree(case: Case):
    """Same meaning, within what each tool can say (Flux has no Suspended and checks the generation first)."""
    argocd = {"Healthy": "Current", "Degraded": "Failed", "Progressing": "InProgress", "Suspended": "InProgress"}
    expected = argocd[case.argocd[0]]
    status = case.obj.get("status") or {}
    if "status" not in case.obj:
        expected = "Error"
    elif "observedGeneration" in status and status["observedGeneration"] != case.obj["metadata"]["generation"]:
        expected = "InProgress"
    assert case.flux == expected


# --- kstatus conventions ----------------------------------------------------------------------------------------


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's generic rules (sigs.k8s.io/cli-utils), what Flux and kubectl-style waiters apply by default."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"]["generation"]:
        return "InProgress"
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    return "Current"


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (FAILED, 1, "Failed"),
        (INVALID_SPEC, 1, "Failed"),
        (_status(_job(ready=1), generation=3), 4, "InProgress"),
        (SUCCEEDED, 1, "Current"),
        # No Reconciling condition: plain kstatus would call a running training done, hence healthCheckExprs.
        (RUNNING, 1, "Current"),
    ],
    ids=["failed job", "invalid spec", "generation lags", "succeeded", "running"],
)
def test_finetunejob_status_reads_per_kstatus(status: dict[str, Any], generation: int, expected: str):
    assert kstatus(_ftj(status, generation=generation)) == expected


@pytest.mark.parametrize("status", [PENDING, RUNNING, SUSPENDED, SUCCEEDED, FAILED, INVALID_SPEC])
def test_conditions_follow_kstatus_conventions(status: dict[str, Any]):
    """Stalled is always present, True exactly when failed; every condition names the generation it is for."""
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"] == "True") == (status["phase"] == "Failed")
    assert all(c["observedGeneration"] == status["observedGeneration"] for c in status["conditions"])
    assert not any(c["type"] in {"Reconciling", "Ready"} for c in status["conditions"])
