"""Progress from the log, the end of a run, TTL cleanup, FailedCreate and the standby replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finetune_operator.api.resource import load_finetunejob
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.controller import controller as controller_module
from finetune_operator.controller.controller import Peering
from finetune_operator.observe.ttl import Retention, cleanup_deadline
from finetune_operator.render import manifests
from finetune_operator.render.objects import config_map_name
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
STAMP = "[2026-11-28 12:00:{:02d}.000000]"
SCHEDULE = "[INFO] The current training schedule consists of 1 epochs with 4 iterations each.\n"


def _steps(count: int) -> str:
    lines = [SCHEDULE]
    for i in range(count):
        lines.append(f"{STAMP.format(2 * i)} [PHISON START] Epoch: 0, Iteration: {i}\n")
        lines.append(f"{STAMP.format(2 * i + 1)} [Loss]:{8 - i}.5\n")
        lines.append(f"{STAMP.format(2 * i + 1)} [PHISON END] Iteration: {i}\n")
    return "".join(lines)


def _pod(world: World, phase: str = "Running", message: str | None = None) -> None:
    status: dict[str, Any] = {"phase": phase}
    if message is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {"message": message}}}]
    pod = {"metadata": {"name": "run-abcde", "creationTimestamp": "2026-11-28T12:00:00Z", "uid": "p"}, "status": status}
    world.deliver_pods([pod])


def _running(world: World, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = world.add({**LIGHT, **(spec or {})})
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    _pod(world)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Running"
    return body


def test_progress_is_written_only_when_it_changes() -> None:
    world = World()
    body = _running(world)
    world.kube.logs[("ns", "run-abcde")] = _steps(2)
    world.read_log_once()
    writes = world.kube.calls["patch_status"]
    status = world.last_status()["trainerStatus"]
    assert status["progressPercentage"] == 50
    assert {"name": "loss", "value": "7.5"} in status["metrics"]
    world.stored(body)
    world.clock.advance(15)
    world.read_log_once()  # the same lines again
    assert world.kube.calls["patch_status"] == writes
    assert world.kube.reasons().count("TrainingStarted") == 1
    world.kube.logs[("ns", "run-abcde")] = _steps(3)
    world.read_log_once()
    assert world.kube.calls["patch_status"] == writes + 1
    assert world.last_status()["trainerStatus"]["progressPercentage"] == 75


def test_a_log_that_stays_unreadable_shows_a_condition_and_clears_it() -> None:
    world = World()
    _running(world)
    world.kube.logs[("ns", "run-abcde")] = RuntimeError("(400) container is not ready\nmore")
    for _ in range(3):
        world.read_log_once()
    assert all(c["type"] != "LogUnreadable" for c in world.last_status()["conditions"])
    world.read_log_once()
    assert world.condition("LogUnreadable")["reason"] == "LogReadFailed"
    assert world.condition("LogUnreadable")["message"].endswith("4 times in a row: (400) container is not ready")
    world.kube.logs[("ns", "run-abcde")] = _steps(1)
    world.read_log_once()
    assert (world.condition("LogUnreadable")["status"], world.condition("LogUnreadable")["reason"]) == (
        "False",
        "LogRead",
    )
    assert world.last_status()["phase"] == "Running"


def test_the_final_read_folds_a_last_line_without_newline() -> None:
    world = World()
    body = _running(world)
    world.kube.logs[("ns", "run-abcde")] = _steps(4) + "[2026-11-28 12:00:09.000000] [INFO] training complete!"
    world.deliver_job(active=0, ready=0, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    _pod(world, "Succeeded")
    world.event(world.stored(body))
    status = world.last_status()
    assert status["phase"] == "Succeeded"
    assert status["trainerStatus"]["progressPercentage"] == 100
    assert world.controller.memory.of(body["metadata"]["uid"]).followed is None  # never read again


def test_a_failed_run_keeps_the_trainers_words_and_the_logs_last_lines() -> None:
    world = World()
    body = _running(world)
    tail = _steps(1) + "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
    world.kube.logs[("ns", "run-abcde")] = tail + "[train.py] exits with return code = 1\n"
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}]
    world.deliver_job(active=0, ready=0, failed=1, conditions=failed)
    _pod(world, "Failed")
    world.event(world.stored(body))
    message = world.condition("Failed")["message"]
    assert world.condition("Failed")["reason"] == "TrainerReportedFailure"
    assert message.startswith("RuntimeError: CUDA out of memory\nlast lines of the trainer's log:\n")
    assert message.endswith("RuntimeError: CUDA out of memory\n[train.py] exits with return code = 1")
    assert len(message) < 5000
    assert world.last_status()["cleanupAfter"]  # kept for debugging, but not forever
    assert world.condition("Stalled")["status"] == "True"


def test_the_termination_message_gives_the_verdict_when_no_log_was_read() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.kube.logs[("ns", "run-abcde")] = RuntimeError("log gone")
    message = "verdict: failed\nreason: TrainerExitCode\nexitCode: 1\nevidence: exits with return code = 1\x1eok\n"
    _pod(world, "Failed", message)
    world.deliver_job(active=0, failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "X"}])
    world.event(world.stored(body))
    assert world.condition("Failed")["reason"] == "TrainerReportedFailure"
    assert world.condition("Failed")["message"] == "exits with return code = 1\x1eok"


def test_a_log_that_breaks_the_parser_does_not_hold_back_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> bool:
        raise ValueError("a line no parser foresaw")

    monkeypatch.setattr("finetune_operator.controller.following.fold", broken)
    world = World()
    body = _running(world)
    world.kube.logs[("ns", "run-abcde")] = _steps(1)
    message = "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nevidence: training complete!\n"
    _pod(world, "Succeeded", message)
    world.deliver_job(active=0, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Succeeded"


@pytest.mark.parametrize(("policy", "deleted"), [("DeleteChildren", False), ("DeleteFineTuneJob", True)])
def test_ttl_cleans_up_at_the_recorded_deadline(policy: str, deleted: bool) -> None:
    world = World()
    body = world.add({**LIGHT, "ttlSecondsAfterFinished": 30, "ttlPolicy": policy})
    world.kube.objects[("FineTuneJob", "ns", "run")] = body
    world.event(body)
    world.deliver_job(
        active=0,
        succeeded=1,
        conditions=[{"type": "Complete", "status": "True"}],
        completionTime="2026-11-28T12:00:10Z",
    )
    world.event(world.stored(body))
    uid = body["metadata"]["uid"]
    assert world.last_status()["cleanupAfter"] == "2026-11-28T12:00:40Z"
    assert world.timers.delay_of((uid, "ttl")) == 40.0  # the clock stands at 12:00:00
    world.clock.advance(40)
    world.stored(body)
    world.run(world.timers.fire((uid, "ttl")))
    assert world.kube.get("Job", "ns", "run") is None
    assert [k for k in world.kube.objects if k[0] == "ConfigMap"] == []  # collected with its Job
    assert "TTLExpired" in world.kube.reasons()
    assert (world.kube.get("FineTuneJob", "ns", "run") is None) is deleted
    if not deleted:
        status = world.last_status()
        assert status["cleanupTime"] == "2026-11-28T12:00:40Z" and "cleanupAfter" not in status
        assert world.condition("CleanedUp")["reason"] == "TTLExpired"
        writes = world.kube.writes()
        world.event(world.stored(body))  # nothing is left to do, and nothing is recreated
        world.controller.memory.forget(uid)  # nor after a restart (found on the real API server:
        world.jobs.clear()  # a merge patch had kept cleanupAfter, and every restart wrote again)
        world.event(world.stored(body))
        assert world.kube.writes() == writes


def test_a_failed_run_is_kept_for_its_own_retention_and_its_record_survives_cleanup() -> None:
    world = World()
    body = _running(world, {"ttlSecondsAfterFinished": 30, "ttlSecondsAfterFailure": 3600})
    world.kube.objects[("FineTuneJob", "ns", "run")] = body
    world.kube.logs[("ns", "run-abcde")] = _steps(1) + "RuntimeError: CUDA out of memory\n"
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}]
    world.deliver_job(active=0, failed=1, conditions=failed)  # a failed Job has no completionTime
    _pod(world, "Failed")
    world.event(world.stored(body))  # the clock stands at 12:00:00: the run ended now
    uid = body["metadata"]["uid"]
    record = world.condition("Failed")["message"]
    assert "RuntimeError: CUDA out of memory" in record
    assert world.last_status()["cleanupAfter"] == "2026-11-28T13:00:00Z"  # not the success TTL's 12:00:30
    assert world.timers.delay_of((uid, "ttl")) == 3600.0
    world.clock.advance(40)  # past the success TTL: a failed run's Job, pod and log stay for debugging
    world.event(world.stored(body))
    assert world.kube.get("Job", "ns", "run") is not None
    world.clock.advance(3560)
    world.stored(body)
    world.run(world.timers.fire((uid, "ttl")))
    assert world.kube.get("Job", "ns", "run") is None
    assert "TTLExpired" in world.kube.reasons()
    status = world.last_status()
    assert status["phase"] == "Failed" and status["cleanupTime"] == "2026-11-28T13:00:00Z"
    assert world.condition("Failed")["message"] == record  # the why outlives the pod and its log


def test_retention_decision() -> None:
    done = FineTuneJobStatus(phase="Succeeded", completion_time="2026-11-28T12:00:00Z")
    failed = done.model_copy(update={"phase": "Failed"})
    keep_failures = Retention(after_success=60, after_failure=None)
    at = datetime(2026, 11, 28, 12, 1, 0, tzinfo=UTC)
    assert cleanup_deadline(done, keep_failures) == at
    assert cleanup_deadline(failed, keep_failures) is None
    assert cleanup_deadline(failed, Retention(60, 3600)) == at + timedelta(minutes=59)
    assert cleanup_deadline(done.model_copy(update={"cleanup_time": "2026-11-28T12:01:00Z"}), keep_failures) is None
    assert cleanup_deadline(FineTuneJobStatus(phase="Running"), keep_failures) is None


def test_a_pod_the_job_controller_cannot_create_shows_the_api_servers_words() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    uid = body["metadata"]["uid"]
    assert world.timers.delay_of((uid, "pods")) == 5.0
    job = world.deliver_job()
    words = 'pods "run-x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true'
    world.kube.job_events.append(
        {
            "involvedObject": {"uid": job["metadata"]["uid"]},
            "reason": "FailedCreate",
            "message": f"Error creating: {words}",
        }
    )
    world.clock.advance(5)
    world.run(world.timers.fire((uid, "pods")))
    assert world.condition("PodCreateFailed")["status"] == "True"
    assert words in world.condition("PodCreateFailed")["message"]
    assert world.last_status()["phase"] == "Pending"
    assert world.kube.reasons().count("PodCreateFailed") == 1
    assert world.timers.delay_of((uid, "pods")) == 2.0
    world.run(world.timers.fire((uid, "pods")))  # the same words: no second Event
    assert world.kube.reasons().count("PodCreateFailed") == 1
    world.deliver_job(active=1)
    world.event(world.stored(body))
    assert world.condition("PodCreateFailed")["status"] == "False"


def test_a_held_job_without_pods_is_not_a_pod_creation_failure() -> None:
    """A suspended Job (the user's suspend, or a queue's) has no pod on purpose: no FailedCreate lookup."""
    world = World()
    body = world.add({**LIGHT, "suspend": True})
    world.event(body)
    job = world.deliver_job()
    assert job["spec"]["suspend"] is True
    world.clock.advance(60)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Suspended"
    assert world.kube.calls["list_events"] == 0
    assert "PodCreateFailed" not in [c["type"] for c in world.last_status()["conditions"]]


def test_a_standby_replica_reads_no_log_and_fires_no_timer() -> None:
    peering = Peering("p", (), "me", priority=5, lifetime=30)
    world = World(peering=peering)
    live = world.clock.now().isoformat()
    world.kube.peers = {
        "me": {"priority": 5, "lastseen": live, "lifetime": 30},
        "other": {"priority": 9, "lastseen": live, "lifetime": 30},
    }
    body = world.add(LIGHT)
    world.run(world.controller.reconcile_from_views("ns", "run"))
    assert world.controller.active is False
    assert world.kube.writes() == {}
    assert world.controller.phases() == {} and world.controller.trainings() == {}
    # What it remembered is dropped when it stands by (another replica's writes will make it stale).
    assert world.controller.memory.body("ns", "run") is None
    world.kube.peers["other"]["lastseen"] = (world.clock.now() - timedelta(seconds=31)).isoformat()
    world.event(body)  # kopf's watch resumes with a new list, perhaps before the check below
    world.run(world.controller.check_active())
    assert world.controller.active is True
    assert world.kube.calls["create_job"] == 1
    assert world.controller.memory.body("ns", "run") is not None  # becoming active forgets nothing


def test_a_finished_cleaned_up_finetunejob_leaves_only_its_phase_behind() -> None:
    """Thousands of them stay (GitOps keeps the record): each costs an entry of the phase count, no more."""
    world = World()
    body = world.add({**LIGHT, "ttlSecondsAfterFinished": 0})
    uid = body["metadata"]["uid"]
    world.event(body)
    world.deliver_job(active=0, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    world.event(world.stored(body))  # Succeeded, and cleaned up at once (ttl 0)
    assert world.last_status()["cleanupTime"]
    calls = dict(world.kube.calls)
    world.event(world.stored(body))  # the watch shows the cleaned-up status back
    assert dict(world.kube.calls) == calls
    assert world.controller.memory.get(uid) is None
    assert world.controller.memory.body("ns", "run") is None
    assert world.controller.phases() == {uid: "Succeeded"}
    assert not [key for key in world.timers.pending if key[0] == uid]
    world.run(world.controller.on_finetunejob("DELETED", world.stored(body)))
    assert world.controller.phases() == {}


def test_a_job_event_that_changes_nothing_read_makes_no_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    job = world.deliver_job(active=1)
    world.run(world.controller.on_job("MODIFIED", job, "run"))
    kept = world.controller.memory.of(body["metadata"]["uid"]).plan
    passes: list[object] = []
    planned: list[object] = []
    real_pass = controller_module.reconcile_pass

    async def counted(*args: object) -> None:
        passes.append(args)
        await real_pass(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(controller_module, "reconcile_pass", counted)
    monkeypatch.setattr("finetune_operator.controller.reconciler.plan", lambda *a: planned.append(a))
    world.run(world.controller.on_job("MODIFIED", dict(job), "run"))  # the same Job, as read
    assert passes == []
    world.event(world.stored(body))  # a pass, with the plan of the unchanged spec reused
    assert len(passes) == 1 and planned == []
    assert kept is world.controller.memory.of(body["metadata"]["uid"]).plan


def test_the_children_are_rendered_once_with_the_plan_and_made_as_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan renders the Job and the ConfigMap off the event loop; the pass that makes them uses
    that rendering (copies: the made objects never share the plan's dicts) instead of a second one."""
    renders = {"job": 0, "config_map": 0}
    real_job, real_config_map = manifests.job, manifests.config_map

    def job(*args: Any, **kwargs: Any) -> dict[str, Any]:
        renders["job"] += 1
        return real_job(*args, **kwargs)

    def config_map(*args: Any, **kwargs: Any) -> dict[str, Any]:
        renders["config_map"] += 1
        return real_config_map(*args, **kwargs)

    monkeypatch.setattr(manifests, "job", job)
    monkeypatch.setattr(manifests, "config_map", config_map)
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.event(world.stored(body))
    assert renders == {"job": 1, "config_map": 1}
    made_job = world.kube.get("Job", "ns", "run")
    ftj = load_finetunejob(world.stored(body))
    made_config_map = world.kube.get("ConfigMap", "ns", config_map_name(ftj))
    assert made_job is not None and made_config_map is not None
    expected_job = real_job(ftj)
    assert {k: v for k, v in made_job["metadata"].items() if k not in ("uid", "creationTimestamp")} == (
        expected_job["metadata"]
    )
    assert made_job["spec"] == expected_job["spec"]
    expected_config_map = real_config_map(ftj, made_job)
    assert made_config_map["data"] == expected_config_map["data"]
    assert made_config_map["metadata"]["ownerReferences"] == expected_config_map["metadata"]["ownerReferences"]
    plan = world.controller.memory.of(body["metadata"]["uid"]).plan
    assert plan is not None and plan.rendered is None  # kept light between passes
