"""GitOps health checks (deploy/gitops/): Argo CD's Lua and Flux's CEL, run against FineTuneJob statuses.

The statuses come from the operator's own derive_status, so the checks follow what the operator writes.
The Lua runs in Lua 5.1 (what Argo CD's gopher-lua implements) with every number a float, as Argo CD
passes them; the CEL runs in cel-python with Flux's evaluation order (RFC-0009).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import kstatus
from finetune_operator.api.base import ANNOTATION_REQUESTED_SUSPEND, API_VERSION, GROUP, KIND
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.status import Observation, Verdict, derive_status
from tests.gitops_checks import HEALTH_LUA, argocd_health, flux_check, flux_status
from tests.toolchain import tool

GITOPS = Path(__file__).resolve().parents[3] / "deploy" / "gitops"
ARGOCD_CM_PATCH = GITOPS / "argocd" / "argocd-cm-patch.yaml"
ARGOCD_KEY = f"resource.customizations.health.{GROUP}_{KIND}"
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

BACKOFF = "Job has reached the specified backoff limit"
INVALID = "spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8"
COMPLETE = "the trainer logged 'training complete!' and exited 0"


# --- FineTuneJobs as the operator leaves them ---------------------------------------------------------------


def _job(
    *, suspend: bool = False, queued: bool = False, ready: int = 0, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Job; `queued`: suspended by a queue controller although the operator asked for it to run."""
    labels = {"kueue.x-k8s.io/queue-name": "gpus"} if queued else {}
    asked = {ANNOTATION_REQUESTED_SUSPEND: "false" if queued else str(suspend).lower()}
    return {
        "metadata": {"name": "llama", "labels": labels, "annotations": asked},
        "spec": {"suspend": suspend or queued},
        "status": {"active": 1 if ready else 0, "ready": ready, "conditions": conditions or []},
    }


