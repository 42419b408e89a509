"""The operator's runtime around the reconcile pass: how `run` wires the process (with kopf, the
client and the metrics server replaced), kopf's settings, the real timers and clock, the log loop,
peering checks, event retries and the reconcile metrics. The e2e suite runs the real process."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from finetune_operator.api.crd import crd
from finetune_operator.api.status import Metric, TrainerStatus
from finetune_operator.controller import run as run_module
from finetune_operator.controller.adapters import configure, registry_for
from finetune_operator.controller.context import Settings, Views
from finetune_operator.controller.controller import Controller, Peering
from finetune_operator.controller.following import gather_bounded
from finetune_operator.controller.memory import Memory
from finetune_operator.controller.metrics import Metrics
from finetune_operator.controller.ports import Clock, Timers
from finetune_operator.observe.following import Followed
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}


class StubKube:
    """What `run` asks of the Kube port before kopf starts."""

    def __init__(self, served: bool, checks_until_served: int | None = 0) -> None:
        self.served = served
        self.checks_until_served = checks_until_served  # after install: None, never served
        self.installed: list[dict[str, Any]] = []
        self.checks = 0
        self.count: Any = None

    def finetunejobs_served(self) -> bool:
        self.checks += 1
        if self.installed and self.checks_until_served is not None:
            self.served = self.served or self.checks > self.checks_until_served
        return self.served

    def install_crd(self, wanted: dict[str, Any]) -> str:
        self.installed.append(wanted)
        return "created"


class Process:
    """`run` with the world outside the process replaced: what it configured and started."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, served: bool = True, checks_until_served: int | None = 0
    ) -> None:
        self.registry = CollectorRegistry()
        self.kube = StubKube(served, checks_until_served)
        self.slept: list[float] = []
        self.now = 0.0

        def sleep(seconds: float) -> None:
            self.slept.append(seconds)
            self.now += seconds

        self.logging: list[dict[str, Any]] = []
        self.kopf: list[dict[str, Any]] = []
        self.servers: list[tuple[int, str]] = []
        self.controllers: list[Controller] = []
        made = self.controllers

        class Recorded(Controller):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                made.append(self)

        def from_environment(count: Any) -> StubKube:
            self.kube.count = count
            return self.kube

        monkeypatch.setattr(prometheus_client, "REGISTRY", self.registry)
        monkeypatch.setattr(
            prometheus_client, "start_http_server", lambda port, addr: self.servers.append((port, addr))
        )
        monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: self.logging.append(kwargs))
        monkeypatch.setattr(kopf, "run", lambda **kwargs: self.kopf.append(kwargs))
        monkeypatch.setattr(run_module.Kube, "from_environment", staticmethod(from_environment))
        monkeypatch.setattr(run_module, "Controller", Recorded)
        monkeypatch.setattr(run_module.time, "time", lambda: 1_000.75)
        monkeypatch.setattr(run_module.time, "sleep", sleep)
        monkeypatch.setattr(run_module.time, "monotonic", lambda: self.now)
        monkeypatch.setenv("POD_NAME", "operator-0")


def test_run_standalone_cluster_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    process = Process(monkeypatch)
    settings = Settings(log_interval=3.0)
    run_module.run(run_module.Options(settings=settings))
    assert process.logging == [{"level": logging.INFO, "format": "%(levelname)s %(name)s %(message)s"}]
    (controller,) = process.controllers
    identity = f"operator-0/{os.getpid()}/1000"
    priority = 2**53 - 1 - 1_000_750
    assert (controller.kube, controller.settings, controller.peering) == (process.kube, settings, None)
    assert isinstance(controller.metrics, Metrics) and controller.metrics.registry is process.registry
    (started,) = process.kopf
    assert isinstance(started.pop("registry"), kopf.OperatorRegistry)
    assert started == {
        "standalone": True,
        "peering_name": None,
        "priority": priority,
        "identity": identity,
        "namespaces": [],
        "clusterwide": True,
        "liveness_endpoint": None,
    }
    assert process.servers == [] and process.kube.installed == []
    # API calls are counted on the process's metrics, and its FineTuneJobs are reported there.
    process.kube.count("read_job")
    assert process.registry.get_sample_value("finetune_operator_api_requests_total", {"operation": "read_job"}) == 1
    scraped = prometheus_client.generate_latest(process.registry).decode()
    assert 'finetune_operator_finetunejobs{phase="Running"} 0.0' in scraped


