"""What the operator holds per FineTuneJob stays bounded whatever its size (issue 20, finding 4): the
watch's copy keeps a spec only up to SPEC_KEPT_BYTES, a pass reads a larger one again when it must
render, and between passes only the plan's facts stay."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import types
from typing import Any

from finetune_operator.controller.controller import PASS_LIMIT, Controller
from finetune_operator.observe.pods import SPEC_KEPT_BYTES, thin_body
from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
SCRIPT = 262_144  # the largest prescript or postscript the API takes


def maximal(index: int) -> dict[str, Any]:
    """Legal and about 770 KB: both scripts and trainDataConfig at their largest."""
    prompt = "s" * (SCRIPT // 2 - 200)
    datasets = "".join(
        f"d{index}_{k}:\n  data_path: /mnt/data/d{k}\n  strategy: qa\n  user_prompt: '{{question}}'\n"
        f"  system_prompt: {prompt}\n"
        for k in range(2)
    )
    return {
        **LIGHT,
        "prescript": f"# {index}\n" + "p" * (SCRIPT - 16),
        "postscript": "q" * SCRIPT,
        "trainDataConfig": datasets,
    }


def test_a_spec_up_to_the_limit_is_kept_a_larger_one_is_not() -> None:
    def body(size: int) -> dict[str, Any]:
        return {"metadata": {"name": "run", "managedFields": [{}]}, "spec": {"prescript": "x" * size}}

    overhead = len('{"prescript":""}')
    assert thin_body(body(SPEC_KEPT_BYTES - overhead)) == {
        "metadata": {"name": "run"},
        "spec": {"prescript": "x" * (SPEC_KEPT_BYTES - overhead)},
    }
    assert thin_body(body(SPEC_KEPT_BYTES - overhead + 1)) == {"metadata": {"name": "run"}}


def test_a_large_spec_is_read_again_for_the_pass_that_renders_and_only_facts_stay() -> None:
    world = World()
    body = world.add(maximal(0))
    uid = body["metadata"]["uid"]
    thin = thin_body(body)
    assert "spec" not in thin
    world.controller.memory.remember_body(thin)
    world.event(thin)
    assert world.kube.calls["read_finetunejob"] == 1
    config_map = world.kube.get("ConfigMap", "ns", f"run-config-{uid[:8]}")
    assert config_map is not None and config_map["data"]["prescript.sh"] == body["spec"]["prescript"]
    remembered = world.controller.memory.of(uid)
    assert remembered.plan is not None and remembered.plan.ftj is None and remembered.plan.facts is not None
    # Later passes (the Job running, the status back) need no spec: nothing is read again.
    world.deliver_job(active=1, ready=1)
    world.event(thin_body(world.stored(thin)))
    world.event(thin_body(world.stored(thin)))
    assert world.kube.calls["read_finetunejob"] == 1
    assert world.last_status()["phase"] == "Running"


def test_a_large_spec_gone_meanwhile_ends_the_pass_quietly() -> None:
    world = World()
    body = world.add(maximal(0))
    del world.kube.stored_bodies[("ns", "run")]
    world.event(thin_body(body))
    assert world.kube.writes() == {}


def held(obj: object) -> int:
    """Bytes reachable from obj (each object once), classes and modules not counted."""
    seen: set[int] = set()
    stack, total = [obj], 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        stack.extend(gc.get_referents(item))
    return total


def test_what_stays_per_finetunejob_is_bounded_whatever_its_size() -> None:
    """Maximal FineTuneJobs through their passes, as the watch brings them: what the controller holds
    afterwards is a few KiB each, not their 770 KB (before: the whole body, and the plan's model)."""
    world = World()
    empty = held(world.controller.memory)
    count = 4
    for index in range(count):
        world.event(thin_body(world.add(maximal(index), name=f"run{index}")))
    per_object = (held(world.controller.memory) - empty) / count
    assert len(world.controller.memory.objects) == count
    assert per_object < 32 * 1024, f"{per_object / 1024:.0f} KiB per FineTuneJob"


def test_watch_events_are_noted_at_once_and_their_passes_run_at_most_pass_limit_at_a_time() -> None:
    world = World()
    bodies = [world.add(LIGHT, name=f"run{i}") for i in range(PASS_LIMIT + 4)]
    controller: Controller = world.controller
    running = 0
    most = 0
    create_job = world.kube.create_job
    full = asyncio.Event()

    async def slow_create_job(manifest: dict[str, Any]) -> dict[str, Any]:
        """Held until PASS_LIMIT passes are in here at once (a count, not a time: a loaded machine
        may take longer than any sleep to bring them all), then let through; never more may come."""
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running >= PASS_LIMIT:
            full.set()
        with contextlib.suppress(TimeoutError):  # fewer than the limit ran at once: `most` says so below
            await asyncio.wait_for(full.wait(), 5.0)
        running -= 1
        return await create_job(manifest)

    world.kube.create_job = slow_create_job  # type: ignore[method-assign]

    async def burst() -> None:
        from finetune_operator.controller.ports import Timers

        controller.timers = Timers()
        for body in bodies:
            controller.dispatch("ADDED", body)
        assert all(controller.memory.body("ns", b["metadata"]["name"]) is b for b in bodies)
        while controller.timers.tasks:
            await asyncio.gather(*list(controller.timers.tasks))

    asyncio.run(burst())
    assert world.kube.calls["create_job"] == len(bodies)
    assert most == PASS_LIMIT
