"""Several ranks: the Service and the Indexed Job, Running only with every rank, gang retry, resize."""

from __future__ import annotations

from typing import Any

from tests.unit.controller.fakes import World

TWO = {
    "numNodes": 2,
    "backoffLimit": 1,
    "schedulerName": "",
    "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}},
}
FAILED_JOB = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "Container trainer..."}]


def _rank(index: int, phase: str, finished: str | None = None, code: int = 1, message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if finished is not None:
        terminated = {"exitCode": code, "finishedAt": finished, "message": message}
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
    return {
        "metadata": {
            "name": f"run-{index}-x",
            "creationTimestamp": "2026-11-28T12:00:00Z",
            "labels": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": status,
    }


def _uid(body: dict[str, Any]) -> str:
    return str(body["metadata"]["uid"])


def test_the_ranks_get_a_headless_service_an_indexed_job_and_their_configmap() -> None:
    world = World()
    body = world.add(TWO)
    world.event(body)
    service = world.kube.get("Service", "ns", "run")
    job = world.kube.get("Job", "ns", "run")
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert job is not None
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    assert job["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "1"
    assert world.kube.get("ConfigMap", "ns", f"run-config-{_uid(body)[:8]}") is not None
    status = world.last_status()
    assert (status["phase"], status["nodes"], status["attempt"], status["failedAttempts"]) == ("Pending", "0/2", 1, 0)


def test_running_only_once_every_rank_runs() -> None:
    world = World()
    body = world.add(TWO)
    world.event(body)
    world.deliver_job(active=2, ready=1)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Pending"
    assert world.condition("Reconciling")["message"] == (
        "1 of 2 ranks running; waiting for the others to be scheduled or started"
    )
    assert world.last_status()["nodes"] == "1/2"
    world.deliver_job(active=2, ready=2)
    world.event(world.stored(body))
    assert (world.last_status()["phase"], world.last_status()["nodes"]) == ("Running", "2/2")
    # One rank done before the other is no step back.
    world.deliver_job(active=1, ready=1, succeeded=1)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Running"


def test_a_failed_attempt_starts_all_ranks_anew_naming_the_rank_that_failed_first() -> None:
    world = World()
    body = world.add(TWO)
    world.event(body)
    said = "verdict: failed\nreason: TrainerExitCode\nexitCode: 1\nevidence: NCCL error: unhandled system error\n"
    world.deliver_pods(
        [
            _rank(0, "Failed", "2026-11-28T12:00:09Z", 143, "verdict: failed\nreason: TrainerExitCode\n"),
            _rank(1, "Failed", "2026-11-28T12:00:05Z", 1, said),
        ]
    )
    first_job = world.deliver_job(active=0, failed=2, conditions=FAILED_JOB)
    world.event(world.stored(body))
    status = world.last_status()
    assert (status["phase"], status["attempt"], status["failedAttempts"]) == ("Pending", 2, 1)
    assert world.condition("Reconciling")["reason"] == "Retrying"
    assert world.condition("Reconciling")["message"] == (
        "attempt 1 failed: rank 1 failed first (exit code 1): NCCL error: unhandled system error; "
        "starting attempt 2 of all 2 ranks"
    )
    # The failed attempt's Job stays, with its pods and their logs (issue 20 #14), and the Event says so.
    assert world.kube.get("Job", "ns", "run") is not None and world.kube.calls["delete_job"] == 0
    assert world.kube.reasons().count("Retrying") == 1
    assert world.kube.events[-1][3].endswith("(1 of 1 retries; its Job run is kept with its pods and their logs)")
    # The next pass (at once, by its timer) makes the next attempt's Job under a name of its own, with its
    # own ConfigMap and Service, and its ranks told their rank 0's address.
    assert world.timers.delay_of((_uid(body), "children")) == 0.0
    world.run(world.timers.fire((_uid(body), "children")))
    second_name = f"run-a2-{_uid(body)[:5]}"
    second = world.kube.get("Job", "ns", second_name)
    assert second is not None and second["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "2"
    assert world.kube.calls["create_job"] == 2
    pod = second["spec"]["template"]["spec"]
    assert pod["subdomain"] == second_name
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"{second_name}-0.{second_name}.ns.svc"
    configmap = world.kube.get("ConfigMap", "ns", f"run-config-{_uid(body)[:8]}-2")
    assert configmap is not None
    assert f"master_addr: {second_name}-0.{second_name}.ns.svc" in configmap["data"]["exp_config.yaml"]
    service = world.kube.get("Service", "ns", second_name)
    assert world.kube.calls["create_service"] == 2 and service is not None
    assert service["metadata"]["ownerReferences"][0]["uid"] == second["metadata"]["uid"]
    assert service["spec"]["selector"]["batch.kubernetes.io/controller-uid"] == second["metadata"]["uid"]
    assert world.kube.get("Service", "ns", "run") is not None  # the first attempt's, with its Job
    # The kept Job's events change nothing; the new one's pods are the training's.
    world.deliver_job(active=2, ready=2)
    world.run(world.controller.on_job("MODIFIED", first_job, "run"))
    world.event(world.stored(body))
    status = world.last_status()
    assert (status["phase"], status["attempt"], status["jobName"]) == ("Running", 2, second_name)
    assert world.kube.calls["create_job"] == 2 and world.kube.calls["delete_job"] == 0


def test_the_last_attempt_failing_fails_the_finetunejob_with_the_rank_named() -> None:
    world = World()
    body = world.add({**TWO, "backoffLimit": 0})
    world.event(body)
    said = "verdict: failed\nreason: TrainerExitCode\nexitCode: 2\nevidence: RuntimeError: CUDA out of memory\n"
    world.deliver_pods([_rank(1, "Failed", "2026-11-28T12:00:05Z", 2, said)])
    world.deliver_job(active=0, failed=1, conditions=FAILED_JOB)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Failed"
    assert world.condition("Failed")["reason"] == "TrainerReportedFailure"
    assert world.condition("Failed")["message"] == "rank 1 failed first (exit code 2): RuntimeError: CUDA out of memory"
    assert world.kube.get("Job", "ns", "run") is not None  # kept for debugging until ttlSecondsAfterFailure
    assert "Retrying" not in world.kube.reasons()


def test_a_deadline_is_not_retried() -> None:
    world = World()
    body = world.add({**TWO, "activeDeadlineSeconds": 60})
    world.event(body)
    deadline = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]
    world.deliver_job(active=0, failed=2, conditions=deadline)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Failed"
    assert world.kube.calls["delete_job"] == 0


def test_after_a_crash_between_the_record_and_the_next_job_the_failed_attempt_is_kept_not_judged() -> None:
    world = World()
    body = world.add(TWO)
    world.event(body)
    world.deliver_job(active=0, failed=2, conditions=FAILED_JOB)
    world.event(world.stored(body))
    assert world.last_status()["attempt"] == 2
    world.timers.pending.clear()  # the operator died before its next pass
    world.controller.memory.forget(_uid(body))  # a new process, which finds the failed Job of attempt 1
    world.run(world.controller.on_finetunejob("ADDED", world.stored(body)))
    assert world.kube.get("Job", "ns", "run") is not None and world.kube.calls["delete_job"] == 0
    second = world.kube.get("Job", "ns", f"run-a2-{_uid(body)[:5]}")
    assert second is not None and second["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "2"
    status = world.last_status()
    assert (status["phase"], status["attempt"], status["failedAttempts"]) == ("Pending", 2, 1)
    assert world.kube.reasons().count("Retrying") == 1  # the retry was announced once
    assert world.kube.calls["create_job"] == 2


def test_a_held_job_of_an_older_attempt_is_deleted_and_not_judged() -> None:
    """Not a failed one: a held Job remade with a new node count, left by a crash before its delete."""
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    world.kube.fail_next("delete_job", RuntimeError("the operator died here"))
    resized = world.edit(body, numNodes=3)
    world.event(resized)
    assert world.last_status()["attempt"] == 2
    world.controller.memory.forget(_uid(body))
    world.run(world.controller.on_finetunejob("ADDED", world.stored(resized)))
    assert world.kube.get("Job", "ns", "run") is None
    assert world.condition("Reconciling")["reason"] == "WaitingForPreviousAttempt"
    assert world.kube.calls["create_job"] == 1


def test_changing_the_node_count_while_suspended_makes_the_job_anew() -> None:
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    resized = world.edit(body, numNodes=3)
    world.event(resized)
    assert world.kube.get("Job", "ns", "run") is None
    assert (world.last_status()["phase"], world.last_status()["attempt"]) == ("Suspended", 2)
    assert world.last_status()["failedAttempts"] == 0  # not a failure: no retry used
    assert "Resized" in world.kube.reasons()
    world.jobs.clear()
    world.event(world.stored(resized))
    job = world.kube.get("Job", "ns", f"run-a2-{_uid(body)[:5]}")
    assert job is not None and job["spec"]["parallelism"] == 3 and job["spec"]["suspend"] is True


def test_a_resize_and_resume_in_one_change_remakes_the_held_job_before_it_runs() -> None:
    """The CRD refuses it (issue 20 #11); a cluster with an older CRD may still store it: the held Job
    (2 ranks) is not resumed with the count of before, it is made anew with 4 and not suspended."""
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    both = world.edit(body, numNodes=4, suspend=False)
    world.event(both)
    assert world.kube.get("Job", "ns", "run") is None
    assert world.kube.calls["patch_job"] == 0  # never resumed as it was
    assert (world.last_status()["phase"], world.last_status()["attempt"]) == ("Pending", 2)
    world.jobs.clear()
    world.event(world.stored(both))
    job = world.kube.get("Job", "ns", f"run-a2-{_uid(body)[:5]}")
    assert job is not None and job["spec"]["parallelism"] == 4 and job["spec"]["suspend"] is False


def test_failed_attempts_jobs_are_kept_until_the_finetunejobs_cleanup_and_then_all_go() -> None:
    """Issue 20 #14: a multi-node run keeps every failed attempt's Job, pods and logs for
    ttlSecondsAfterFailure, as a single-node Job keeps its failed pods; its cleanup removes them all."""
    world = World()
    body = world.add({**TWO, "ttlSecondsAfterFailure": 60})
    uid = _uid(body)
    world.event(body)
    world.deliver_pods([_rank(1, "Failed", "2026-11-28T12:00:05Z", 1)])
    world.deliver_job(active=0, failed=1, conditions=FAILED_JOB)
    world.event(world.stored(body))
    world.run(world.timers.fire((uid, "children")))
    second = world.kube.get("Job", "ns", f"run-a2-{uid[:5]}")
    assert second is not None
    world.deliver_job(active=0, failed=1, conditions=FAILED_JOB)  # attempt 2, the last, fails too
    world.event(world.stored(body))
    status = world.last_status()
    assert (status["phase"], status["attempt"], status["failedAttempts"]) == ("Failed", 2, 1)
    assert status["cleanupAfter"] == "2026-11-28T12:01:00Z"
    assert world.kube.get("Job", "ns", "run") is not None and world.kube.get("Job", "ns", second["metadata"]["name"])
    assert len([k for k in world.kube.objects if k[0] == "ConfigMap"]) == 2
    world.clock.advance(60)
    world.stored(body)
    world.run(world.timers.fire((uid, "ttl")))
    assert [k for k in world.kube.objects if k[0] in ("Job", "ConfigMap", "Service")] == []
    assert world.kube.events[-1][2:] == ("TTLExpired", "deleted the Jobs of all 2 attempts, their pods and ConfigMaps")
    assert world.kube.calls["delete_job"] == 2


def test_a_group_resized_to_one_node_runs_its_remade_job_and_does_not_remove_it_again() -> None:
    """Found while making attempts' Jobs their own names: a single-node Job carried no attempt, so the
    Job remade for attempt 2 looked like attempt 1's, stale, and was deleted and made again for ever."""
    world = World()
    body = world.add({**TWO, "suspend": True})
    world.event(body)
    world.deliver_job()
    one = world.edit(body, numNodes=1)
    world.event(one)
    world.jobs.clear()
    world.event(world.stored(one))
    remade = world.newest_job()
    assert remade is not None and remade["spec"].get("parallelism", 1) == 1
    assert remade["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "2"
    world.deliver_job()
    world.event(world.stored(one))
    world.event(world.stored(one))
    assert (world.kube.calls["create_job"], world.kube.calls["delete_job"]) == (2, 1)
    assert (world.last_status()["phase"], world.last_status()["attempt"]) == ("Suspended", 2)
