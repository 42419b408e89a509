"""Reconcile passes seen from outside, in full: every Event (type, reason, words), the debug log of a
status write, what a pass does with a Job it does not own, an invalid spec, suspend and resume, the
TTL's two policies, attempts and resizes, the log read of a pass and the retry of a failed pass."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from finetune_operator.controller.following import read_progress
from finetune_operator.observe.following import Followed, LogTail, log_tail
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
TWO = {**LIGHT, "numNodes": 2, "backoffLimit": 2, "expConfig": {"processSettings": {"numGpus": 1}}}
SCHEDULE = "[INFO] The current training schedule consists of 1 epochs with 4 iterations each.\n"
STEP = (
    "[2026-11-28 12:00:00.000000] [PHISON START] Epoch: 0, Iteration: 0\n"
    "[2026-11-28 12:00:01.000000] [Loss]:3.25\n"
    "[2026-11-28 12:00:01.000000] [PHISON END] Iteration: 0\n"
)
COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED = [
    {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "limit",
        "lastTransitionTime": "2026-11-28T11:59:00Z",
    }
]
RANKS_FAILED = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "Container trainer..."}]
POD = "run-abcde"


def _pod(world: World, phase: str = "Running", message: str | None = None) -> None:
    status: dict[str, Any] = {"phase": phase}
    if message is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {"message": message}}}]
    world.deliver_pods([{"metadata": {"name": POD, "creationTimestamp": "2026-11-28T12:00:00Z"}, "status": status}])


def _running(world: World, spec: dict[str, Any] | None = None, log: str = "") -> dict[str, Any]:
    body = world.add({**LIGHT, **(spec or {})})
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    _pod(world)
    world.kube.logs[("ns", POD)] = log
    world.event(world.stored(body))
    return body


def test_the_events_of_a_successful_run_in_full() -> None:
    world = World()
    body = _running(world, {"ttlSecondsAfterFinished": 30}, SCHEDULE + STEP)
    world.read_log_once()
    world.clock.advance(65)
    world.deliver_job(active=0, ready=0, succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:05Z")
    world.event(world.stored(body))
    assert world.kube.events == [
        ("run", "Normal", "JobCreated", "Pending: created Job run"),
        ("run", "Normal", "PodsRunning", "Running: the training pod is running"),
        ("run", "Normal", "TrainingStarted", "the trainer finished its first step"),
        (
            "run",
            "Normal",
            "TrainingComplete",
            "Succeeded: the trainer logged 'training complete!' and exited 0 (final loss 3.25 at step 1, in 1m5s)",
        ),
    ]
    assert world.controller.phases() == {body["metadata"]["uid"]: "Succeeded"}


def test_the_events_and_the_debug_log_of_a_failed_run(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    caplog.set_level(logging.DEBUG, logger="finetune_operator")
    body = _running(world)
    world.clock.advance(60)
    world.deliver_job(active=0, ready=0, failed=1, conditions=FAILED)
    world.event(world.stored(body))
    # It ended (by the Job's record) before it started (by the operator's): no negative duration.
    assert world.kube.events[-1] == ("run", "Warning", "BackoffLimitExceeded", "Failed: limit (in 0s)")
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("status of")] == [
        "status of ns/run: Pending; changed ['conditions', 'jobName', 'nodes', 'observedGeneration', 'phase']",
        "status of ns/run: Running; changed ['conditions', 'nodes', 'phase', 'startTime']",
        "status of ns/run: Failed; changed ['cleanupAfter', 'completionTime', 'conditions', 'nodes', 'phase', "
        "'trainerStatus']",
    ]
    assert list(world.kube.stored_status) == [("ns", "run")]


def test_a_finished_run_without_times_or_loss_says_no_more() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=0, succeeded=1, conditions=COMPLETE)
    world.event(world.stored(body))
    assert world.kube.events[-1] == (
        "run",
        "Normal",
        "TrainingComplete",
        "Succeeded: the trainer logged 'training complete!' and exited 0",
    )


def test_a_loss_without_a_step_is_summed_up_as_such() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    _pod(world, "Succeeded")
    world.kube.logs[("ns", POD)] = "[2026-11-28 12:00:01.000000] [Loss]:2.5\n"
    world.deliver_job(active=0, succeeded=1, conditions=COMPLETE)
    world.event(world.stored(body))
    assert world.kube.events[-1][3] == (
        "Succeeded: the trainer logged 'training complete!' and exited 0 (final loss 2.5 at step ?)"
    )


def test_suspend_and_resume_are_passed_on_and_seen_in_the_same_pass() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1)
    suspended = world.edit(body, suspend=True)
    world.event(suspended)
    job = world.kube.get("Job", "ns", "run")
    assert job is not None and job["spec"]["suspend"] is True
    assert (world.last_status()["phase"], world.condition("Suspended")["reason"]) == ("Suspended", "JobSuspended")
    resumed = world.edit(body, suspend=False)
    world.event(resumed)
    assert job["spec"]["suspend"] is False
    assert world.last_status()["phase"] == "Pending"
    assert world.kube.events == [
        ("run", "Normal", "JobCreated", "Pending: created Job run"),
        ("run", "Normal", "Suspended", "spec.suspend is now true: passed to Job run"),
        ("run", "Normal", "JobSuspended", "Suspended: spec.suspend is true"),
        ("run", "Normal", "Resumed", "spec.suspend is now false: passed to Job run"),
        ("run", "Normal", "PodsPending", "Pending: the training pod is waiting to be scheduled or started"),
    ]


def test_a_suspended_run_is_no_longer_read_and_a_pending_one_still_is() -> None:
    world = World()
    body = _running(world)
    uid = body["metadata"]["uid"]
    # Its pod failed and is replaced (the replacement newer, Pending): still followed.
    failed, replacement = copy.deepcopy(world.pods[("ns", "run")][0]), copy.deepcopy(world.pods[("ns", "run")][0])
    failed["status"]["phase"] = "Failed"
    replacement["metadata"].update(name="run-y", creationTimestamp="2026-11-28T12:00:30Z")
    replacement["status"] = {"phase": "Pending"}
    world.deliver_pods([failed, replacement])
    world.deliver_job(active=1, ready=0, failed=1)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Pending"
    assert world.controller.memory.of(uid).followed is not None
    suspended = world.edit(body, suspend=True)
    world.event(suspended)
    assert world.controller.memory.of(uid).followed is None


@pytest.mark.parametrize(
    ("policy", "events"),
    [
        (
            "DeleteChildren",
            [
                ("run", "Normal", "TTLExpired", "deleted the Job, its pods and the ConfigMap"),
                (
                    "run",
                    "Normal",
                    "TrainingComplete",
                    "Succeeded: the trainer logged 'training complete!' and exited 0",
                ),
            ],
        ),
        # The FineTuneJob goes: no status is written, and no phase Event.
        (
            "DeleteFineTuneJob",
            [("run", "Normal", "TTLExpired", "deleting the FineTuneJob (ttlPolicy: DeleteFineTuneJob)")],
        ),
    ],
)
def test_the_ttl_says_what_it_deletes(policy: str, events: list[tuple[str, str, str, str]]) -> None:
    world = World()
    body = world.add({**LIGHT, "ttlSecondsAfterFinished": 0, "ttlPolicy": policy})
    deleted: list[tuple[str, str, str]] = []
    delete_finetunejob = world.kube.delete_finetunejob

    async def recorded(namespace: str, name: str, uid: str) -> None:
        deleted.append((namespace, name, uid))
        await delete_finetunejob(namespace, name, uid)

    world.kube.delete_finetunejob = recorded  # type: ignore[method-assign]
    world.event(body)
    world.deliver_job(active=0, succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:00:00Z")
    world.event(world.stored(body))
    # ttlSecondsAfterFinished 0: cleaned up in the pass that sees the end.
    assert world.kube.events[1:] == events
    assert deleted == ([("ns", "run", body["metadata"]["uid"])] if policy == "DeleteFineTuneJob" else [])


def test_a_finetunejob_without_a_deadline_has_no_ttl_timer() -> None:
    world = World()
    body = _running(world)
    uid = body["metadata"]["uid"]
    world.timers.schedule((uid, "ttl"), 30.0, world.controller.stop)
    world.event(world.stored(body))
    assert world.timers.delay_of((uid, "ttl")) is None


def test_the_specs_max_iter_caps_the_steps_until_the_log_says_otherwise() -> None:
    world = World()
    _running(world, {"expConfig": {"runSettings": {"maxIter": 2}}}, SCHEDULE + STEP)
    world.read_log_once()
    metrics = {m["name"]: m["value"] for m in world.last_status()["trainerStatus"]["metrics"]}
    assert (metrics["totalSteps"], world.last_status()["trainerStatus"]["progressPercentage"]) == ("2", 50)


def test_after_a_restart_the_first_step_is_not_announced_again_nor_the_same_progress_written() -> None:
    world = World()
    body = _running(world, log=SCHEDULE + STEP)
    world.read_log_once()
    writes, events = world.kube.calls["patch_status"], len(world.kube.events)
    world.controller.memory.forget(body["metadata"]["uid"])  # a new process
    world.clock.advance(30)  # a write now would carry a new lastUpdatedTime
    world.event(world.stored(body))
    world.read_log_once()
    world.event(world.stored(body))
    assert (world.kube.calls["patch_status"], len(world.kube.events)) == (writes, events)


def test_after_a_restart_the_configmap_made_is_the_one_the_job_mounts() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1)
    for key in [k for k in world.kube.objects if k[0] == "ConfigMap"]:
        del world.kube.objects[key]  # the crash came between the two creates
    world.controller.memory.forget(body["metadata"]["uid"])
    world.event(world.stored(body))
    assert [k for k in world.kube.objects if k[0] == "ConfigMap"] == [
        ("ConfigMap", "ns", f"run-config-{body['metadata']['uid'][:8]}")
    ]


def test_a_finished_run_whose_job_is_deleted_is_not_run_again() -> None:
    world = World()
    body = world.add(LIGHT)  # no TTL: the Job is kept, and a human deletes it
    world.event(body)
    world.deliver_job(active=0, succeeded=1, conditions=COMPLETE)
    world.event(world.stored(body))
    del world.kube.objects[("Job", "ns", "run")]
    world.jobs.clear()
    world.event(world.stored(body))
    assert world.kube.calls["create_job"] == 1
    assert world.last_status()["phase"] == "Succeeded"


def test_a_status_field_this_operator_does_not_know_is_dropped() -> None:
    world = World()
    body = world.add(LIGHT)
    body["status"] = {"phase": "Pending", "writtenByANewerOperator": "x"}
    world.event(body)
    assert world.kube.patches[0]["writtenByANewerOperator"] is None


def test_a_label_added_before_the_job_is_made_reaches_the_job() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("create_job", RuntimeError("API away"))
    world.event(body)
    queued = copy.deepcopy(body)
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpus"}
    world.event(queued)
    job = world.kube.get("Job", "ns", "run")
    assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"


def test_the_controller_remembers_only_the_finetunejobs_it_saw() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    assert list(world.controller.memory.objects) == [body["metadata"]["uid"]]


def test_a_deleted_finetunejobs_body_is_dropped_too() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.run(world.controller.on_finetunejob("DELETED", world.stored(body)))
    assert world.controller.memory.body("ns", "run") is None
    # A timer that fires later finds nothing to do.
    world.run(world.controller.reconcile_from_views("ns", "run"))
    assert world.kube.calls["create_job"] == 1


def test_a_finished_cleaned_up_finetunejob_seen_first_after_a_restart() -> None:
    world = World()
    body = world.add(LIGHT)
    body["status"] = {"phase": "Succeeded", "cleanupTime": "2026-11-28T12:00:00Z"}
    world.controller.memory.forget(body["metadata"]["uid"], ("ns", "run"))
    world.event(body)
    assert world.controller.phases() == {body["metadata"]["uid"]: "Succeeded"}
    assert world.kube.calls == {}


def test_a_failed_pod_says_why_when_its_log_does_not() -> None:
    world = World()
    body = _running(world, log=SCHEDULE + STEP)
    said = "verdict: failed\nreason: TrainerExitCode\nexitCode: 1\nevidence: exits with return code = 1\n"
    _pod(world, "Failed", said)
    world.deliver_job(active=0, ready=0, failed=1, conditions=FAILED)
    world.event(world.stored(body))
    assert world.condition("Failed")["reason"] == "TrainerReportedFailure"
    assert world.condition("Failed")["message"].split("\n")[0] == "exits with return code = 1"


def test_a_script_that_failed_is_named_with_the_entrypoints_words_whatever_the_log_says() -> None:
    """A prescript that ended the run, a postscript that failed after a complete log: the Failed
    condition says so in the entrypoint's words (before: the Job's BackoffLimitExceeded)."""
    for log, said, reason in (
        (
            "",
            "verdict: failed\nreason: PrescriptFailed\nexitCode: 6\nevidence: the Prescript stage ended the run "
            "(exit or exec) with status 0 before the trainer's verdict; end a prescript early with return, not exit\n",
            "PrescriptFailed",
        ),
        (
            SCHEDULE + STEP + "training complete!\n",
            "verdict: failed\nreason: PostscriptFailed\nexitCode: 3\nevidence: the postscript exited with status 3\n",
            "PostscriptFailed",
        ),
    ):
        world = World()
        body = _running(world, log=log)
        _pod(world, "Failed", said)
        world.deliver_job(active=0, ready=0, failed=1, conditions=FAILED)
        world.event(world.stored(body))
        failed = world.condition("Failed")
        assert failed["reason"] == reason
        assert failed["message"].split("\n")[0] == said.split("evidence: ")[1].rstrip("\n")


def test_a_job_that_is_not_ours_is_never_used() -> None:
    world = World()
    body = world.add(LIGHT)
    stranger = {
        "metadata": {"name": "run", "namespace": "ns", "uid": "x", "ownerReferences": []},
        "spec": {},
        "status": {"active": 1, "ready": 1},
    }
    world.kube.objects[("Job", "ns", "run")] = stranger
    world.jobs[("ns", "run")] = [copy.deepcopy(stranger)]
    world.event(body)
    assert (world.last_status()["phase"], world.condition("Stalled")["reason"]) == ("Pending", "NameConflict")
    assert world.timers.delay_of((body["metadata"]["uid"], "retry")) is None


def test_a_job_the_watch_no_longer_shows_is_looked_up_not_remembered() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1, ready=1)
    world.event(world.stored(body))
    world.jobs.clear()
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Running"
    assert world.kube.calls["create_job"] == 2  # the name answered: it is ours, and adopted
    assert world.timers.delay_of((body["metadata"]["uid"], "retry")) is None


def test_an_invalid_spec_without_generation_or_job() -> None:
    world = World()
    body = world.add({"securityContext": {"privileged": True}})
    del body["metadata"]["generation"]
    world.event(body)
    status = world.last_status()
    assert (status["phase"], status["observedGeneration"], status["nodes"]) == ("Failed", 0, "0/1")
    assert "attempt" not in status and "failedAttempts" not in status and "jobName" not in status


def test_a_spec_made_invalid_under_a_running_job_leaves_the_job_in_charge() -> None:
    world = World()
    body = _running(world)
    changed = world.edit(body, securityContext={"privileged": True})
    changed["metadata"]["generation"] = 2
    world.event(changed)
    assert world.last_status()["phase"] == "Running"
    assert (world.last_status()["jobName"], world.last_status()["observedGeneration"]) == ("run", 2)


def test_one_node_shows_no_attempts() -> None:
    world = World()
    _running(world)
    status = world.last_status()
    assert "attempt" not in status and "failedAttempts" not in status


def test_resizing_to_one_node_shows_the_attempt_it_took() -> None:
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    resized = world.edit(body, numNodes=1)
    world.event(resized)
    status = world.last_status()
    assert (status["phase"], status["attempt"]) == ("Suspended", 2)
    assert "failedAttempts" not in status  # none failed, and one node has no retries
    message = "numNodes is now 1: the held Job is made anew with 1 ranks"
    assert world.kube.events[-1] == ("run", "Normal", "Resized", message)
    assert world.condition("Suspended")["reason"] == "JobSuspended"


def test_a_held_job_of_the_same_size_is_kept() -> None:
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    world.event(world.stored(body))
    assert world.kube.get("Job", "ns", "run") is not None
    assert "Resized" not in world.kube.reasons()


def test_a_resize_after_a_failed_attempt_keeps_the_count_of_failures() -> None:
    world = World()
    body = world.add(TWO)
    world.event(body)
    first = world.deliver_job(active=0, failed=2, conditions=RANKS_FAILED)
    world.event(world.stored(body))  # attempt 2, after one failure
    world.jobs.clear()
    suspended = world.edit(body, suspend=True)
    world.run(world.controller.on_job("DELETED", first, "run"))
    world.event(suspended)
    world.deliver_job()
    resized = world.edit(suspended, numNodes=3)
    world.event(resized)
    assert (world.last_status()["attempt"], world.last_status()["failedAttempts"]) == (3, 1)


def test_a_retry_is_announced_as_a_warning_and_its_attempt_gets_its_own_configmap() -> None:
    world = World()
    body = world.add(TWO)
    uid = body["metadata"]["uid"]
    world.event(body)
    world.deliver_job(active=0, failed=2, conditions=RANKS_FAILED)
    world.event(world.stored(body))
    message = "attempt 1 failed: Container trainer...; starting attempt 2 of all 2 ranks"
    # Pending before and after: no phase Event, the retry's own.
    assert world.kube.events == [
        ("run", "Normal", "JobCreated", "Pending: created Job run"),
        ("run", "Warning", "Retrying", f"{message} (1 of 2 retries; its Job run is kept with its pods and their logs)"),
    ]
    assert world.timers.delay_of((uid, "retry")) is None  # the pass went through
    # The next pass makes attempt 2 beside the kept Job of attempt 1.
    world.event(world.stored(body))
    job = world.kube.get("Job", "ns", f"run-a2-{uid[:5]}")
    assert job is not None and job["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "2"
    assert world.kube.get("ConfigMap", "ns", f"run-config-{uid[:8]}-2") is not None


def test_a_stale_job_says_which_attempt_it_is_removed_for() -> None:
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    world.kube.fail_next("delete_job", RuntimeError("the operator died here"))
    resized = world.edit(body, numNodes=3)
    world.event(resized)
    world.controller.memory.forget(body["metadata"]["uid"])
    world.event(world.stored(resized))
    assert world.condition("Reconciling")["message"] == "a Job of attempt 1 is being removed before attempt 2"
    assert world.condition("Reconciling")["reason"] == "WaitingForPreviousAttempt"


def test_a_deleted_finetunejob_is_forgotten_without_a_call() -> None:
    world = World()
    body = _running(world)
    uid = body["metadata"]["uid"]
    world.timers.schedule((uid, "ttl"), 30.0, world.controller.stop)
    calls = dict(world.kube.calls)
    world.run(world.controller.on_finetunejob("DELETED", world.stored(body)))
    assert world.controller.memory.get(uid) is None
    assert world.timers.pending == {}
    assert dict(world.kube.calls) == calls


def test_job_events_of_a_job_that_is_not_the_owners_are_ignored() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    calls = dict(world.kube.calls)
    stranger = {"metadata": {"name": "run", "namespace": "ns", "uid": "x", "ownerReferences": []}, "status": {}}
    world.run(world.controller.on_job("MODIFIED", stranger, "run"))
    world.run(world.controller.on_job("MODIFIED", {**stranger, "metadata": {"namespace": "ns"}}, "nobody"))
    assert dict(world.kube.calls) == calls


def test_a_job_event_is_judged_and_a_deleted_job_made_anew() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    job = world.deliver_job(active=1, ready=1)
    world.run(world.controller.on_job("MODIFIED", job, "run"))
    assert world.last_status()["phase"] == "Running"
    del world.kube.objects[("Job", "ns", "run")]
    world.kube.objects = {k: v for k, v in world.kube.objects.items() if k[0] != "ConfigMap"}
    world.jobs.clear()
    world.run(world.controller.on_job("DELETED", job, "run"))
    assert world.kube.get("Job", "ns", "run") is not None
    assert world.kube.get("ConfigMap", "ns", f"run-config-{body['metadata']['uid'][:8]}") is not None


def test_a_finetunejob_being_deleted_is_left_alone() -> None:
    world = World()
    body = world.add(LIGHT)
    body["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:00Z"
    world.event(body)
    assert world.kube.calls == {}


def test_a_failing_pass_is_retried_after_2_4_8_seconds(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    caplog.set_level(logging.WARNING, logger="finetune_operator")
    delays = []
    for _ in range(3):
        world.kube.fail_next("create_job", RuntimeError("API away"))
        world.event(body)
        delays.append(world.timers.delay_of((uid, "retry")))
    assert delays == [2.0, 4.0, 8.0]
    assert caplog.records[0].getMessage() == "reconcile of ns/run failed (RuntimeError: API away); retrying in 2s"
    world.event(body)
    assert world.controller.memory.of(uid).failures == 0


def _followed(world: World) -> Followed:
    (followed,) = world.controller.memory.followed()
    return followed


def test_a_read_of_the_log_asks_for_a_bounded_tail_of_the_trainer() -> None:
    world = World()
    _running(world, log=SCHEDULE + STEP)
    asked: list[tuple[str, str, str, int, int]] = []
    read_log = world.kube.read_log

    async def recorded(namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int) -> LogTail:
        asked.append((namespace, pod, container, tail_lines, limit_bytes))
        return await read_log(namespace, pod, container, tail_lines, limit_bytes)

    world.kube.read_log = recorded  # type: ignore[method-assign]
    followed = _followed(world)
    assert _read(world, followed) is True
    assert _read(world, followed) is False  # nothing new
    assert asked == [("ns", POD, "trainer", 400, 262144)] * 2


def _read(world: World, followed: Followed, final: bool = False) -> bool:
    result: list[bool] = []

    async def read() -> None:
        result.append(await read_progress(world.controller, followed, final=final))

    world.run(read())
    return result[0]


def test_a_tail_cut_by_the_byte_limit_is_read_again_shorter() -> None:
    world = World()
    _running(world)
    asked: list[tuple[int, int]] = []
    huge = "x" * 300_000 + "\n"
    answers = [huge, SCHEDULE + "training complete!"]

    async def read_log(namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int) -> LogTail:
        asked.append((tail_lines, limit_bytes))
        assert (namespace, pod, container) == ("ns", POD, "trainer")
        return log_tail(answers.pop(0).encode()[:limit_bytes], limit_bytes)

    world.kube.read_log = read_log  # type: ignore[method-assign]
    followed = _followed(world)
    assert _read(world, followed, final=True) is True
    assert asked == [(400, 262144), (20, 262144)]
    # The short tail was whole: its last line counts at the end.
    assert followed.progress is not None and followed.progress.verdict == "complete"


def test_a_tail_exactly_at_the_byte_limit_counts_as_cut() -> None:
    world = World()
    _running(world)
    line = "training complete!"
    text = "x" * (262144 - len(line) - 1) + "\n" + line
    assert len(text.encode()) == 262144
    world.kube.logs[("ns", POD)] = text
    followed = _followed(world)
    _read(world, followed, final=True)
    # Still at the limit after the short read: the last line may be cut, so it is not folded.
    assert followed.progress is not None and followed.progress.verdict == "running"
    _read(world, followed, final=False)
    assert followed.progress.verdict == "running"


def test_a_live_read_leaves_a_line_without_newline_for_later() -> None:
    world = World()
    _running(world)
    world.kube.logs[("ns", POD)] = SCHEDULE + "training complete!"
    followed = _followed(world)
    _read(world, followed)
    assert followed.progress is not None and followed.progress.verdict == "running"


def test_a_log_with_a_latin1_byte_and_a_cut_bar_still_gives_progress_and_no_unreadable_condition() -> None:
    """One latin-1 byte among the last lines, and a tail the byte limit cut inside a tqdm bar of \u2588: the
    progress is read and the log is never called unreadable (before: UnicodeDecodeError every read)."""
    world = World()
    _running(world)
    bar = ("Saving checkpoint: " + "\u2588" * 40 + "\n").encode()
    data = (SCHEDULE + STEP).encode() + b"warning from caf\xe9 library\n" + bar * 20_000
    world.kube.logs[("ns", POD)] = data[: 262144 * 2 - 1]
    followed = _followed(world)
    for _ in range(5):
        _read(world, followed)
    assert followed.condition is None
    world.kube.logs[("ns", POD)] = (SCHEDULE + STEP).encode() + b"warning from caf\xe9 library\n"
    _read(world, followed)
    assert followed.progress is not None and followed.progress.newest_end is not None
    assert followed.progress.loss is not None and followed.condition is None


def test_a_log_that_cannot_be_read_is_named_by_its_first_line_or_its_type() -> None:
    world = World()
    _running(world)
    followed = _followed(world)
    world.kube.logs[("ns", POD)] = RuntimeError("")
    assert [_read(world, followed) for _ in range(4)] == [False, False, False, True]
    assert followed.condition is not None
    assert followed.condition.message == "the training log could not be read 4 times in a row: RuntimeError"
    assert followed.condition.observed_generation == 0
    world.kube.logs[("ns", POD)] = SCHEDULE
    assert _read(world, followed) is True
    assert (followed.condition.status, followed.condition.observed_generation) == ("False", 0)
    world.kube.logs[("ns", POD)] = RuntimeError("y" * 400 + "\nsecond line")
    for _ in range(4):
        _read(world, followed)
    assert followed.condition.message.endswith(": " + "y" * 300)


def test_without_a_started_pod_there_is_nothing_to_read() -> None:
    world = World()
    _running(world)
    world.pods.clear()
    assert _read(world, _followed(world)) is False
    assert world.kube.calls["read_pod_log"] == 0


def test_a_job_its_queue_holds_is_queued_in_the_words_of_its_workload_read_while_it_waits() -> None:
    world = World()
    body = world.add(LIGHT)
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    world.event(body)
    assert world.kube.calls.get("list_workloads") is None  # the Job is not held yet: no Workload read
    job = world.newest_job("ns", "run")
    assert job is not None
    # Kueue suspends the Job it takes over, and makes its Workload.
    job["spec"]["suspend"] = True
    short = "couldn't assign flavors to pod set main: insufficient unused quota for phison.com/ai100"
    world.kube.workloads.append(
        {
            "metadata": {"name": "job-run-1", "labels": {"kueue.x-k8s.io/job-uid": job["metadata"]["uid"]}},
            "spec": {"active": True},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                       "message": short}]},
        }
    )  # fmt: skip
    held = world.deliver_job()
    world.run(world.controller.on_job("MODIFIED", held, "run"))
    status = world.last_status()
    assert (status["phase"], world.kube.calls["list_workloads"]) == ("Queued", 1)
    suspended = next(c for c in status["conditions"] if c["type"] == "Suspended")
    assert (suspended["reason"], suspended["message"]) == (
        "WaitingForAdmission",
        f"waiting for admission by queue lq: {short}",
    )
    uid = body["metadata"]["uid"]
    assert (uid, "queue") in world.timers.pending  # read again while it waits
    # Admitted: Kueue lets the Job go; no Workload read any more.
    admitted = world.deliver_job(active=1, ready=1)
    admitted["spec"]["suspend"] = False
    world.run(world.controller.on_job("MODIFIED", admitted, "run"))
    assert (world.last_status()["phase"], world.kube.calls["list_workloads"]) == ("Running", 1)


def test_a_suspend_of_a_job_its_queue_manages_deactivates_its_workload_and_a_resume_reactivates_it() -> None:
    world = World()
    body = world.add(LIGHT)
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    world.event(body)
    job = world.newest_job("ns", "run")
    assert job is not None
    world.deliver_job(active=1, ready=1)
    suspended = world.stored(body)
    suspended["spec"]["suspend"] = True
    suspended["metadata"]["generation"] = 2
    world.event(suspended)  # no Workload yet: looked for again soon, nothing patched
    assert world.kube.calls.get("patch_job") is None and world.kube.calls.get("patch_workload") is None
    key = (body["metadata"]["uid"], "queue")
    assert world.timers.pending[key][0] == 1.0
    # Still none (Kueue slow, or not installed at all): looked for less and less often, at most each minute.
    delays = []
    for _ in range(8):
        world.run(world.timers.fire(key))
        delays.append(world.timers.pending[key][0])
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    workload = {
        "metadata": {"name": "job-run-1", "labels": {"kueue.x-k8s.io/job-uid": job["metadata"]["uid"]}},
        "spec": {"active": True},
    }
    world.kube.workloads.append(workload)
    world.event(suspended)
    stored = world.kube.get("Job", "ns", "run")
    assert stored is not None and stored["spec"].get("suspend") is not True  # Kueue's to suspend, not ours
    assert stored["metadata"]["annotations"]["finetune.aidaptiv.io/requested-suspend"] == "true"
    assert workload["spec"]["active"] is False and world.kube.calls["patch_workload"] == 1
    world.event(suspended)  # known deactivated: nothing read or patched again
    assert (world.kube.calls["patch_workload"], world.kube.calls["list_workloads"]) == (1, 10)
    resumed = world.stored(suspended)
    resumed["spec"]["suspend"] = False
    resumed["metadata"]["generation"] = 3
    world.event(resumed)
    assert workload["spec"]["active"] is True and world.kube.calls["patch_workload"] == 2
    assert stored["metadata"]["annotations"]["finetune.aidaptiv.io/requested-suspend"] == "false"


def test_without_kueue_a_queue_label_means_nothing_and_the_job_is_suspended_and_resumed_itself() -> None:
    world = World()
    world.kube.workloads = None  # the cluster has no Workload resource
    body = world.add(LIGHT)
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    world.event(body)
    world.deliver_job(active=1, ready=1)
    suspended = world.stored(body)
    suspended["spec"]["suspend"] = True
    suspended["metadata"]["generation"] = 2
    world.event(suspended)
    stored = world.kube.get("Job", "ns", "run")
    assert stored is not None and stored["spec"]["suspend"] is True
    assert world.kube.calls["patch_job"] == 1 and world.kube.calls.get("patch_workload") is None
