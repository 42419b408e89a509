"""Training progress through the real API: kwok serves a trainer log the test grows; the operator reads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e import localcluster as lc
from finetune_operator.observe.times import parse_timestamp
from tests.e2e.helpers import LIGHT, phase_of, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.rule_cases import finetunejob

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
AI100 = {"cpu": "10m", "phison.com/ai100": "1"}
ONE_AI100 = {**LIGHT, "resources": {"requests": AI100, "limits": AI100}}


def _trainer(cluster: lc.Cluster, namespace: str, name: str) -> dict[str, Any]:
    ftj = cluster.get_json("finetunejob", name, "-n", namespace) or {}
    return (ftj.get("status") or {}).get("trainerStatus") or {}


def _metric(trainer: dict[str, Any], name: str) -> str | None:
    return next((m["value"] for m in trainer.get("metrics", []) if m["name"] == name), None)


def _wait_progress(
    cluster: lc.Cluster, namespace: str, name: str, percent: int, operator: OperatorProcess
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        trainer = _trainer(cluster, namespace, name)
        return trainer if trainer.get("progressPercentage") == percent else None

    return cluster.wait_for(
        reached,
        what=f"{namespace}/{name} to show {percent}%",
        timeout=90,
        state=lambda: str(_trainer(cluster, namespace, name)) + "\n" + operator.log()[-4000:],
    )


def _lines_until(text: str, marker: str) -> tuple[str, str]:
    end = text.index("\n", text.index(marker)) + 1
    return text[:end], text[end:]


def test_progress_moves_while_the_log_grows(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, tmp_path: Path
) -> None:
    log = tmp_path / "trainer.log"
    log.write_text("")
    local_cluster.fake_logs(namespace, log)
    local_cluster.hold_namespace(namespace)
    local_cluster.apply(finetunejob(ONE_AI100, name="grows"), namespace=namespace)
    wait_phase(local_cluster, namespace, "grows", "Running", running)

    text = (FIXTURES / "two-epochs-capped.log").read_text()
    head, rest = _lines_until(text, "[PHISON START] Epoch: 0, Iteration: 0")
    lc.append_log(log, head)
    trainer = _wait_progress(local_cluster, namespace, "grows", 0, running)
    assert _metric(trainer, "totalSteps") == "6"

    middle, rest = _lines_until(rest, "08:00:51.000000] [PHISON END]")
    lc.append_log(log, middle)
    trainer = _wait_progress(local_cluster, namespace, "grows", 50, running)
    assert _metric(trainer, "loss") == "8.0"
    assert _metric(trainer, "step") == "3"
    assert trainer["estimatedRemainingSeconds"] == 30
    table = local_cluster.kubectl("get", "ftj", "grows", "-n", namespace, "--no-headers").stdout.split()
    assert table[1:6] == ["Running", "1/1", "50", "8.0", "30s"]
    # The loss so far, drawn: the history's last point is this step's, every point one bar.
    assert trainer["lossHistory"][-1] == {"step": 3, "loss": "8.0"}
    assert table[6] == trainer["lossTrend"] and len(table[6]) == len(trainer["lossHistory"])
    # The pod's accelerator-seconds, by hand: one phison.com/ai100 from its start to the time counted.
    ftj = local_cluster.get_json("finetunejob", "grows", "-n", namespace)
    usage = ftj["status"]["usage"]
    (pod,) = local_cluster.get_json("pods", "-n", namespace)["items"]
    started = parse_timestamp(pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
    held = int((parse_timestamp(usage["countedUntil"]) - started).total_seconds())
    assert held > 0 and usage["acceleratorSeconds"] == [{"resource": "phison.com/ai100", "seconds": held}]
    job = f'{{name="grows",namespace="{namespace}"}}'
    scraped = running.samples()
    ai100 = f'namespace="{namespace}",resource="phison.com/ai100"'
    assert scraped[f'finetune_operator_training_accelerator_seconds{{name="grows",{ai100}}}'] == held
    assert scraped[f"finetune_operator_accelerator_seconds_total{{{ai100}}}"] == held
    assert scraped[f'finetune_operator_finetunejob_phase{{name="grows",namespace="{namespace}",phase="Running"}}'] == 1
    assert scraped[f"finetune_operator_training_stalled{job}"] == 0
    assert scraped[f"finetune_operator_training_progress_percent{job}"] == 50.0
    assert scraped[f"finetune_operator_training_loss{job}"] == 8.0
    assert (
        scraped[f"finetune_operator_training_tokens_per_second{job}"]
        == 50.5
        == float(_metric(trainer, "tokensPerSecond") or 0)
    )
    assert scraped[f"finetune_operator_training_remaining_seconds{job}"] == 30.0
    assert scraped['finetune_operator_finetunejobs{phase="Running"}'] >= 1
    assert scraped['controller_runtime_reconcile_total{controller="finetunejob",result="success"}'] >= 1
    assert 'controller_runtime_reconcile_time_seconds_count{controller="finetunejob"}' in scraped

    lc.append_log(log, rest)
    local_cluster.release_namespace(namespace)
    ftj = wait_phase(local_cluster, namespace, "grows", "Succeeded", running)
    trainer = ftj["status"]["trainerStatus"]
    assert trainer["progressPercentage"] == 100
    assert _metric(trainer, "loss") == "6.125"
    events = {e["reason"]: e["message"] for e in local_cluster.events(namespace)}
    assert "TrainingStarted" in events
    assert "final loss 6.125 at step 6" in events["TrainingComplete"]
    assert trainer["checkpoints"] == {"count": 1, "lastTime": "2026-10-01T08:01:30.000000Z"}
    assert trainer["lossHistory"][-1] == {"step": 6, "loss": "6.125"} and trainer["lossTrend"][-1] == "▁"
    assert ftj["status"]["usage"]["acceleratorSeconds"][0]["seconds"] >= held
    # A finished training has no progress gauges any more; it counts as Succeeded.
    scraped = running.samples()
    assert f"finetune_operator_training_progress_percent{job}" not in scraped
    assert scraped['finetune_operator_finetunejobs{phase="Succeeded"}'] >= 1


def test_trainer_failure_in_the_log_names_the_reason(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, tmp_path: Path
) -> None:
    log = tmp_path / "trainer.log"
    lc.append_log(log, (FIXTURES / "crashed.log").read_text())
    local_cluster.fake_logs(namespace, log)
    local_cluster.fail_namespace(namespace)
    local_cluster.apply(finetunejob({**LIGHT, "backoffLimit": 0}, name="crashes"), namespace=namespace)
    ftj = wait_phase(local_cluster, namespace, "crashes", "Failed", running)
    failed = next(c for c in ftj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "TrainerReportedFailure"
    evidence, kept = failed["message"].split("\nlast lines of the trainer's log:\n")
    assert evidence == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    # The record outlives the pod: the log's end stays in the condition after the TTL cleanup.
    expected = [line.strip() for line in (FIXTURES / "crashed.log").read_text().splitlines() if line.strip()]
    assert kept.split("\n") == [line[:200] for line in expected[-20:]]


def test_one_log_read_per_job_per_interval_and_no_idle_writes(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, tmp_path: Path
) -> None:
    """20 Running FineTuneJobs, a 1 s interval: count the operator's reads and writes."""
    log = tmp_path / "trainer.log"
    text = (FIXTURES / "two-epochs-capped.log").read_text()
    head, rest = _lines_until(text, "08:00:51.000000] [PHISON END]")
    lc.append_log(log, head)
    local_cluster.fake_logs(namespace, log)
    local_cluster.hold_namespace(namespace)
    names = [f"busy-{i:02d}" for i in range(20)]
    local_cluster.apply([finetunejob(LIGHT, name=n, namespace=namespace) for n in names])
    for name in names:
        _wait_progress(local_cluster, namespace, name, 50, running)
    time.sleep(2)  # let the last writes settle

    before = running.api_requests()
    started = time.monotonic()
    time.sleep(10)
    after = running.api_requests()
    elapsed = time.monotonic() - started
    reads = after.get("read_pod_log", 0) - before.get("read_pod_log", 0)
    writes = after.get("patch_status", 0) - before.get("patch_status", 0)
    intervals = elapsed / 1.0
    assert reads <= 20 * (intervals + 1), f"{reads} log reads in {elapsed:.1f}s for 20 jobs"
    assert reads >= 20, f"only {reads} log reads in {elapsed:.1f}s: the jobs are not being followed"
    assert writes == 0, f"{writes} status writes while no log changed"

    before = running.api_requests()
    lc.append_log(log, rest)
    for name in names:
        _wait_progress(local_cluster, namespace, name, 100, running)
    time.sleep(3)
    after = running.api_requests()
    # A write per job for the new lines (two where a read caught the file half-appended), and
    # nothing more while they stay the same.
    writes = after.get("patch_status", 0) - before.get("patch_status", 0)
    assert 20 <= writes <= 40, writes
    time.sleep(3)  # a window again: a late write for numbers that did not change would show here
    assert running.api_requests().get("patch_status", 0) == after.get("patch_status", 0)