def test_run_with_peering_in_namespaces_metrics_and_the_crd(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    process = Process(monkeypatch, served=False, checks_until_served=2)
    options = run_module.Options(
        namespaces=("a", "b"),
        dev=True,
        install_crd=True,
        liveness="http://0.0.0.0:8080/healthz",
        peering="finetune-operator",
        priority=7,
        peering_lifetime=20,
        metrics=("0.0.0.0", 9090),
    )
    with caplog.at_level(logging.INFO, logger="finetune_operator"):
        run_module.run(options)
    assert process.logging == [{"level": logging.DEBUG, "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}]
    assert process.kube.installed == [crd()]
    assert (process.kube.checks, process.slept) == (3, [0.25, 0.25])  # kopf starts once the CRD is served
    assert [r.getMessage() for r in caplog.records] == ["CRD finetunejobs.finetune.aidaptiv.io created"]
    identity = f"operator-0/{os.getpid()}/1000"
    assert process.controllers[0].peering == Peering("finetune-operator", ("a", "b"), identity, 7, 20)
    assert process.servers == [(9090, "0.0.0.0")]
    started = process.kopf[0]
    started.pop("registry")
    assert started == {
        "standalone": False,
        "peering_name": "finetune-operator",
        "priority": 7,
        "identity": identity,
        "namespaces": ["a", "b"],
        "clusterwide": False,
        "liveness_endpoint": "http://0.0.0.0:8080/healthz",
    }


def test_run_refuses_to_watch_a_resource_the_api_server_does_not_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    process = Process(monkeypatch, served=False)
    with pytest.raises(run_module.CrdMissing) as caught:
        run_module.run(run_module.Options())
    assert str(caught.value) == (
        "the API server does not serve finetunejobs.finetune.aidaptiv.io/v1alpha1: install the CRD first "
        "(kubectl apply -f crds/, or the Helm chart), or pass --install-crd"
    )
    assert process.kopf == []


def test_a_crd_installed_but_never_served_stops_the_start_with_where_to_look(monkeypatch: pytest.MonkeyPatch) -> None:
    process = Process(monkeypatch, served=False, checks_until_served=None)
    with pytest.raises(run_module.CrdMissing) as caught:
        run_module.run(run_module.Options(install_crd=True))
    assert str(caught.value) == (
        "the CRD finetunejobs.finetune.aidaptiv.io was installed, but the API server did not serve "
        "finetunejobs.finetune.aidaptiv.io/v1alpha1 within 60 s: see "
        "`kubectl get crd finetunejobs.finetune.aidaptiv.io -o yaml` (conditions)"
    )
    assert sum(process.slept) == 60.0 and process.kopf == []


def test_own_identity_without_a_pod_name_is_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.setattr(run_module.socket, "gethostname", lambda: "laptop")
    monkeypatch.setattr(run_module.time, "time", lambda: 42.9)
    assert run_module.own_identity() == f"laptop/{os.getpid()}/42"


def test_kopf_keeps_its_bookkeeping_in_status_and_its_watches_bounded() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, Controller(World().kube))
    progress, diffbase = settings.persistence.progress_storage, settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.StatusProgressStorage) and progress._field == ("status", "kopf", "progress")
    assert isinstance(diffbase, kopf.StatusDiffBaseStorage) and diffbase._field == ("status", "kopf", "diffbase")
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (300, 330)
    assert settings.queueing.idle_timeout == 0.5
    assert settings.watching.connect_timeout == 10
    assert (settings.posting.level, settings.posting.reporting_component) == (logging.INFO, "finetune-operator")
    assert settings.scanning.disabled is True
    # Without peering kopf's own defaults stay.
    assert (settings.posting.reporting_instance, settings.peering.lifetime) == ("dev", 60)
    peered = kopf.OperatorSettings()
    configure(peered, Controller(World().kube, peering=Peering("p", (), "pod-1/7/9", 5, 25)))
    assert (peered.posting.reporting_instance, peered.peering.lifetime) == ("pod-1/7/9", 25)


def test_the_registry_holds_the_handlers_of_its_controller() -> None:
    registry = registry_for(Controller(World().kube))
    assert isinstance(registry, kopf.OperatorRegistry)
    assert registry is not registry_for(Controller(World().kube))


def test_the_clock_is_utc_wall_time_and_a_monotonic_one() -> None:
    clock = Clock()
    now = clock.now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_timers_fire_once_per_key_the_latest_wins_and_cancel_by_uid() -> None:
    fired: list[str] = []

    async def scenario() -> None:
        timers = Timers()

        def mark(tag: str) -> Any:
            async def callback() -> None:
                fired.append(tag)

            return callback

        timers.schedule(("u", "ttl"), 0.01, mark("old"))
        timers.schedule(("u", "ttl"), 5.0, mark("new"))  # replaces the old one
        timers.schedule(("u", "retry"), 0.01, mark("retry"))
        timers.schedule(("v", "ttl"), 0.01, mark("v"))
        timers.schedule("u", 0.01, mark("not a (uid, purpose) key"))
        timers.schedule((), 0.01, mark("empty"))
        delay = timers.delay_of(("u", "ttl"))
        assert delay is not None and 4.0 < delay <= 5.0
        assert timers.delay_of(("w", "ttl")) is None
        timers.cancel_all("u")
        assert set(timers.pending) == {("v", "ttl"), "u", ()}
        timers.cancel(("v", "ttl"))
        timers.cancel(("never", "scheduled"))
        await asyncio.sleep(0.1)
        assert timers.pending == {}
        assert timers.tasks == set()

    asyncio.run(scenario())
    assert sorted(fired) == ["empty", "not a (uid, purpose) key"]


def test_a_timer_in_the_past_fires_now_and_its_task_is_held_while_it_runs() -> None:
    async def scenario() -> None:
        timers = Timers()
        release = asyncio.Event()
        done: list[bool] = []

        async def callback() -> None:
            await release.wait()
            done.append(True)

        timers.schedule(("u", "retry"), -5.0, callback)
        delay = timers.delay_of(("u", "retry"))
        assert delay is not None and -0.5 < delay <= 0
        await asyncio.sleep(0.02)
        assert ("u", "retry") not in timers.pending
        (task,) = timers.tasks  # kept, so that it is not garbage-collected mid-run
        release.set()
        await task
        await asyncio.sleep(0)
        assert (done, timers.tasks) == ([True], set())

    asyncio.run(scenario())


def test_gather_bounded_limits_concurrency_and_survives_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    running, peak, finished = 0, 0, []

    async def read(index: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if index == 1:
            raise RuntimeError("kubelet unreachable")
        finished.append(index)

    with caplog.at_level(logging.ERROR, logger="finetune_operator.progress"):
        asyncio.run(gather_bounded([read(i) for i in range(5)], limit=2))
    assert (peak, sorted(finished)) == (2, [0, 2, 3, 4])
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [("progress read failed", True)]


def test_gather_bounded_reads_eight_at_a_time_by_default() -> None:
    running, peak = 0, 0

    async def read() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    asyncio.run(gather_bounded([read() for _ in range(12)]))
    assert peak == 8


SCHEDULE = "[INFO] The current training schedule consists of 1 epochs with 4 iterations each.\n"
ONE_STEP = (
    "[2026-11-28 12:00:00.000000] [PHISON START] Epoch: 0, Iteration: 0\n"
    "[2026-11-28 12:00:01.000000] [PHISON END] Iteration: 0\n"
)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for the loop's turns (a busy machine makes them late), failing after 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the log loop did not get there")


def _running(world: World) -> dict[str, Any]:
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_job(active=1, ready=1, startTime="2026-11-28T12:00:00Z")
    pod = {
        "metadata": {"name": "run-abcde", "creationTimestamp": "2026-11-28T12:00:00Z"},
        "status": {"phase": "Running"},
    }
    world.deliver_pods([pod])
    world.event(world.stored(body))
    world.kube.logs[("ns", "run-abcde")] = SCHEDULE + ONE_STEP
    return body


def test_the_log_loop_reads_every_interval_and_asks_for_a_pass() -> None:
    world = World(settings=Settings(log_interval=0.01))
    _running(world)
    # The container still runs: a last line without its newline may be cut, and waits.
    world.kube.logs[("ns", "run-abcde")] = SCHEDULE + ONE_STEP + "[2026-11-28 12:00:02.000000] training complete!"
    writes = world.kube.calls["patch_status"]

    async def scenario() -> None:
        await world.controller.start(world.controller.views)
        await _until(lambda: world.kube.calls["read_pod_log"] >= 2)
        task = world.controller.loop_task
        await world.controller.stop()
        assert task is not None
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    world.run(scenario())
    assert world.kube.calls["read_pod_log"] >= 2
    # The first read changed the progress: one pass wrote it; later reads changed nothing.
    assert world.kube.calls["patch_status"] == writes + 1
    assert world.last_status()["trainerStatus"]["progressPercentage"] == 25


def test_a_standby_replicas_log_loop_reads_nothing() -> None:
    peering = Peering("p", ("ns",), "me", priority=1, lifetime=30)
    world = World(settings=Settings(log_interval=0.01), peering=peering)
    _running(world)
    world.kube.peers = {"other": {"priority": 9, "lastseen": world.clock.now().isoformat(), "lifetime": 30}}

    async def scenario() -> None:
        await world.controller.start(world.controller.views)
        await _until(lambda: world.kube.calls["read_peering"] >= 3)  # at the start, then each turn
        await world.controller.stop()

    world.run(scenario())
    assert world.controller.active is False
    assert world.kube.calls["read_pod_log"] == 0
    assert world.kube.calls["read_peering"] >= 2


def test_stop_before_start_is_harmless() -> None:
    asyncio.run(Controller(World().kube).stop())


def _peered(identity: str = "me", namespaces: tuple[str, ...] = ()) -> tuple[World, CollectorRegistry]:
    world = World(peering=Peering("finetune-operator", namespaces, identity, priority=5, lifetime=30))
    registry = CollectorRegistry()
    world.controller.metrics = Metrics(registry)
    return world, registry


def test_check_active_reads_each_namespaces_peering_and_sets_the_leader_gauge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, registry = _peered(namespaces=("a", "b"))
    asked: list[tuple[str, str | None]] = []
    answers = {"a": {}, "b": {"other": {"priority": 9, "lastseen": world.clock.now().isoformat(), "lifetime": 30}}}

    async def read_peers(peering: str, namespace: str | None) -> dict[str, Any]:
        asked.append((peering, namespace))
        return answers[namespace or ""]

    world.kube.read_peers = read_peers  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="finetune_operator")
    world.run(world.controller.check_active())
    # A live peer of a higher priority in any one namespace: standing by.
    assert asked == [("finetune-operator", "a"), ("finetune-operator", "b")]
    assert world.controller.active is False
    assert registry.get_sample_value("leader_election_master_status", {"name": "finetune-operator"}) == 0
    answers["b"] = {}
    world.run(world.controller.check_active())
    assert world.controller.active is True
    assert registry.get_sample_value("leader_election_master_status", {"name": "finetune-operator"}) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "this replica is now standing by",
        "this replica is now active",
    ]
    world.run(world.controller.check_active())
    assert len(caplog.records) == 2  # no change, nothing said


