"""What a platform team watches, through whole passes on the fake: accelerator-seconds in status and
their counter (never counted twice, also across a restart), the loss trend and checkpoints, a stalled
training's condition and Events, queue wait and failures; each within the status writes the log
loop already makes (one per read that changed something, none for a quiet one)."""

from __future__ import annotations

import copy
from typing import Any

from prometheus_client import CollectorRegistry

from finetune_operator.controller.context import Settings
from finetune_operator.controller.metrics import Metrics, Record
from tests.unit.controller.fakes import World

GPUS = {"phison.com/ai100": 1, "otterscale.com/vgpu": 2}
SPEC = {"schedulerName": "", "resources": {"requests": dict(GPUS), "limits": dict(GPUS)}}
SCHEDULE = "[INFO] The current training schedule consists of 1 epochs with 4 iterations each.\n"
POD = "run-abcde"
COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}]


def step(n: int, loss: str) -> str:
    return (
        f"[2026-11-28 12:0{n}:00.000000] [PHISON START] Epoch: 0, Iteration: {n}\n"
        f"[2026-11-28 12:0{n}:01.000000] [Loss]:{loss}\n"
        f"[2026-11-28 12:0{n}:02.000000] [PHISON END] Iteration: {n}\n"
    )


def _pod(state: dict[str, Any], phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": POD, "creationTimestamp": "2026-11-28T12:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]},
    }


def _world(stall_intervals: int = 60) -> tuple[World, CollectorRegistry]:
    world = World(Settings(log_interval=15.0, stall_intervals=stall_intervals))
    registry = CollectorRegistry()
    world.controller.metrics = Metrics(registry)
    return world, registry


def _running(world: World, log: str) -> dict[str, Any]:
    """Made, then running from now (the clock's T0, 12:00:00) with its log."""
    body = world.add(SPEC)
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    world.deliver_pods([_pod({"running": {"startedAt": "2026-11-28T12:00:00Z"}})])
    world.kube.logs[("ns", POD)] = log
    world.event(world.stored(body))
    return body


def _usage(status: dict[str, Any]) -> dict[str, int]:
    return {u["resource"]: u["seconds"] for u in status["usage"]["acceleratorSeconds"]}


def _counted(registry: CollectorRegistry, resource: str) -> float | None:
    return registry.get_sample_value(
        "finetune_operator_accelerator_seconds_total", {"namespace": "ns", "resource": resource}
    )


def test_accelerator_seconds_ride_on_the_progress_writes_and_are_counted_once() -> None:
    world, registry = _world()
    body = _running(world, SCHEDULE + step(0, "9.5"))
    assert world.kube.calls["patch_status"] == 2  # Pending, Running
    assert _usage(world.last_status()) == {"otterscale.com/vgpu": 0, "phison.com/ai100": 0}
    world.clock.advance(15)
    world.read_log_once()  # the first step: a write, with the 15 s since
    assert world.kube.calls["patch_status"] == 3
    assert _usage(world.last_status()) == {"otterscale.com/vgpu": 30, "phison.com/ai100": 15}
    for _ in range(4):  # quiet reads: no write, the usage waits for the next one
        world.clock.advance(15)
        world.read_log_once()
    assert world.kube.calls["patch_status"] == 3
    world.kube.logs[("ns", POD)] += step(1, "7.0")
    world.clock.advance(15)
    world.read_log_once()
    assert world.kube.calls["patch_status"] == 4
    assert _usage(world.last_status()) == {"otterscale.com/vgpu": 180, "phison.com/ai100": 90}
    assert world.last_status()["usage"]["countedUntil"] == "2026-11-28T12:01:30Z"
    # The pod ended at 12:01:40; the end is seen at 12:02:00: the 10 s it still ran, not the 30 s.
    world.clock.advance(30)
    ended = {"terminated": {"startedAt": "2026-11-28T12:00:00Z", "finishedAt": "2026-11-28T12:01:40Z"}}
    world.deliver_pods([_pod(ended, "Succeeded")])
    world.deliver_job(active=0, ready=0, succeeded=1, conditions=COMPLETE)
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Succeeded"
    assert _usage(world.last_status()) == {"otterscale.com/vgpu": 200, "phison.com/ai100": 100}
    assert (_counted(registry, "phison.com/ai100"), _counted(registry, "otterscale.com/vgpu")) == (100, 200)
    # The finished record keeps it: a later pass adds nothing.
    world.clock.advance(600)
    world.event(world.stored(body))
    assert _usage(world.last_status()) == {"otterscale.com/vgpu": 200, "phison.com/ai100": 100}
    assert _counted(registry, "phison.com/ai100") == 100


def test_a_restarted_operator_counts_only_what_it_writes_beyond_the_status() -> None:
    world, registry = _world()
    body = _running(world, SCHEDULE + step(0, "9.5"))
    world.clock.advance(60)
    world.read_log_once()
    assert _counted(registry, "phison.com/ai100") == 60
    # A new process: its counter starts at 0 (a reset, to Prometheus) and the status holds the 60 s.
    world.controller.memory.forget(body["metadata"]["uid"])
    restarted = CollectorRegistry()
    world.controller.metrics = Metrics(restarted)
    world.clock.advance(30)
    world.event(world.stored(body))
    world.read_log_once()  # the same log again: nothing to write, nothing counted
    assert _counted(restarted, "phison.com/ai100") is None
    world.kube.logs[("ns", POD)] += step(1, "7.0")
    world.clock.advance(30)
    world.read_log_once()
    assert _usage(world.last_status())["phison.com/ai100"] == 120
    assert _counted(restarted, "phison.com/ai100") == 60  # the minute since the last write, once