def _status(
    job: dict[str, Any] | None,
    *,
    generation: int = 1,
    invalid: list[str] | None = None,
    workload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    observation = Observation(
        generation=generation,
        status=FineTuneJobStatus(),
        job=job,
        job_name="llama",
        now=NOW,
        invalid=invalid,
        workload=workload,
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
QUEUED = _status(_job(queued=True))
PREEMPTION = "Preempted to accommodate a workload (UID: u1, JobUID: j1) due to prioritization in the ClusterQueue"
PREEMPTED = _status(
    _job(queued=True),
    workload={
        "metadata": {"name": "job-llama-1"},
        "spec": {"active": True},
        "status": {"conditions": [{"type": "Evicted", "status": "True", "reason": "Preempted", "message": PREEMPTION,
                                   "lastTransitionTime": "2026-11-28T11:00:00Z"}]},
    },
)  # fmt: skip
DEACTIVATED = _status(_job(queued=True), workload={"metadata": {"name": "job-llama-1"}, "spec": {"active": False}})
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
CONFLICT = "a Job named llama exists and does not belong to this FineTuneJob: delete or rename it"
NAME_TAKEN = derive_status(
    Observation(
        generation=1,
        status=FineTuneJobStatus(),
        job=None,
        job_name="llama",
        now=NOW,
        blocked=Verdict("Pending", "NameConflict", CONFLICT, stalled=True),
    )
).model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass(frozen=True)
class Case:
    """A FineTuneJob and what each GitOps tool says of it: the table of deploy/gitops/README.md."""

    obj: dict[str, Any]
    argocd: tuple[str, str]
    flux: str  # with the healthCheckExprs of deploy/gitops/flux
    kstatus: str  # plain kstatus (sigs.k8s.io/cli-utils): Flux without them, kpt, Config Sync


LAG = "generation 2 not observed yet (observed 1)"
CASES = {
    # Before the operator's first status write (well under a second) kstatus has nothing to go on.
    "no status": Case(_ftj(None), ("Progressing", "Waiting for the operator to report a status"), "Error", "Current"),
    "empty status": Case(
        _ftj({"observedGeneration": 1}),
        ("Progressing", "Waiting for the operator to set a phase"),
        "InProgress",
        "Current",
    ),
    "pending": Case(
        _ftj(PENDING),
        ("Progressing", "Pending: waiting for the training Job and its pod to start"),
        "InProgress",
        "InProgress",
    ),
    "running": Case(
        _ftj(RUNNING), ("Progressing", "PodsRunning: the training pod is running"), "InProgress", "InProgress"
    ),
    "running with progress": Case(
        _ftj(RUNNING_HALFWAY),
        ("Progressing", "PodsRunning: the training pod is running (50%)"),
        "InProgress",
        "InProgress",
    ),
    "waiting in a queue": Case(
        _ftj(QUEUED),
        ("Progressing", "WaitingForAdmission: waiting for admission by queue gpus"),
        "InProgress",
        "InProgress",
    ),
    "preempted": Case(
        _ftj(PREEMPTED),
        ("Progressing", f"Preempted: evicted by Kueue (Preempted): {PREEMPTION}"),
        "InProgress",
        "InProgress",
    ),
    # Waits for a human to reactivate it, as a suspended one does for spec.suspend.
    "deactivated in its queue": Case(
        _ftj(DEACTIVATED),
        (
            "Suspended",
            "Deactivated: Workload job-llama-1 is deactivated (spec.active: false): the training will not "
            "run until it is reactivated (kubectl patch workload job-llama-1 --type merge -p "
            '\'{"spec":{"active":true}}\')',
        ),
        "InProgress",
        "Current",
    ),
    # Held on purpose: kstatus calls it done, Argo CD Suspended; the Flux checks still wait for the training.
    "suspended": Case(_ftj(SUSPENDED), ("Suspended", "JobSuspended: spec.suspend is true"), "InProgress", "Current"),
    "succeeded": Case(_ftj(SUCCEEDED), ("Healthy", f"TrainingComplete: {COMPLETE}"), "Current", "Current"),
    "failed": Case(_ftj(FAILED), ("Degraded", f"BackoffLimitExceeded: {BACKOFF}"), "Failed", "Failed"),
    "invalid spec": Case(_ftj(INVALID_SPEC), ("Degraded", f"InvalidSpec: {INVALID}"), "Failed", "Failed"),
    "name taken": Case(_ftj(NAME_TAKEN), ("Degraded", f"NameConflict: {CONFLICT}"), "Failed", "Failed"),
    "stalled while running": Case(
        _ftj(STALLED_RUNNING), ("Degraded", "ImagePullBackOff: no such image"), "Failed", "Failed"
    ),
    "running, generation lags": Case(
        _ftj(RUNNING, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress", "InProgress"
    ),
    "succeeded, generation lags": Case(
        _ftj(SUCCEEDED, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress", "InProgress"
    ),
    "suspended, generation lags": Case(
        _ftj(SUSPENDED, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress", "InProgress"
    ),
    # A status of an older generation decides nothing, not even a failure (kstatus's rule, and Flux's).
    "failed, generation lags": Case(
        _ftj(FAILED, generation=2), ("Progressing", f"Waiting for the operator: {LAG}"), "InProgress", "InProgress"
    ),
    "no observedGeneration": Case(
        _ftj(NO_OBSERVED_GENERATION),
        ("Progressing", "Waiting for the operator: generation 1 not observed yet (observed none)"),
        "InProgress",
        "Current",
    ),
}


# --- Argo CD --------------------------------------------------------------------------------------------------


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


def test_flux_health_check_is_for_finetunejobs():
    check = flux_check()
    assert (check["apiVersion"], check["kind"]) == (API_VERSION, KIND)
    assert set(check) == {"apiVersion", "kind", "inProgress", "failed", "current"}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_flux_health(case: Case):
    assert flux_status(case.obj, flux_check()) == case.flux


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


# --- kstatus, the real one ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kstatus_verdicts() -> dict[str, str]:
    """What sigs.k8s.io/cli-utils' kstatus says of every case (the toolchain's kstatus tool)."""
    binary = tool("kstatus")
    verdicts = kstatus.compute([case.obj for case in CASES.values()], binary=binary)
    return {name: status for name, (status, _) in zip(CASES, verdicts, strict=True)}


@pytest.mark.parametrize("name", CASES.keys())
def test_kstatus(name: str, kstatus_verdicts: dict[str, str]):
    assert kstatus_verdicts[name] == CASES[name].kstatus


@pytest.mark.parametrize("name", [n for n in CASES if n not in {"no status", "empty status", "no observedGeneration"}])
def test_kstatus_waits_exactly_while_argocd_says_progressing(name: str, kstatus_verdicts: dict[str, str]):
    """Whatever the operator writes: a pipeline on kstatus and one on Argo CD wait for the same trainings.
    (Before the operator's first write there is no status to agree on.)"""
    assert (kstatus_verdicts[name] == "InProgress") == (CASES[name].argocd[0] == "Progressing")


@pytest.mark.parametrize("status", [PENDING, RUNNING, QUEUED, SUSPENDED, SUCCEEDED, FAILED, INVALID_SPEC, NAME_TAKEN])
def test_conditions_follow_kstatus_conventions(status: dict[str, Any]):
    """Stalled and Reconciling are always present, never both True; every condition names its generation."""
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert (conditions["Stalled"], conditions["Reconciling"]) != ("True", "True")
    waiting = status["phase"] in ("Pending", "Running") or status is QUEUED
    assert (conditions["Reconciling"] == "True") == (waiting and conditions["Stalled"] == "False")
    assert all(c["observedGeneration"] == status["observedGeneration"] for c in status["conditions"])


# --- the tables the users read --------------------------------------------------------------------------------

# Each row of the documented tables, by its first cell's start, and the cases it stands for.
README_ROWS = {
    "generation not observed yet": (
        "running, generation lags",
        "succeeded, generation lags",
        "failed, generation lags",
    ),
    "Pending, Running, or waiting": ("pending", "running", "running with progress", "waiting in a queue"),
    "Suspended by": ("suspended",),
    "Succeeded": ("succeeded",),
    "Failed, or a name conflict": ("failed", "name taken", "invalid spec"),
}
GITOPS_README_ROWS = {
    "`status.observedGeneration`": README_ROWS["generation not observed yet"],
    "`Pending`, `Running`": ("pending", "running", "running with progress"),
    "`Queued`: waiting": ("waiting in a queue", "preempted"),
    "`Queued` with its Kueue Workload deactivated": ("deactivated in its queue",),
    "`Suspended` by": ("suspended",),
    "`Succeeded`": ("succeeded",),
    "`Failed`": ("failed",),
    "`Pending` with `Stalled=True`": ("name taken",),
    "no status yet": ("no status",),
}
FLUX_WORDS = {"error, retried": "Error"}


def _table(path: Path, header: str) -> dict[str, tuple[str, str, str]]:
    """The rows of the Markdown table under `header`: first cell -> (Argo CD, kstatus, Flux)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = (cells[1], cells[2], FLUX_WORDS.get(cells[3], cells[3]))
    return rows


@pytest.mark.parametrize(
    ("document", "header", "expected"),
    [
        (GITOPS.parents[1] / "README.md", "| FineTuneJob | Argo CD | kstatus |", README_ROWS),
        (GITOPS / "README.md", "| FineTuneJob | Argo CD (", GITOPS_README_ROWS),
    ],
    ids=["README", "deploy/gitops/README"],
)
def test_the_documented_verdicts_are_those_the_tools_give(
    document: Path, header: str, expected: dict[str, tuple[str, ...]]
) -> None:
    """The verdicts the user reads are the cases the Lua, the CEL and the real kstatus are run against."""
    rows = _table(document, header)
    assert len(rows) == len(expected), f"{document}: a row was added or removed; map it to its cases here"
    for start, names in expected.items():
        (documented,) = [verdicts for first, verdicts in rows.items() if first.startswith(start)]
        for name in names:
            case = CASES[name]
            assert documented == (case.argocd[0], case.kstatus, case.flux), f"{document}: {start!r} vs case {name!r}"