def test_check_active_cluster_wide_asks_the_cluster_peering() -> None:
    world, _ = _peered()
    asked: list[tuple[str, str | None]] = []

    async def read_peers(peering: str, namespace: str | None) -> dict[str, Any]:
        asked.append((peering, namespace))
        return {}

    world.kube.read_peers = read_peers  # type: ignore[method-assign]
    world.run(world.controller.check_active())
    assert asked == [("finetune-operator", None)]


def test_a_peering_that_cannot_be_read_keeps_the_last_answer(caplog: pytest.LogCaptureFixture) -> None:
    world, registry = _peered()
    world.controller.active = False
    world.kube.fail_next("read_peering", RuntimeError("connection refused"))
    with caplog.at_level(logging.INFO, logger="finetune_operator"):
        world.run(world.controller.check_active())
    assert world.controller.active is False
    assert [r.getMessage() for r in caplog.records] == ["could not read peering finetune-operator: connection refused"]
    assert registry.get_sample_value("leader_election_master_status", {"name": "finetune-operator"}) is None


def test_standing_by_forgets_what_another_replica_will_change() -> None:
    world, _ = _peered()
    body = world.add(LIGHT)
    world.event(body)
    uid = body["metadata"]["uid"]
    world.timers.schedule((uid, "ttl"), 5.0, world.controller.stop)
    world.kube.peers = {"other": {"priority": 9, "lastseen": world.clock.now().isoformat(), "lifetime": 30}}
    world.run(world.controller.check_active())
    assert world.controller.active is False
    assert (world.controller.memory.objects, world.controller.memory.body("ns", "run")) == ({}, None)
    assert world.timers.pending == {}
    # Becoming active again keeps what was learnt meanwhile (kopf's watches list everything anew).
    world.add(LIGHT, name="later")
    world.kube.peers = {}
    world.run(world.controller.check_active())
    assert world.controller.active is True
    assert world.controller.memory.body("ns", "later") is not None


