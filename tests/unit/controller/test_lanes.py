"""Passes at most PASS_LIMIT at once, new work before catch-up (controller/lanes.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from finetune_operator.controller.controller import PASS_LIMIT
from finetune_operator.controller.lanes import Lanes, is_new_work
from finetune_operator.controller.ports import Timers
from tests.unit.controller.fakes import World

LIGHT = {"resources": {"requests": {"cpu": "1m"}}}


@pytest.mark.parametrize(
    ("status", "generation", "new"),
    [
        (None, 1, True),
        ({}, 1, True),
        ({"observedGeneration": 1}, 1, True),  # no phase: not the operator's writing
        ({"phase": "Suspended", "observedGeneration": 1}, 1, False),
        ({"phase": "Suspended", "observedGeneration": 1}, 2, True),  # the spec changed since
        ({"phase": "Running"}, 1, True),
        ("not a status", 1, True),
    ],
)
def test_new_work_is_what_the_operator_has_not_looked_at_in_this_generation(
    status: Any, generation: int, new: bool
) -> None:
    body: dict[str, Any] = {"metadata": {"generation": generation}}
    if status is not None:
        body["status"] = status
    assert is_new_work(body) is new


def test_a_free_slot_goes_to_the_urgent_lane_first_then_in_order() -> None:
    order: list[str] = []

    async def scenario() -> None:
        lanes = Lanes(1)
        holder = asyncio.Event()

        async def hold() -> None:
            async with lanes.slot(False):
                await holder.wait()

        async def take(name: str, urgent: bool) -> None:
            async with lanes.slot(urgent):
                order.append(name)

        first = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(take(n, u)) for n, u in (("a", False), ("b", False), ("new", True))]
        await asyncio.sleep(0)
        assert (lanes.free, lanes.queued(True), lanes.queued(False)) == (0, 1, 2)
        holder.set()
        await asyncio.gather(first, *waiting)
        assert (lanes.free, lanes.queued(True), lanes.queued(False)) == (1, 0, 0)

    asyncio.run(scenario())
    assert order == ["new", "a", "b"]


def test_a_waiter_cancelled_gives_up_its_place_and_no_slot_is_lost() -> None:
    async def scenario() -> Lanes:
        lanes = Lanes(1)
        gate = asyncio.Event()

        async def hold() -> None:
            async with lanes.slot(True):
                await gate.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        gone = asyncio.create_task(hold())
        await asyncio.sleep(0)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        # Handed the slot in the same turn as it is cancelled: it passes the slot on.
        handed = asyncio.create_task(hold())
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(holder, handed)
        return lanes

    lanes = asyncio.run(scenario())
    assert (lanes.free, lanes.queued(True), lanes.queued(False)) == (1, 0, 0)


def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_turn_is_passed_on() -> None:
    async def scenario() -> tuple[Lanes, list[str]]:
        lanes = Lanes(1)
        taken: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with lanes.slot(False):
                taken.append(name)
                if name == "first":
                    await release.wait()

        first = asyncio.create_task(hold("first"))
        await asyncio.sleep(0)
        doomed = asyncio.create_task(hold("doomed"))
        last = asyncio.create_task(hold("last"))
        await asyncio.sleep(0)
        release.set()
        await asyncio.sleep(0)  # first leaves: the slot is handed to doomed's waiter ...
        doomed.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(first, doomed, last, return_exceptions=True)
        return lanes, taken

    lanes, taken = asyncio.run(scenario())
    assert taken == ["first", "last"]
    assert lanes.free == 1


def test_after_a_restart_a_new_finetunejob_passes_before_those_that_need_nothing() -> None:
    """PASS_LIMIT + 4 FineTuneJobs the operator looked at before its restart, then one new: the new
    one's pass is the first to run once the first PASS_LIMIT passes (taken before it came) leave."""
    world = World()
    done = []
    for index in range(PASS_LIMIT + 4):
        body = world.add({**LIGHT, "suspend": True}, name=f"old{index}")
        body["status"] = {"phase": "Suspended", "observedGeneration": 1}
        done.append(body)
    new = world.add({**LIGHT, "suspend": True}, name="new")
    controller = world.controller
    order: list[str] = []
    reconcile = controller.reconcile

    async def recorded(body: dict[str, Any], job: dict[str, Any] | None) -> None:
        order.append(body["metadata"]["name"])
        await asyncio.sleep(0)
        await reconcile(body, job)

    controller.reconcile = recorded  # type: ignore[method-assign]

    async def restart() -> None:
        controller.timers = Timers()
        for body in [*done, new]:
            controller.dispatch(None, body)
        while controller.timers.tasks:
            await asyncio.gather(*list(controller.timers.tasks))

    asyncio.run(restart())
    assert order.index("new") == PASS_LIMIT
    assert len(order) == PASS_LIMIT + 5


def _counting(world: World) -> list[str]:
    passes: list[str] = []
    reconcile = world.controller.reconcile

    async def counted(body: dict[str, Any], job: dict[str, Any] | None) -> None:
        passes.append(body["metadata"]["name"])
        await reconcile(body, job)

    world.controller.reconcile = counted  # type: ignore[method-assign]
    return passes


def _drain(world: World, dispatches: list[tuple[str | None, dict[str, Any]]]) -> None:
    async def run() -> None:
        world.controller.timers = Timers()
        for event_type, body in dispatches:
            world.controller.dispatch(event_type, body)
        while world.controller.timers.tasks:
            await asyncio.gather(*list(world.controller.timers.tasks))

    asyncio.run(run())


def test_events_of_an_object_whose_pass_waits_add_no_pass_unless_it_became_new_work() -> None:
    world = World()
    body = world.add({**LIGHT, "suspend": True})
    body["status"] = {"phase": "Suspended", "observedGeneration": 1}
    edited = {**body, "metadata": {**body["metadata"], "generation": 2}}
    passes = _counting(world)
    _drain(world, [(None, body), ("MODIFIED", body), ("MODIFIED", body)])
    assert passes == ["run"] and world.controller.due == {}
    _drain(world, [(None, body), ("MODIFIED", edited), ("MODIFIED", edited)])
    assert passes == ["run", "run", "run"]  # the edit is new work: a pass of its own, in its lane


def test_a_jobs_event_leaves_a_waiting_pass_to_see_it_but_a_deletion_is_remembered_at_once() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    job = world.deliver_job(active=1)
    uid = body["metadata"]["uid"]
    remembered = world.controller.memory.of(uid)
    remembered.job.created = job  # as if made by this process and not yet delivered
    passes = _counting(world)
    world.controller.due[("ns", "run")] = False
    world.run(world.controller.on_job("MODIFIED", {**job, "status": {"active": 0}}, "run"))
    assert passes == [] and remembered.job.seen == {**job, "status": {"active": 0}}
    world.run(world.controller.on_job("DELETED", job, "run"))
    assert passes == [] and remembered.job.created is None and remembered.job.seen is None
    del world.controller.due[("ns", "run")]
    world.run(world.controller.on_job("MODIFIED", {**job, "status": {"active": 1}}, "run"))
    assert passes == ["run"]