def _log_condition(cluster: lc.Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    ftj = cluster.get_json("finetunejob", name, "-n", namespace) or {}
    conditions = (ftj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "LogUnreadable"), None)


def test_a_log_that_cannot_be_read_shows_a_condition_until_it_can(
    local_cluster: lc.Cluster, namespace: str, running: OperatorProcess, tmp_path: Path
) -> None:
    log = tmp_path / "not-yet.log"  # kwok serves this file, which does not exist yet: every read fails
    local_cluster.fake_logs(namespace, log)
    local_cluster.hold_namespace(namespace)
    local_cluster.apply(finetunejob(LIGHT, name="blind"), namespace=namespace)
    wait_phase(local_cluster, namespace, "blind", "Running", running)

    def condition_is(status: str) -> dict[str, Any] | None:
        found = _log_condition(local_cluster, namespace, "blind")
        return found if found and found["status"] == status else None

    unreadable = local_cluster.wait_for(
        lambda: condition_is("True"), what="LogUnreadable=True", timeout=60, state=running.log
    )
    assert unreadable["reason"] == "LogReadFailed"
    assert unreadable["message"].startswith("the training log could not be read 4 times in a row: ")
    assert phase_of(local_cluster, namespace, "blind") == "Running"  # a log read never decides the phase

    text = (FIXTURES / "two-epochs-capped.log").read_text()
    head, _ = _lines_until(text, "08:00:51.000000] [PHISON END]")
    lc.append_log(log, head)
    readable = local_cluster.wait_for(
        lambda: condition_is("False"), what="LogUnreadable=False", timeout=60, state=running.log
    )
    assert (readable["reason"], readable["message"]) == ("LogRead", "the training log is readable again")
    assert _wait_progress(local_cluster, namespace, "blind", 50, running)["progressPercentage"] == 50