def test_a_stalled_training_is_told_once_and_resumes_within_one_write_a_read() -> None:
    world, _ = _world(stall_intervals=3)
    _running(world, SCHEDULE + step(0, "9.5"))
    world.read_log_once()
    writes, events = world.kube.calls["patch_status"], len(world.kube.events)
    for _ in range(2):
        world.read_log_once()
    assert (world.kube.calls["patch_status"], len(world.kube.events)) == (writes, events)
    world.read_log_once()  # the third quiet read: one write, one Warning
    assert world.kube.calls["patch_status"] == writes + 1
    assert world.condition("Progressing")["status"] == "False"
    assert world.condition("Progressing")["reason"] == "NoProgress"
    assert world.last_status()["phase"] == "Running"
    words = "the training log showed no new progress in 3 reads (45s); the training goes on"
    assert world.kube.events[events:] == [("run", "Warning", "NoProgress", words)]
    assert world.controller.stalled() == {("ns", "run"): True}
    for _ in range(5):
        world.read_log_once()
    assert (world.kube.calls["patch_status"], len(world.kube.events)) == (writes + 1, events + 1)
    world.kube.logs[("ns", POD)] += step(1, "7.0")
    world.read_log_once()  # progress: one write carries both the progress and Progressing=True
    assert world.kube.calls["patch_status"] == writes + 2
    assert (world.condition("Progressing")["status"], world.condition("Progressing")["reason"]) == (
        "True",
        "ProgressResumed",
    )
    assert world.kube.events[events + 1 :] == [
        ("run", "Normal", "ProgressResumed", "the training log shows progress again")
    ]
    assert world.controller.stalled() == {("ns", "run"): False}


def test_the_loss_trend_and_checkpoints_reach_the_status_with_the_progress() -> None:
    world, _ = _world()
    save = "[2026-11-28 12:02:10.000000] [Save Model_Checkpoint][Start]\n"
    spent = "[2026-11-28 12:02:20.000000] [Save Model_Checkpoint][time spent]:10.25\n"
    _running(world, SCHEDULE + step(0, "9.5"))
    world.read_log_once()
    world.kube.logs[("ns", POD)] += step(1, "7.0") + save
    world.read_log_once()
    world.kube.logs[("ns", POD)] += spent
    world.read_log_once()
    trainer = world.last_status()["trainerStatus"]
    assert trainer["lossHistory"] == [{"step": 1, "loss": "9.5"}, {"step": 2, "loss": "7.0"}]
    assert trainer["lossTrend"] == "█▁"
    assert trainer["checkpoints"] == {
        "count": 1,
        "lastTime": "2026-11-28T12:02:10.000000Z",
        "lastDurationSeconds": "10.25",
    }
    assert world.kube.calls["patch_status"] == 5  # Pending, Running, and one a read that changed something


def test_queue_wait_is_observed_at_the_first_running_and_a_failure_at_its_write() -> None:
    world, registry = _world()
    body = world.add(SPEC)
    body["metadata"]["creationTimestamp"] = "2026-11-28T11:58:00Z"
    world.controller.memory.remember_body(body)
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    world.deliver_pods([_pod({"running": {"startedAt": "2026-11-28T12:00:00Z"}})])
    world.clock.advance(30)
    world.event(world.stored(body))
    wait = {"namespace": "ns"}
    assert registry.get_sample_value("finetune_operator_queue_wait_seconds_count", wait) == 1
    assert registry.get_sample_value("finetune_operator_queue_wait_seconds_sum", wait) == 150.0
    # Its pod fails and is retried: Running again is no new wait.
    world.deliver_job(active=1, ready=0, failed=1)
    world.deliver_pods([_pod({"waiting": {"reason": "ContainerCreating"}}, "Pending")])
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Pending"
    world.deliver_job(active=1, ready=1, failed=1)
    world.deliver_pods([_pod({"running": {"startedAt": "2026-11-28T12:01:00Z"}})])
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Running"
    assert registry.get_sample_value("finetune_operator_queue_wait_seconds_count", wait) == 1
    failures = {"namespace": "ns", "reason": "BackoffLimitExceeded"}
    world.deliver_job(active=0, ready=0, failed=2, conditions=FAILED)
    world.event(world.stored(body))
    assert registry.get_sample_value("finetune_operator_failures_total", failures) == 1
    # Passes over the Failed record, and a restart, count it no more.
    world.event(world.stored(body))
    world.controller.memory.forget(body["metadata"]["uid"])
    world.event(world.stored(body))
    assert registry.get_sample_value("finetune_operator_failures_total", failures) == 1


def test_the_records_for_the_scrape_are_the_live_finetunejobs_as_written() -> None:
    world, _ = _world()
    body = _running(world, SCHEDULE)
    other = world.add(SPEC, name="other")
    other["status"] = {"phase": "Queued"}  # seen by the watch, no pass yet: its stored status
    world.controller.memory.remember_body(copy.deepcopy(other))
    usage = {"otterscale.com/vgpu": 0, "phison.com/ai100": 0}
    assert sorted(world.controller.records(), key=lambda r: r.name) == [
        Record("ns", "other", "Queued", {}),
        Record("ns", "run", "Running", usage),
    ]
    world.controller.active = False
    assert (world.controller.records(), world.controller.stalled()) == ([], {})
    assert body["metadata"]["name"] == "run"
