"""Failed trainings on the real node: the real exit codes, logs and termination messages, and what the
FineTuneJob says of each; a failed run's pod kept for ttlSecondsAfterFailure, then nothing left."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from e2e.standin import phisonai2

from e2e import localcluster as lc
from tests.e2e.helpers import condition, get_ftj, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode, container_state, on_real_node, wait_pod_gone_from_node
from tests.rule_cases import finetunejob

AI100 = {"phison.com/ai100": 1}
NAME_LABEL = "finetune.aidaptiv.io/name"
FAST = "export PHISONAI2_STANDIN_STEP_SECONDS=0.1\n"


@dataclass(frozen=True)
class Case:
    spec: dict[str, Any]
    exit_code: int
    entrypoint_reason: str  # the termination message's
    status_reason: str  # the FineTuneJob's Failed condition's
    first_line: str | None = None  # of the Failed condition's message
    says: tuple[str, ...] = field(default_factory=tuple)  # also in that message


CASES: dict[str, Case] = {
    "oom": Case(
        {"prescript": FAST + "export PHISONAI2_STANDIN_BEHAVIOUR=oom\n"},
        1,
        "TrainerReportedFailure",
        "TrainerReportedFailure",
        phisonai2.OOM,
        ("exits with return code = 1",),
    ),
    "exit-code": Case(
        {"prescript": FAST + "export PHISONAI2_STANDIN_BEHAVIOUR=fail PHISONAI2_STANDIN_EXIT_CODE=3\n"},
        3,
        "TrainerExitCode",
        "TrainerReportedFailure",
        "RuntimeError: stand-in failure (exit code 3) as PHISONAI2_STANDIN_BEHAVIOUR=fail asks",
        ("exits with return code = 3",),
    ),
    "config-missing": Case(
        {"prescript": FAST, "envConfig": {"pathSettings": {"trainDataPath": ["/config/train_data/other.yaml"]}}},
        1,
        "TrainerExitCode",
        "TrainerReportedFailure",
        None,
        ("FileNotFoundError: [Errno 2] No such file or directory: '/config/train_data/other.yaml'",),
    ),
    # The run's own stages: the entrypoint's reason and words (REALNODE-FINDINGS.md finding 2, fixed).
    "prescript": Case(
        {"prescript": "echo preparing\nexit 5\n"},
        5,
        "PrescriptFailed",
        "PrescriptFailed",
        "the Prescript stage exited with status 5",
        ("preparing",),
    ),
    "postscript": Case(
        {"prescript": FAST, "postscript": "echo copying\nexit 4\n"},
        4,
        "PostscriptFailed",
        "PostscriptFailed",
        "the postscript exited with status 4",
        ("copying", phisonai2.COMPLETE),
    ),
}


def _spec(node: RealNode, extra: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": node.image_parts(),
        "ttlSecondsAfterFinished": None,
        "backoffLimit": 0,
        "resources": {"requests": AI100, "limits": AI100},
        **extra,
    }
    return on_real_node(spec)


@pytest.fixture(scope="module")
def failed_runs(
    cluster: lc.Cluster, real_node: RealNode, operator: OperatorProcess
) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """Every case at once (they run side by side on the node), each waited for until Failed."""
    if operator.process is None or operator.process.poll() is not None:
        operator.start()
    namespace = cluster.create_namespace()
    try:
        for name, case in CASES.items():
            cluster.apply(finetunejob(_spec(real_node, case.spec), name, namespace))
        yield namespace, {name: wait_phase(cluster, namespace, name, "Failed", operator, timeout=180) for name in CASES}
    finally:
        cluster.delete_namespace(namespace)


@pytest.mark.parametrize("name", list(CASES))
def test_a_failure_ends_failed_with_the_real_exit_code_and_its_words(
    cluster: lc.Cluster, failed_runs: tuple[str, dict[str, dict[str, Any]]], name: str
) -> None:
    namespace, ftjs = failed_runs
    case = CASES[name]
    failed = condition(ftjs[name], "Failed")
    assert failed["reason"] == case.status_reason, failed
    if case.first_line is not None:
        assert failed["message"].splitlines()[0] == case.first_line, failed["message"]
    for words in case.says:
        assert words in failed["message"], failed["message"]
    (trainer_pod,) = cluster.pods(namespace, f"{NAME_LABEL}={name}")
    terminated = container_state(trainer_pod, "trainer")["terminated"]
    summary = dict(line.split(": ", 1) for line in terminated["message"].splitlines() if ": " in line)
    assert (terminated["exitCode"], summary["verdict"], summary["reason"], summary["exitCode"]) == (
        case.exit_code,
        "failed",
        case.entrypoint_reason,
        str(case.exit_code),
    )


@pytest.mark.parametrize(
    ("name", "evidence"),
    [("prescript", "the Prescript stage exited with status 5"), ("postscript", "the postscript exited with status 4")],
)
def test_a_failed_script_is_named_in_the_status(
    failed_runs: tuple[str, dict[str, dict[str, Any]]], name: str, evidence: str
) -> None:
    _, ftjs = failed_runs
    assert evidence in condition(ftjs[name], "Failed")["message"]


def test_a_failed_runs_pod_and_logs_stay_for_ttl_seconds_after_failure_then_nothing_is_left(
    cluster: lc.Cluster, namespace: str, real_node: RealNode, running: OperatorProcess
) -> None:
    spec = _spec(
        real_node, {"prescript": FAST + "export PHISONAI2_STANDIN_BEHAVIOUR=fail\n", "ttlSecondsAfterFailure": 15}
    )
    cluster.apply(finetunejob(spec, "kept", namespace))
    wait_phase(cluster, namespace, "kept", "Failed", running, timeout=120)
    (trainer_pod,) = cluster.pods(namespace, f"{NAME_LABEL}=kept")
    pod_name, uid = trainer_pod["metadata"]["name"], trainer_pod["metadata"]["uid"]
    # Before the TTL: the real container's log is there for `kubectl logs`.
    log = cluster.kubectl("logs", "-n", namespace, pod_name).stdout
    assert "[finetune-operator] trainer verdict: failed (TrainerExitCode)" in log
    assert "exits with return code = 1" in log
    ftj = cluster.wait_for(
        lambda: (f := get_ftj(cluster, namespace, "kept")) and (f.get("status") or {}).get("cleanupTime") and f,
        what="FineTuneJob kept cleaned up after its TTL",
        timeout=120,
        state=lambda: cluster.describe("ftj", "kept", "-n", namespace),
    )
    assert condition(ftj, "Failed")["reason"] == "TrainerReportedFailure"  # the record outlives the pod
    cluster.wait_for(
        lambda: (
            cluster.get_json("pod", pod_name, "-n", namespace) is None
            and cluster.get_json("job", "kept", "-n", namespace) is None
        ),
        what="the Job and its pod gone",
        timeout=120,
    )
    wait_pod_gone_from_node(cluster, real_node, uid)
