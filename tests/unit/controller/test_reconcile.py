"""The reconcile pass, with the Kube port faked in memory and a clock the test moves."""

from __future__ import annotations

import copy

from finetune_operator.controller.context import Settings
from finetune_operator.controller.kube import Refused
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-28T12:01:00Z"}]
FAILED = [
    {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": "2026-11-28T12:01:00Z",
    }
]


def test_first_pass_makes_the_job_then_its_configmap_owned_by_the_job() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    job = world.kube.get("Job", "ns", "run")
    (config,) = [o for (kind, _, _), o in world.kube.objects.items() if kind == "ConfigMap"]
    assert job is not None and job["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert config["metadata"]["name"] == f"run-config-{body['metadata']['uid'][:8]}"
    assert config["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "run",
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert world.kube.writes() == {"create_job": 1, "create_configmap": 1, "patch_status": 1, "create_event": 1}
    assert (world.last_status()["phase"], world.condition("Reconciling")["status"]) == ("Pending", "True")


def test_a_second_pass_creates_nothing_even_before_the_watch_has_the_job() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.event(world.stored(body))  # the Job watch has not delivered the Job yet
    world.deliver_job(active=1)
    world.event(world.stored(body))
    assert (world.kube.calls["create_job"], world.kube.calls["create_configmap"]) == (1, 1)


def test_running_then_succeeded_with_one_write_each_and_an_event_per_phase() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Running"
    world.deliver_job(active=0, ready=0, succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
    world.event(world.stored(body))
    status = world.last_status()
    assert status["phase"] == "Succeeded"
    assert status["completionTime"] == "2026-11-28T12:01:00Z"
    assert status["cleanupAfter"] == "2026-11-28T12:02:00Z"  # ttlSecondsAfterFinished 60
    assert world.condition("Reconciling")["status"] == "False"
    assert world.kube.calls["patch_status"] == 3
    assert world.kube.reasons() == ["JobCreated", "PodsRunning", "TrainingComplete"]


def test_a_terminal_phase_is_sticky_against_stale_events() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=0, succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
    world.event(world.stored(body))
    writes = world.kube.calls["patch_status"]
    stale = copy.deepcopy(body)
    stale["status"] = {"phase": "Running"}  # a body older than the terminal write
    world.jobs[("ns", "run")] = [{**world.jobs[("ns", "run")][0], "status": {"active": 1, "ready": 1}}]
    world.event(stale)
    assert world.kube.calls["patch_status"] == writes
    assert world.kube.calls["create_job"] == 1


def test_a_refused_job_leaves_nothing_and_ends_invalid_spec() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("create_job", Refused('Job.batch "run" is invalid: spec.template: forbidden'))
    world.event(body)
    assert world.kube.objects == {}
    status = world.last_status()
    assert status["phase"] == "Failed"
    assert world.condition("Stalled")["reason"] == "InvalidSpec"
    assert "the Job is invalid: Job.batch" in world.condition("Failed")["message"]


def test_a_refused_configmap_takes_its_job_with_it() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("create_configmap", Refused("ConfigMap is too long"))
    world.event(body)
    assert world.kube.objects == {}
    assert world.kube.calls["delete_job"] == 1
    assert world.condition("Failed")["reason"] == "InvalidSpec"
    assert "the ConfigMap is invalid: ConfigMap is too long" in world.condition("Failed")["message"]


def test_a_foreign_job_of_the_same_name_stalls_until_it_goes() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.objects[("Job", "ns", "run")] = {"metadata": {"name": "run", "uid": "someone-else"}, "spec": {}}
    world.event(body)
    status = world.last_status()
    assert status["phase"] == "Pending"
    assert (world.condition("Stalled")["status"], world.condition("Stalled")["reason"]) == ("True", "NameConflict")
    assert world.condition("Reconciling")["status"] == "False"
    assert world.kube.calls["create_configmap"] == 0
    del world.kube.objects[("Job", "ns", "run")]
    world.run(world.timers.fire((body["metadata"]["uid"], "children")))
    assert world.kube.get("Job", "ns", "run") is not None
    assert world.condition("Stalled")["status"] == "False"


def test_the_job_of_a_deleted_namesake_is_waited_for_not_a_conflict() -> None:
    world = World()
    body = world.add(LIGHT)
    owner = {"kind": "FineTuneJob", "name": "run", "uid": "previous-uid", "controller": True}
    world.kube.objects[("Job", "ns", "run")] = {"metadata": {"name": "run", "uid": "j", "ownerReferences": [owner]}}
    world.event(body)
    assert world.last_status()["phase"] == "Pending"
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Reconciling")["reason"] == "WaitingForPreviousRun"
    assert world.timers.delay_of((body["metadata"]["uid"], "children")) == 2.0


def test_a_foreign_configmap_is_never_mounted_the_job_is_withdrawn() -> None:
    world = World()
    body = world.add(LIGHT)
    name = f"run-config-{body['metadata']['uid'][:8]}"
    world.kube.objects[("ConfigMap", "ns", name)] = {"metadata": {"name": name, "uid": "c"}, "data": {"x": "y"}}
    world.event(body)
    assert world.kube.get("Job", "ns", "run") is None
    assert world.condition("Stalled")["reason"] == "NameConflict"
    assert f"a ConfigMap named {name} exists" in world.condition("Stalled")["message"]


def test_after_a_restart_a_missing_configmap_is_made_and_a_present_one_is_not() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    job = world.deliver_job(active=1)
    for key in [k for k in world.kube.objects if k[0] == "ConfigMap"]:
        del world.kube.objects[key]  # the crash came between the two creates
    world.controller.memory.forget(body["metadata"]["uid"])  # a new process
    world.run(world.controller.on_finetunejob("ADDED", world.stored(body)))
    assert world.kube.calls["create_configmap"] == 2
    world.controller.memory.forget(body["metadata"]["uid"])
    world.run(world.controller.on_finetunejob("ADDED", world.stored(body)))
    assert (world.kube.calls["create_configmap"], world.kube.calls["create_job"]) == (2, 1)
    assert job["metadata"]["uid"] == world.kube.get("Job", "ns", "run")["metadata"]["uid"]


def test_after_a_restart_a_suspended_jobs_configmap_is_looked_at_only_when_it_resumes() -> None:
    """A thousand suspended FineTuneJobs after a restart cost no read and no rendering: no pod needs a
    ConfigMap before its Job resumes, and the pass that resumes it makes a missing one first."""
    world = World()
    body = world.add({**LIGHT, "suspend": True})
    world.event(body)
    world.deliver_job(active=0)
    for key in [k for k in world.kube.objects if k[0] == "ConfigMap"]:
        del world.kube.objects[key]  # the crash came between the two creates
    world.controller.memory.forget(body["metadata"]["uid"])  # a new process
    world.kube.calls.clear()
    world.kube.call_order.clear()
    world.run(world.controller.on_finetunejob("ADDED", world.stored(body)))
    assert dict(world.kube.calls) == {}
    assert world.controller.memory.of(body["metadata"]["uid"]).plan.rendered is None  # type: ignore[union-attr]
    resumed = world.edit(body, suspend=False)
    world.run(world.controller.on_finetunejob("MODIFIED", resumed))
    assert [c for c in world.kube.call_order if c in ("read_configmap", "create_configmap", "patch_job")] == [
        "read_configmap",
        "create_configmap",
        "patch_job",
    ]


def test_a_privileged_trainer_is_refused_unless_the_operator_allows_it() -> None:
    spec = {**LIGHT, "securityContext": {"privileged": True}}
    world = World()
    world.event(world.add(spec))
    assert world.kube.calls["create_job"] == 0
    assert "--allow-privileged" in world.condition("Failed")["message"]
    allowed = World(Settings(allow_privileged=True))
    allowed.event(allowed.add(spec))
    assert allowed.kube.get("Job", "ns", "run")["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "privileged"
    ]


def test_an_exception_while_validating_is_invalid_spec_not_a_retry_loop() -> None:
    world = World()
    body = world.add({**LIGHT, "resources": {"requests": {"cpu": "1e1000000"}, "limits": {"cpu": "1e1000000"}}})
    world.event(body)
    assert world.condition("Stalled")["reason"] == "InvalidSpec"
    assert "between 0 and 9223372036854775807" in world.condition("Failed")["message"]
    assert (body["metadata"]["uid"], "retry") not in world.timers.pending


def test_an_api_error_is_retried_with_a_growing_backoff() -> None:
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.fail_next("create_job", RuntimeError("connection reset"))
    world.kube.fail_next("create_job", RuntimeError("connection reset"))
    world.event(body)
    assert world.timers.delay_of((uid, "retry")) == 2.0
    world.run(world.timers.fire((uid, "retry")))
    assert world.timers.delay_of((uid, "retry")) == 4.0
    world.run(world.timers.fire((uid, "retry")))
    assert world.kube.get("Job", "ns", "run") is not None
    assert (uid, "retry") not in world.timers.pending
    assert world.controller.memory.of(uid).failures == 0


def test_a_configmap_this_process_failed_to_make_is_made_even_if_a_pod_seems_started() -> None:
    """Found by the fault e2e (API server killed between the Job's create and its ConfigMap's): a pod that
    runs does not prove the ConfigMap exists when this process knows its create failed (kwok runs pods
    without their volumes; so could a ConfigMap marked optional one day)."""
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.fail_next("create_configmap", RuntimeError("connection refused"))
    world.event(body)
    assert not [k for k in world.kube.objects if k[0] == "ConfigMap"]
    world.deliver_job(active=1)
    world.deliver_pods([{"metadata": {"name": "run-x", "uid": "p"}, "status": {"phase": "Running"}}])
    world.run(world.timers.fire((uid, "retry")))
    assert len([k for k in world.kube.objects if k[0] == "ConfigMap"]) == 1


def test_suspend_is_passed_on_only_when_the_user_changes_it() -> None:
    world = World()
    body = world.add({**LIGHT, "suspend": True})
    world.event(body)
    job = world.deliver_job()
    assert job["spec"]["suspend"] is True
    assert world.last_status()["phase"] == "Suspended"
    # A queue (Kueue) admits the Job: its own flag flips, the user's spec is unchanged.
    world.kube.objects[("Job", "ns", "run")]["spec"]["suspend"] = False
    world.jobs[("ns", "run")][0]["spec"]["suspend"] = False
    world.event(world.stored(body))
    assert world.kube.calls["patch_job"] == 0
    # The user resumes: that change is passed on once.
    resumed = world.edit(body, suspend=False)
    world.kube.objects[("Job", "ns", "run")]["spec"]["suspend"] = True
    world.jobs[("ns", "run")][0]["spec"]["suspend"] = True
    world.event(resumed)
    world.event(resumed)
    assert world.kube.calls["patch_job"] == 1
    assert "Resumed" in world.kube.reasons()


def test_a_body_older_than_our_own_write_posts_no_second_phase_event() -> None:
    """Found by the fault test: a Job event paired with a FineTuneJob body from before the first status
    write made the pass believe the phase had just changed, and post its Event again."""
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1)
    world.run(world.controller.on_job("MODIFIED", world.jobs[("ns", "run")][0], "run"))  # body has no status
    assert world.last_status()["phase"] == "Pending"
    assert world.kube.reasons() == ["JobCreated"]


def test_an_event_that_cannot_be_posted_now_is_posted_later_with_its_time() -> None:
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.fail_next("create_event", RuntimeError("(500) etcdserver: request timed out"))
    world.event(body)
    assert world.last_status()["phase"] == "Pending"  # the status is written all the same
    assert world.kube.reasons() == []
    assert world.timers.delay_of((uid, "events")) == 2.0
    world.clock.advance(2)
    world.run(world.timers.fire((uid, "events")))
    assert world.kube.reasons() == ["JobCreated"]
    assert world.kube.event_times == [world.clock.now().replace(second=0)]
