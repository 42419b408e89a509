"""Accelerator-seconds: the pods' running time times their requests, counted by disjoint intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_operator.api.quantity import INT64_MAX
from finetune_operator.api.status import AcceleratorSeconds, Usage
from finetune_operator.observe.times import timestamp
from finetune_operator.observe.usage import accrue, added, running_time
from finetune_operator.render.plan import accelerators

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
T = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
AI100 = {"phison.com/ai100": 1, "otterscale.com/vgpu": 2}


def _at(seconds: int) -> str:
    return timestamp(T + timedelta(seconds=seconds))


def pod(
    started: int | None, finished: int | None = None, phase: str = "Running", loader: int | None = None
) -> dict[str, Any]:
    """A pod whose trainer started `started` seconds after T (and finished, if given); `loader`: an init
    container that ran from then until the trainer started."""
    status: dict[str, Any] = {"phase": phase}
    if started is not None:
        state = {"running": {"startedAt": _at(started)}}
        if finished is not None:
            state = {"terminated": {"startedAt": _at(started), "finishedAt": _at(finished), "exitCode": 0}}
        status["containerStatuses"] = [{"name": "trainer", "state": state}]
    if loader is not None:
        done = {"startedAt": _at(loader), "finishedAt": _at(started or loader)}
        status["initContainerStatuses"] = [{"name": "model-loader", "state": {"terminated": done}}]
    return {"metadata": {"name": "p"}, "status": status}


def usage(until: int, vgpu: int | None = None, ai100: int | None = None) -> Usage:
    given = {"otterscale.com/vgpu": vgpu, "phison.com/ai100": ai100}
    found = [AcceleratorSeconds(resource=r, seconds=s) for r, s in given.items() if s is not None]
    return Usage(accelerator_seconds=found, counted_until=_at(until))


def test_a_pods_running_time_is_its_containers_from_first_start_to_last_end() -> None:
    now = T + timedelta(seconds=500)
    assert running_time(pod(None, phase="Pending"), now) is None
    assert running_time(pod(100), now) == (T + timedelta(seconds=100), now)
    assert running_time(pod(100, 400, "Succeeded"), now) == (T + timedelta(seconds=100), T + timedelta(seconds=400))
    # The model copy before the trainer holds the pod's devices too.
    assert running_time(pod(100, 400, "Failed", loader=40), now) == (
        T + timedelta(seconds=40),
        T + timedelta(seconds=400),
    )
    # An end the kubelet writes later than the operator's clock is cut at now.
    assert running_time(pod(100, 900, "Succeeded"), now) == (T + timedelta(seconds=100), now)


def test_every_rank_and_every_attempt_counts_times_its_request() -> None:
    # Attempt 1 (two ranks) failed after 300 s and 250 s; attempt 2's two ranks run for 100 s by now.
    pods = [pod(0, 300, "Failed"), pod(50, 300, "Failed"), pod(600), pod(620)]
    counted = accrue(None, pods, AI100, T + timedelta(seconds=700))
    assert counted == usage(700, vgpu=2 * (300 + 250 + 100 + 80), ai100=300 + 250 + 100 + 80)


def test_a_count_adds_only_the_time_since_the_last_one() -> None:
    first = accrue(None, [pod(0)], AI100, T + timedelta(seconds=60, microseconds=900_000))
    assert first == usage(60, vgpu=120, ai100=60)  # whole seconds
    second = accrue(first, [pod(0)], AI100, T + timedelta(seconds=90))
    assert second == usage(90, vgpu=180, ai100=90)
    assert added(first, second) == {"otterscale.com/vgpu": 60, "phison.com/ai100": 30}
    assert accrue(second, [pod(0)], AI100, T + timedelta(seconds=90)) is second  # the same second again
    assert accrue(second, [pod(0)], AI100, T + timedelta(seconds=30)) is second  # a clock gone back
    # A pod that ended between the counts: only its time after the last count.
    assert accrue(second, [pod(0, 100, "Succeeded")], AI100, T + timedelta(seconds=500)) == usage(
        500, vgpu=200, ai100=100
    )


def test_nothing_is_counted_before_a_pod_starts_or_for_a_training_without_accelerators() -> None:
    assert accrue(None, [pod(None, phase="Pending")], AI100, T) is None
    assert accrue(None, [pod(0)], {}, T + timedelta(seconds=60)) is None
    recorded = usage(60, ai100=60)
    assert accrue(recorded, [pod(0)], {}, T + timedelta(seconds=120)) is recorded
    # Counted before, its pods gone now (a suspend): the clock moves on, nothing is added.
    assert accrue(recorded, [], {"phison.com/ai100": 1}, T + timedelta(seconds=120)) == usage(120, ai100=60)


def test_a_count_never_passes_what_the_api_server_can_hold() -> None:
    huge = {"phison.com/ai100": INT64_MAX}
    assert accrue(None, [pod(0)], huge, T + timedelta(seconds=10)) == usage(10, ai100=INT64_MAX)


def test_a_recorded_time_that_is_no_time_counts_the_pods_from_their_start() -> None:
    odd = Usage(accelerator_seconds=[], counted_until="yesterday")
    assert accrue(odd, [pod(0)], {"phison.com/ai100": 1}, T + timedelta(seconds=5)) == usage(5, ai100=5)


def test_added_is_what_grew() -> None:
    assert added(None, None) == {}
    assert added(None, usage(1, ai100=5)) == {"phison.com/ai100": 5}
    assert added(usage(1, ai100=5), usage(2, ai100=5, vgpu=1)) == {"otterscale.com/vgpu": 1}


def test_the_accelerators_a_pod_requests_are_its_extended_resources() -> None:
    requests = {"cpu": "4", "memory": "8Gi", "phison.com/ai100": 1, "otterscale.com/vgpumem-percentage": "60"}
    limits = {"phison.com/ai100": 1, "otterscale.com/vgpu": "2", "otterscale.com/vgpumem-percentage": "60"}
    assert accelerators(requests, limits) == (
        ("otterscale.com/vgpu", 2),
        ("otterscale.com/vgpumem-percentage", 60),
        ("phison.com/ai100", 1),
    )
    assert accelerators({"cpu": "1"}, {}) == ()


spans = st.tuples(st.integers(0, 1000), st.one_of(st.none(), st.integers(0, 1000)))


@PROPERTY
@given(
    pods=st.lists(spans, max_size=6),
    counts=st.lists(st.integers(0, 1200), max_size=8),
    end=st.integers(1000, 1300),
)
def test_counting_often_or_once_gives_the_same_seconds(
    pods: list[tuple[int, int | None]], counts: list[int], end: int
) -> None:
    """While the pods stay visible, the counts made between (a status write each) add up to one count at
    the end: no second is counted twice or lost, whenever the writes come."""
    seen = [pod(start) if stop is None else pod(start, max(start, stop), "Succeeded") for start, stop in pods]
    often: Usage | None = None
    for moment in sorted(c for c in counts if c <= end):  # the clock moves on
        often = accrue(often, seen, AI100, T + timedelta(seconds=moment))
    often = accrue(often, seen, AI100, T + timedelta(seconds=end))
    once = accrue(None, seen, AI100, T + timedelta(seconds=end))
    assert (often.seconds() if often else None) == (once.seconds() if once else None)