def test_an_event_that_keeps_failing_is_retried_with_a_doubling_delay(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    for _ in range(3):
        world.kube.fail_next("create_event", RuntimeError("API away"))
    with caplog.at_level(logging.INFO, logger="finetune_operator"):
        world.run(world.controller.post(body, "Warning", "PodCreateFailed", "quota"))
        delays = [world.timers.delay_of((uid, "events"))]
        for _ in range(2):
            world.run(world.timers.fire((uid, "events")))
            delays.append(world.timers.delay_of((uid, "events")))
    assert delays == [2.0, 4.0, 8.0]
    assert caplog.records[0].getMessage() == "could not post event PodCreateFailed on run: API away"
    world.run(world.timers.fire((uid, "events")))
    assert world.kube.events == [("run", "Warning", "PodCreateFailed", "quota")]
    assert world.controller.memory.of(uid).event_failures == 0
    # After a success the count starts again.
    world.kube.fail_next("create_event", RuntimeError("API away"))
    world.run(world.controller.post(body, "Normal", "Resumed", "again"))
    assert world.timers.delay_of((uid, "events")) == 2.0


def test_events_are_posted_in_order_with_every_field() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("create_event", RuntimeError("API away"))
    world.run(world.controller.post(body, "Warning", "First", "one"))
    world.clock.advance(5)
    # The next post sends the one kept first, each with the time it happened.
    world.run(world.controller.post(body, "Normal", "Second", "two"))
    assert world.kube.events == [("run", "Warning", "First", "one"), ("run", "Normal", "Second", "two")]
    assert world.kube.event_times == [world.clock.now() - timedelta(seconds=5), world.clock.now()]


def test_an_event_whose_answer_was_lost_is_not_told_twice() -> None:
    """The API server stored the Event and died before answering: the retry, under the same name,
    meets the stored one (found by the fault e2e: 'JobCreated' twice after a kube-apiserver SIGKILL)."""
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.lose_next_answer("create_event", RuntimeError("connection reset"))
    world.run(world.controller.post(body, "Normal", "JobCreated", "Pending: created Job run"))
    world.run(world.timers.fire((uid, "events")))
    assert world.kube.calls["create_event"] == 2
    assert world.kube.events == [("run", "Normal", "JobCreated", "Pending: created Job run")]
    assert world.controller.memory.of(uid).unposted == []
    # Each Event has its own name: the next one is told.
    world.run(world.controller.post(body, "Normal", "PodsRunning", "Running: the training pod is running"))
    assert world.kube.reasons() == ["JobCreated", "PodsRunning"]
    assert len(set(world.kube.event_names)) == 2
    assert all(name.startswith("run.") and len(name) == len("run.") + 16 for name in world.kube.event_names)


def test_a_phase_whose_status_write_lost_its_answer_is_told_once_by_the_next_pass() -> None:
    """The API server stored the status and died before answering: the pass fails before its Event,
    and the retry finds the phase stored (found by the fault e2e: a FineTuneJob whose Events never
    said Pending)."""
    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.lose_next_answer("patch_status", RuntimeError("connection reset"))
    world.event(body)
    assert world.kube.statuses[-1]["phase"] == "Pending"
    assert world.kube.reasons() == ["JobCreated"]  # the Job was made: told at once
    world.event(world.stored(body))  # the watch brings the stored status back
    assert world.kube.reasons() == ["JobCreated"]
    assert world.kube.calls["patch_status"] == 1  # nothing left to write
    world.run(world.timers.fire((uid, "retry")))
    world.event(world.stored(body))
    assert world.kube.reasons() == ["JobCreated"]


def test_a_phase_whose_write_failed_is_told_before_the_next_one() -> None:
    """The Pending write raised (stored or not: the answer was lost) and, before the watch brings the
    status back, the pod runs: the Events still tell Pending, then Running (found by the fault e2e:
    burst-04's Events began with Running)."""
    world = World()
    body = world.add(LIGHT)
    world.kube.lose_next_answer("patch_status", RuntimeError("connection reset"))
    world.event(body)
    world.deliver_job(active=1, ready=1)
    world.event(body)  # the body as the watch had it: no status yet
    assert world.kube.reasons() == ["JobCreated", "PodsRunning"]
    assert world.kube.statuses[-1]["phase"] == "Running"
    world.event(world.stored(body))
    assert world.kube.reasons() == ["JobCreated", "PodsRunning"]


def test_a_job_made_by_a_pass_that_failed_after_it_is_told_before_its_pod_runs() -> None:
    """The API server died under the ConfigMap's create, after the Job's: the next pass finds the pod
    already running (found by the fault e2e: burst-05's Events began with Running)."""
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("create_configmap", RuntimeError("connection reset"))
    world.event(body)
    assert world.kube.calls["patch_status"] == 0
    world.deliver_job(active=1, ready=1)
    world.event(body)
    assert world.kube.reasons() == ["JobCreated", "PodsRunning"]
    assert world.kube.events[0] == ("run", "Normal", "JobCreated", "Pending: created Job run")


def test_a_job_made_suspended_is_told_as_suspended_only() -> None:
    world = World()
    body = world.add({**LIGHT, "suspend": True})
    world.event(body)
    world.event(world.stored(body))
    assert world.kube.reasons() == ["JobSuspended"]


def test_a_failed_write_whose_phase_is_decided_again_is_told_once() -> None:
    world = World()
    body = world.add(LIGHT)
    world.kube.fail_next("patch_status", RuntimeError("connection refused"))
    world.event(body)
    world.event(body)
    assert world.kube.reasons() == ["JobCreated"]
    assert world.kube.statuses[-1]["phase"] == "Pending"


def test_a_restarted_operator_does_not_tell_a_stored_phase_again() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    assert world.kube.reasons() == ["JobCreated"]
    restarted = World()
    restarted.kube = world.kube
    restarted.controller.kube = world.kube
    restarted.jobs.update(world.jobs)
    restarted.event(world.stored(body))
    assert world.kube.reasons() == ["JobCreated"]


def test_posting_for_a_forgotten_object_does_nothing() -> None:
    world = World()
    world.run(world.controller.post_unposted("never-seen"))
    assert world.kube.calls == {}


def test_each_pass_is_measured_and_counted_by_its_result() -> None:
    world = World()
    registry = CollectorRegistry()
    world.controller.metrics = Metrics(registry)
    create_job = world.kube.create_job

    async def slow_create_job(manifest: dict[str, Any]) -> dict[str, Any]:
        world.clock.advance(0.3)
        return await create_job(manifest)

    world.kube.create_job = slow_create_job  # type: ignore[method-assign]
    body = world.add(LIGHT)
    world.clock.advance(10)  # the pass starts at 10 s on the monotonic clock
    world.event(body)
    labels = {"controller": "finetunejob"}
    assert registry.get_sample_value("controller_runtime_reconcile_time_seconds_sum", labels) == pytest.approx(0.3)
    assert registry.get_sample_value("controller_runtime_reconcile_total", {**labels, "result": "success"}) == 1
    # controller-runtime's buckets, up to a minute.
    assert registry.get_sample_value("controller_runtime_reconcile_time_seconds_bucket", {**labels, "le": "60.0"}) == 1
    world.kube.fail_next("patch_status", RuntimeError("API away"))
    world.kube.calls.clear()
    world.event(world.stored(body) | {"metadata": {**body["metadata"], "generation": 2}})
    assert registry.get_sample_value("controller_runtime_reconcile_total", {**labels, "result": "error"}) == 1
    assert registry.get_sample_value("controller_runtime_reconcile_errors_total", labels) == 1


OWNER = {"metadata": {"namespace": "ns", "name": "run", "uid": "ftj-1"}}


def _job(uid: str, attempt: str | None, owner_uid: str = "ftj-1") -> dict[str, Any]:
    annotations = {} if attempt is None else {"finetune.aidaptiv.io/attempt": attempt}
    refs = [{"kind": "FineTuneJob", "uid": owner_uid, "controller": True}]
    return {"metadata": {"uid": uid, "annotations": annotations, "ownerReferences": refs}}


def test_views_are_empty_until_kopf_gives_its_indices() -> None:
    job = {"metadata": {"uid": "job-1"}}
    views = Views()
    assert (views.job(OWNER), views.jobs(OWNER), views.pods("ns", "run", job)) == (None, [], [])


def test_the_job_is_the_latest_attempts_of_those_the_finetunejob_controls() -> None:
    first, second, third = _job("j1", None), _job("j2", "2"), _job("j3", "3")
    foreign = _job("x", "9", owner_uid="someone")  # the label and annotation copied: not its Job
    views = Views(jobs={("ns", "run"): [second, foreign, third, first]})
    assert views.job(OWNER) == third
    assert views.jobs(OWNER) == [second, third, first]
    assert Views(jobs={("ns", "run"): [foreign]}).job(OWNER) is None


def test_the_pods_of_a_job_are_those_it_controls() -> None:
    def pod(name: str, *refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": name, "ownerReferences": list(refs)}}

    mine = {"kind": "Job", "uid": "job-1", "controller": True}
    pods = [
        pod("a", mine),
        pod("b"),  # the label alone
        pod("c", {**mine, "controller": False}),  # owned, not controlled
        pod("d", {**mine, "uid": "job-0"}),  # an earlier attempt's
        pod("e", {"kind": "Job", "uid": "x", "controller": True}, mine),  # controlled by another
        pod("f", {"kind": "ReplicaSet", "uid": "y"}, mine),
    ]
    views = Views(pods={("ns", "run"): pods})
    assert [p["metadata"]["name"] for p in views.pods("ns", "run", {"metadata": {"uid": "job-1"}})] == ["a", "f"]
    assert views.pods("ns", "run", None) == []
    assert views.pods("ns", "other", {"metadata": {"uid": "job-1"}}) == []
    assert Views(jobs={}).job(OWNER) is None
    assert Controller(World().kube).views.job(OWNER) is None


def test_a_new_controller_holds_what_it_was_given() -> None:
    metrics = Metrics(CollectorRegistry())
    controller = Controller(World().kube, metrics=metrics)
    assert (controller.metrics, controller.loop_task, controller.active) == (metrics, None, True)
    assert isinstance(controller.clock, Clock) and isinstance(controller.timers, Timers)
    assert controller.settings == Settings()


def test_scrapes_see_phases_and_trainings_only_while_active() -> None:
    world = World()
    memory = world.controller.memory
    memory.of("a").phase = "Running"
    memory.of("b")  # no phase yet: not counted
    status = TrainerStatus(progress_percentage=5)
    memory.of("a").followed = Followed("ns", "a", None, latest=status)
    memory.of("c").followed = Followed("ns", "c", None)  # nothing read yet
    assert world.controller.phases() == {"a": "Running"}
    assert world.controller.trainings() == {("ns", "a"): status}
    world.controller.active = False
    assert (world.controller.phases(), world.controller.trainings()) == ({}, {})


def test_memory_forgets_by_uid_and_the_body_by_name() -> None:
    memory = Memory()
    memory.of("a").phase = "Running"
    memory.remember_body({"metadata": {"namespace": "ns", "name": "run", "uid": "a"}})
    memory.forget("a")
    assert (memory.get("a"), memory.phases()) == (None, {})
    assert memory.body("ns", "run") is not None  # kept without its key
    memory.forget("a", ("ns", "run"))
    memory.forget("never", ("ns", "never"))
    assert memory.body("ns", "run") is None


def test_the_finetunejob_gauges_are_registered_on_the_metrics_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry).add_finetunejob_gauges(lambda: {"a": "Failed"}, dict)
    assert registry.get_sample_value("finetune_operator_finetunejobs", {"phase": "Failed"}) == 1


def test_metric_help_texts_as_prometheus_shows_them() -> None:
    registry = CollectorRegistry()
    made = Metrics(registry)
    made.leader.labels(name="p").set(1)
    made.add_finetunejob_gauges(dict, lambda: {("ns", "a"): TrainerStatus(progress_percentage=1)})
    helps = {line for line in prometheus_client.generate_latest(registry).decode().splitlines() if line[:6] == "# HELP"}
    assert helps == {
        "# HELP finetune_operator_api_requests_total Kubernetes API requests the operator made, by operation.",
        "# HELP controller_runtime_reconcile_total Total number of reconciliations per controller.",
        "# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller.",
        "# HELP controller_runtime_reconcile_time_seconds Length of time per reconciliation per controller.",
        "# HELP leader_election_master_status 1 while this replica is the active one (kopf peering), 0 while it "
        "stands by.",
        "# HELP finetune_operator_finetunejobs FineTuneJobs known to the operator, by phase.",
        "# HELP finetune_operator_training_progress_percent Completed training steps in percent.",
        "# HELP finetune_operator_training_loss Latest training loss in the log.",
        "# HELP finetune_operator_training_tokens_per_second Latest training throughput in the log.",
        "# HELP finetune_operator_training_remaining_seconds Estimated seconds to the end of training.",
        "# HELP finetune_operator_accelerator_seconds_total Accelerator-seconds the trainings' pods held, by extended "
        "resource (as written to status.usage).",
        "# HELP finetune_operator_failures_total FineTuneJobs that went Failed, by reason (counted by the status write "
        "that records it).",
        "# HELP finetune_operator_queue_wait_seconds Seconds from a FineTuneJob's creation, or its last eviction by "
        "its queue, to Running.",
        "# HELP finetune_operator_training_checkpoints Model checkpoint saves the trainer logged.",
        "# HELP finetune_operator_training_last_checkpoint_duration_seconds How long the trainer's last finished "
        "checkpoint save took.",
        "# HELP finetune_operator_training_stalled 1 while a running training's log shows no new progress (condition "
        "Progressing=False), else 0.",
        "# HELP finetune_operator_finetunejob_phase 1 for the phase of each FineTuneJob not yet cleaned up.",
        "# HELP finetune_operator_training_accelerator_seconds Accelerator-seconds a FineTuneJob's pods held so far, "
        "by extended resource (its status.usage).",
    }
    assert registry.get_sample_value("leader_election_master_status", {"name": "p"}) == 1


def test_a_metric_that_is_no_number_leaves_out_itself_only() -> None:
    registry = CollectorRegistry()
    status = TrainerStatus(metrics=[Metric(name="loss", value="nan?"), Metric(name="tokensPerSecond", value="310.5")])
    Metrics(registry).add_finetunejob_gauges(dict, lambda: {("ns", "a"): status})
    labels = {"namespace": "ns", "name": "a"}
    assert registry.get_sample_value("finetune_operator_training_tokens_per_second", labels) == 310.5
    assert registry.get_sample_value("finetune_operator_training_loss", labels) is None


def test_a_namespace_being_deleted_ends_the_pass_and_its_events_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing can be made in it and its FineTuneJobs go with it: no retry, no Event kept, no warning
    that reads like a refusal of the operator's rights (found by the image's e2e)."""
    from finetune_operator.controller.kube import NamespaceTerminating

    world = World()
    body = world.add(LIGHT)
    uid = body["metadata"]["uid"]
    world.kube.fail_next("create_job", NamespaceTerminating("ns"))
    with caplog.at_level(logging.INFO, logger="finetune_operator"):
        world.event(body)
        world.kube.fail_next("create_event", NamespaceTerminating("ns"))
        world.run(world.controller.post(body, "Normal", "Resumed", "again"))
    assert world.timers.delay_of((uid, "retry")) is None and world.timers.delay_of((uid, "events")) is None
    remembered = world.controller.memory.of(uid)
    assert (remembered.failures, remembered.unposted) == (0, [])
    assert [r.getMessage() for r in caplog.records] == ["ns/run: its namespace is being deleted"]
