"""Making the children, one decision at a time: a name already taken (gone meanwhile, ours, an older
attempt's, a deleted namesake's, a stranger's), the Service of the ranks, the ConfigMap (found, taken,
refused) and the PodCreateFailed condition, each with the look-again timer it sets."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from finetune_operator.api.status import Condition
from finetune_operator.controller import children
from finetune_operator.controller.children import Outcome
from finetune_operator.controller.kube import Conflict, Refused
from finetune_operator.controller.memory import Remembered
from finetune_operator.observe.pods import slim_job
from finetune_operator.observe.status import Verdict, job_verdict
from finetune_operator.render.plan import Plan, Powers, plan
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
TWO = {**LIGHT, "numNodes": 2, "expConfig": {"processSettings": {"numGpus": 1}}}
CONFLICT = "exists and does not belong to this FineTuneJob: delete or rename it, and the training starts"


def _call(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


class Case:
    """One FineTuneJob, its plan and what the controller remembers of it."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.world = World()
        self.body = self.world.add(spec if spec is not None else LIGHT)
        self.uid: str = self.body["metadata"]["uid"]
        self.plan: Plan = plan(self.body, Powers())
        self.remembered: Remembered = self.world.controller.memory.of(self.uid)
        self.ctl = self.world.controller
        self.kube = self.world.kube

    def create(self, attempt: int = 1) -> Outcome:
        return _call(children.create(self.ctl, self.body, self.plan, self.remembered, attempt))

    def put(self, kind: str, name: str, owner: dict[str, Any] | None, **metadata: Any) -> dict[str, Any]:
        """An object already stored under the name, with this controller owner."""
        refs = [] if owner is None else [{**owner, "controller": True}]
        obj = {"metadata": {"name": name, "namespace": "ns", "uid": f"{kind}-uid", "ownerReferences": refs, **metadata}}
        self.kube.objects[(kind, "ns", name)] = obj
        return obj

    def ours(self) -> dict[str, Any]:
        return {"kind": "FineTuneJob", "name": "run", "uid": self.uid}

    def delay(self, purpose: str) -> float | None:
        return self.world.timers.delay_of((self.uid, purpose))


def _waiting(what: str) -> Verdict:
    return Verdict("Pending", "WaitingForPreviousRun", f"{what} of a deleted FineTuneJob of this name is being removed")


def test_a_job_gone_between_the_conflict_and_the_read_is_waited_for() -> None:
    case = Case()
    case.kube.fail_next("create_job", Conflict("exists"))
    case.remembered.pod_create_checks = 2
    assert case.create() == Outcome(None, blocked=_waiting("Job run"))
    assert case.delay("children") == 2.0
    assert case.remembered.pod_create_checks == 3


def test_our_own_job_of_this_attempt_is_adopted_and_its_configmap_made() -> None:
    case = Case()
    found = case.put("Job", "run", case.ours())
    outcome = case.create()
    assert outcome == Outcome(slim_job(found))  # kept as the watch keeps it
    assert case.remembered.job.created == slim_job(found)
    configmap = case.kube.get("ConfigMap", "ns", f"run-config-{case.uid[:8]}")
    assert configmap is not None and configmap["metadata"]["ownerReferences"][0]["uid"] == "Job-uid"
    assert case.delay("children") is None


def test_a_later_attempts_job_has_a_name_of_its_own_and_ours_found_there_is_adopted() -> None:
    case = Case(TWO)
    case.put("Job", "run", case.ours(), annotations={"finetune.aidaptiv.io/attempt": "1"})  # kept, failed
    second = f"run-a2-{case.uid[:5]}"
    found = case.put("Job", second, case.ours(), annotations={"finetune.aidaptiv.io/attempt": "2"})
    case.remembered.job.service_seen = True
    assert case.create(attempt=2) == Outcome(slim_job(found))
    assert case.kube.calls["read_job"] == 1  # the create met the name, the read found our own


def test_our_job_of_another_attempt_under_the_name_is_waited_for() -> None:
    case = Case(TWO)
    second = f"run-a2-{case.uid[:5]}"
    case.put("Job", second, case.ours(), annotations={"finetune.aidaptiv.io/attempt": "1"})
    case.remembered.job.service_seen = True
    case.remembered.pod_create_checks = 2
    assert case.create(attempt=2) == Outcome(
        None, blocked=Verdict("Pending", "WaitingForPreviousAttempt", "the Job of attempt 1 is being removed first")
    )
    assert case.delay("children") == 2.0


def test_the_job_of_a_deleted_namesake_is_waited_for() -> None:
    case = Case()
    case.put("Job", "run", {"kind": "FineTuneJob", "name": "run", "uid": "older"})
    case.remembered.pod_create_checks = 2
    assert case.create() == Outcome(None, blocked=_waiting("Job run"))
    assert case.delay("children") == 2.0


@pytest.mark.parametrize(
    "owner",
    [
        {"kind": "FineTuneJob", "name": "other", "uid": "x"},
        {"kind": "Deployment", "name": "run", "uid": "x"},
        None,
    ],
)
def test_a_strangers_job_stalls_and_is_looked_at_with_a_growing_delay(owner: dict[str, Any] | None) -> None:
    case = Case()
    case.put("Job", "run", owner)
    case.remembered.pod_create_checks = 2
    assert case.create() == Outcome(
        None, blocked=Verdict("Pending", "NameConflict", f"a Job named run {CONFLICT}", stalled=True)
    )
    assert case.delay("children") == 8.0  # the third look: 2 ** 3 seconds


def test_the_look_again_delay_is_capped_at_a_minute() -> None:
    case = Case()
    case.put("Job", "run", None)
    case.remembered.pod_create_checks = 9
    case.create()
    assert case.delay("children") == 60.0


def test_a_refused_job_says_why_in_at_most_1024_characters() -> None:
    case = Case()
    case.kube.fail_next("create_job", Refused("x" * 2000))
    assert case.create() == Outcome(None, refused="the Job is invalid: " + "x" * 1024)
    assert case.remembered.job.created is None


def test_the_job_of_a_later_attempt_is_made_for_that_attempt() -> None:
    case = Case(TWO)
    case.remembered.job.service_seen = True
    outcome = case.create(attempt=3)
    assert outcome.job is not None
    assert outcome.job["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "3"
    assert case.kube.get("ConfigMap", "ns", f"run-config-{case.uid[:8]}-3") is not None
    assert case.kube.calls["create_service"] == 0  # seen for this attempt's Job: not made again


def test_the_ranks_service_is_made_after_the_job_owned_by_it_and_before_the_configmap() -> None:
    """Owned by the Job, it goes with the attempt (and with a Job withdrawn); it selects the Job's own pods
    only; and no rank starts before it exists (they need the ConfigMap made after it)."""
    case = Case(TWO)
    outcome = case.create()
    service = case.kube.get("Service", "ns", "run")
    job = case.kube.get("Job", "ns", "run")
    assert service is not None and job is not None and outcome.job is not None
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "run",
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert service["spec"]["selector"] == {
        "finetune.aidaptiv.io/name": "run",
        "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
    }
    assert case.remembered.job.service_seen is True
    assert [k for k in case.kube.calls if k.startswith("create_")] == [
        "create_job",
        "create_service",
        "create_configmap",
    ]


def test_a_refused_service_withdraws_the_job() -> None:
    case = Case(TWO)
    case.kube.fail_next("create_service", Refused("y" * 2000))
    assert case.create() == Outcome(None, refused="the Service is invalid: " + "y" * 1024)
    assert case.kube.get("Job", "ns", "run") is None
    assert (case.kube.calls["delete_job"], case.kube.calls["create_configmap"]) == (1, 0)
    assert (case.remembered.job.service_seen, case.remembered.job.created) == (False, None)


@pytest.mark.parametrize("owner_kind", ["Job", "FineTuneJob"])
def test_our_own_service_is_used(owner_kind: str) -> None:
    """Made by this Job before a restart, or (by an earlier version of the operator) for this FineTuneJob."""
    case = Case(TWO)
    if owner_kind == "Job":
        job = _made_job(case)
        case.put("Service", "run", {"kind": "Job", "name": "run", "uid": job["metadata"]["uid"]})
        outcome = _ensure(case, job)
    else:
        case.put("Service", "run", case.ours())
        outcome = case.create()
    assert outcome.job is not None and case.remembered.job.service_seen is True
    assert (case.kube.calls["read_service"], case.kube.calls["create_configmap"]) == (1, 1)


@pytest.mark.parametrize(
    "owner",
    [
        None,  # gone between the create and the read
        {"kind": "Job", "name": "run", "uid": "the-job-of-a-deleted-namesake"},
        {"kind": "FineTuneJob", "name": "run", "uid": "a-deleted-namesake"},  # by an earlier version
    ],
)
def test_a_service_of_a_deleted_namesake_is_waited_for(owner: dict[str, Any] | None) -> None:
    case = Case(TWO)
    if owner is None:
        case.kube.fail_next("create_service", Conflict("exists"))
    else:
        case.put("Service", "run", owner)
    case.remembered.pod_create_checks = 2
    outcome = case.create()
    assert outcome.job is not None and outcome.blocked is None and outcome.refused is None
    assert case.delay("children") == 2.0
    # The Job stays; its ranks wait for the ConfigMap, made once the Service is this Job's.
    assert (case.kube.calls["create_configmap"], case.kube.calls["delete_job"]) == (0, 0)
    assert case.remembered.job.service_seen is False


@pytest.mark.parametrize(
    "owner",
    [
        {"kind": "FineTuneJob", "name": "other", "uid": "x"},
        {"kind": "Deployment", "name": "run", "uid": "x"},
        {"kind": "Job", "name": "other", "uid": "x"},
        None,
    ],
)
def test_a_strangers_service_withdraws_the_job_and_stalls(owner: dict[str, Any] | None) -> None:
    case = Case(TWO)
    case.put("Service", "run", owner)
    case.remembered.pod_create_checks = 2
    assert case.create() == Outcome(
        None, blocked=Verdict("Pending", "NameConflict", f"a Service named run {CONFLICT}", stalled=True)
    )
    assert case.delay("children") == 8.0
    assert case.kube.get("Job", "ns", "run") is None
    assert case.kube.calls["create_configmap"] == 0


def _ensure(case: Case, job: dict[str, Any], attempt: int = 1) -> Outcome:
    return _call(children.ensure_config_map(case.ctl, case.body, case.plan, job, case.remembered, attempt))


def _made_job(case: Case) -> dict[str, Any]:
    """A Job of this FineTuneJob made before a restart (this process did not create it)."""
    return case.put("Job", "run", case.ours())


def test_a_configmap_known_to_exist_is_not_looked_for() -> None:
    case = Case()
    job = _made_job(case)
    case.remembered.job.config_map_seen = True
    assert _ensure(case, job) == Outcome(job)
    assert case.kube.calls == {}


@pytest.mark.parametrize("phase", ["Running", "Succeeded", "Failed"])
def test_a_pod_that_started_had_its_configmap(phase: str) -> None:
    case = Case()
    job = _made_job(case)
    case.world.deliver_pods([{"metadata": {"name": "p"}, "status": {"phase": phase}}])
    assert _ensure(case, job) == Outcome(job)
    assert (case.kube.calls, case.remembered.job.config_map_seen) == ({}, True)


def test_a_pod_not_started_of_another_finetunejob_or_not_the_jobs_proves_nothing() -> None:
    case = Case()
    job = _made_job(case)
    case.world.deliver_pods([{"metadata": {"name": "p"}, "status": {"phase": "Pending"}}, {"metadata": {}}])
    case.world.deliver_pods([{"metadata": {"name": "q"}, "status": {"phase": "Running"}}], name="other", job=job)
    case.world.deliver_pods([{"metadata": {"name": "r"}, "status": {"phase": "Running"}}], namespace="other", job=job)
    # Someone else's pod with the FineTuneJob's label: not the Job's.
    forged = {"metadata": {"name": "s", "ownerReferences": []}, "status": {"phase": "Running"}}
    case.world.pods[("ns", "run")].append(forged)
    _ensure(case, job)
    assert case.kube.calls["create_configmap"] == 1


def test_after_a_restart_the_jobs_configmap_is_found_not_made() -> None:
    case = Case()
    job = _made_job(case)
    name = f"run-config-{case.uid[:8]}-2"
    case.put("ConfigMap", name, {"kind": "Job", "name": "run", "uid": "Job-uid"})
    assert _ensure(case, job, attempt=2) == Outcome(job)
    assert case.remembered.job.config_map_seen is True
    assert (case.kube.calls["read_configmap"], case.kube.calls["create_configmap"]) == (1, 0)


def test_after_a_restart_a_configmap_of_another_job_is_not_the_jobs() -> None:
    case = Case()
    job = _made_job(case)
    name = f"run-config-{case.uid[:8]}"
    case.put("ConfigMap", name, {"kind": "Job", "name": "run", "uid": "an-older-job"})
    case.remembered.pod_create_checks = 2
    outcome = _ensure(case, job)
    assert outcome == Outcome(
        None, blocked=Verdict("Pending", "NameConflict", f"a ConfigMap named {name} {CONFLICT}", True)
    )
    # The Job goes: its pods must never mount another object's files.
    assert case.kube.get("Job", "ns", "run") is None and case.remembered.job.created is None
    assert case.delay("children") == 8.0


def test_a_configmap_made_meanwhile_by_the_job_is_accepted() -> None:
    case = Case()
    job = _made_job(case)
    case.remembered.job.created = job  # made by this process: no read first
    name = f"run-config-{case.uid[:8]}"
    original = case.kube.create_config_map

    async def raced(manifest: dict[str, Any]) -> dict[str, Any]:
        case.put("ConfigMap", name, {"kind": "Job", "name": "run", "uid": "Job-uid"})
        return await original(manifest)

    case.kube.create_config_map = raced  # type: ignore[method-assign]
    assert _ensure(case, job) == Outcome(job)
    assert case.remembered.job.config_map_seen is True
    assert case.kube.get("Job", "ns", "run") is not None


def test_a_refused_configmap_withdraws_its_job() -> None:
    case = Case()
    job = _made_job(case)
    case.remembered.job.created = job
    case.kube.fail_next("create_configmap", Refused("z" * 2000))
    assert _ensure(case, job) == Outcome(None, refused="the ConfigMap is invalid: " + "z" * 1024)
    assert case.kube.get("Job", "ns", "run") is None
    assert case.remembered.job.created is None


def _pending_job(case: Case, created: str | None = "2026-11-28T12:00:00Z", **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "run", "uid": "job-uid"}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {"metadata": metadata, "spec": spec, "status": {}}


def _condition(case: Case, job: dict[str, Any]) -> Condition | None:
    return _call(children.pod_create_condition(case.ctl, case.body, job, job_verdict(job), case.remembered))


def _failed_create(uid: str, message: str | None, **times: str) -> dict[str, Any]:
    event: dict[str, Any] = {"involvedObject": {"uid": uid}, "reason": "FailedCreate", **times}
    if message is not None:
        event["message"] = message
    return event


def test_a_young_job_without_pods_is_looked_at_again_when_old_enough() -> None:
    case = Case()
    case.world.clock.advance(2)
    assert _condition(case, _pending_job(case)) is None
    assert case.delay("pods") == 3.0
    assert case.kube.calls["list_events"] == 0


def test_a_job_without_a_creation_time_is_old_enough() -> None:
    case = Case()
    assert _condition(case, _pending_job(case, created=None)) is None
    assert case.kube.calls["list_events"] == 1
    assert case.delay("pods") == 2.0  # no FailedCreate yet: look again, with the backoff


def test_failed_create_events_become_the_condition_with_the_newest_words() -> None:
    case = Case()
    case.body["metadata"]["generation"] = 3
    case.world.clock.advance(10)
    asked: list[tuple[str, str, str]] = []
    events = [
        _failed_create("job-uid", "words of no time"),  # the oldest, whatever the order
        _failed_create("job-uid", "old words", lastTimestamp="2026-11-28T12:00:05Z"),
        _failed_create("job-uid", "new words", eventTime="2026-11-28T12:00:09.000000Z"),
        _failed_create("job-uid", "older words", lastTimestamp="2026-11-28T12:00:01Z"),
    ]

    async def list_events(namespace: str, involved_uid: str, reason: str) -> list[dict[str, Any]]:
        asked.append((namespace, involved_uid, reason))
        return events

    case.kube.list_events = list_events  # type: ignore[method-assign]
    shown = Condition(
        type="PodCreateFailed",
        status="True",
        observed_generation=3,
        last_transition_time="2026-11-28T12:00:10Z",
        reason="FailedCreate",
        message="new words",
    )
    assert _condition(case, _pending_job(case)) == shown
    assert asked == [("ns", "job-uid", "FailedCreate")]
    assert case.kube.events == [("run", "Warning", "PodCreateFailed", "new words")]
    # The same words again: no second Event; new words: one more.
    case.world.clock.advance(5)
    assert _condition(case, _pending_job(case)) == shown
    events.append(_failed_create("job-uid", "x" * 2000, lastTimestamp="2026-11-28T12:00:14Z"))
    changed = _condition(case, _pending_job(case))
    assert changed is not None and changed.message == "x" * 1024
    assert case.kube.reasons() == ["PodCreateFailed", "PodCreateFailed"]


def test_a_failed_create_event_without_words_or_times_still_says_something() -> None:
    case = Case()
    del case.body["metadata"]["generation"]
    case.world.clock.advance(10)
    case.kube.job_events.append(_failed_create("job-uid", None))
    condition = _condition(case, _pending_job(case))
    assert condition is not None
    assert (condition.message, condition.observed_generation) == ("the Job controller cannot create the pod", 0)


def test_a_condition_shown_before_is_shown_again_after_it_cleared() -> None:
    case = Case()
    case.world.clock.advance(10)
    case.kube.job_events.append(_failed_create("job-uid", "quota"))
    _condition(case, _pending_job(case))
    case.remembered.pod_create_condition = _pod_condition_off()
    _condition(case, _pending_job(case))
    assert case.kube.reasons() == ["PodCreateFailed", "PodCreateFailed"]


def _pod_condition_off() -> Condition:
    return Condition(
        type="PodCreateFailed",
        status="False",
        observed_generation=1,
        last_transition_time="2026-11-28T12:00:00Z",
        reason="PodsCreated",
        message="the Job has its pod",
    )


def test_once_the_job_has_its_pod_the_condition_clears_and_the_checks_start_over() -> None:
    case = Case()
    case.body["metadata"]["generation"] = 4
    case.world.clock.advance(10)
    case.kube.job_events.append(_failed_create("job-uid", "quota"))
    _condition(case, _pending_job(case))
    case.world.clock.advance(20)
    with_pod = {**_pending_job(case), "status": {"active": 1}}
    assert _condition(case, with_pod) == Condition(
        type="PodCreateFailed",
        status="False",
        observed_generation=4,
        last_transition_time="2026-11-28T12:00:30Z",
        reason="PodsCreated",
        message="the Job has its pod",
    )
    assert case.remembered.pod_create_checks == 0
    # Cleared once: the next pass keeps it as it is.
    assert _condition(case, with_pod) == case.remembered.pod_create_condition
    assert case.kube.calls["list_events"] == 1


@pytest.mark.parametrize(
    "job",
    [
        {"metadata": {"name": "run", "uid": "job-uid"}, "spec": {"suspend": True}, "status": {}},
        {
            "metadata": {"name": "run", "uid": "job-uid"},
            "spec": {},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]},
        },
    ],
)
def test_a_suspended_or_finished_job_is_not_waiting_for_pods(job: dict[str, Any]) -> None:
    case = Case()
    case.remembered.pod_create_checks = 5
    assert _condition(case, job) is None
    assert (case.remembered.pod_create_checks, case.kube.calls["list_events"]) == (0, 0)
