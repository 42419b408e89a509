"""Accelerator-seconds: how long the training's pods held the extended resources they request.

Counted by intervals, with the status as the ledger: each count adds, for every pod of every attempt
(every rank, every retry), the part of its running time that falls after `countedUntil` and up to
now, times its request; then `countedUntil` moves to now. A second counted twice would need two
counts of the same interval, and the intervals never overlap, so nothing is counted twice: not by a
pass that reads a pod again, nor by a restart (the next process reads `countedUntil` back). A pod's
running time is its containers' (init containers too: they hold the pod's devices), from the first
start to the last end, or to now while one still runs; the kubelet writes those times, so a count
made late (after a quiet hour, or at the end) is as exact as one made every interval. What is lost:
the running time of a pod deleted before any count saw it end (a suspend or an eviction, between
two counts); never more than the last interval of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from finetune_operator.api.quantity import INT64_MAX
from finetune_operator.api.status import AcceleratorSeconds, Usage
from finetune_operator.observe.times import parse_timestamp, timestamp

ENDED_PHASES = ("Succeeded", "Failed")


def _times(pod: dict[str, Any], key: str) -> list[datetime]:
    found = []
    status = pod.get("status") or {}
    for kind in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(kind) or []:
            for state in ((container or {}).get("state") or {}).values():
                text = (state or {}).get(key)
                if isinstance(text, str):
                    try:
                        found.append(parse_timestamp(text))
                    except ValueError:
                        continue
    return found


def _running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ENDED_PHASES:
        return False
    containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return any("running" in ((c or {}).get("state") or {}) for c in containers)


def running_time(pod: dict[str, Any], now: datetime) -> tuple[datetime, datetime] | None:
    """From the pod's first container start to its last end, or to now while one runs; None before any start."""
    starts = _times(pod, "startedAt")
    if not starts:
        return None
    start = min(starts)
    ends = _times(pod, "finishedAt")
    end = now if _running(pod) or not ends else max(ends)
    return start, max(start, min(end, now))


def accrue(
    recorded: Usage | None, pods: Iterable[dict[str, Any]], per_pod: Mapping[str, int], now: datetime
) -> Usage | None:
    """The usage with the pods' running time since `recorded.countedUntil` added (None while no pod of a
    training that requests accelerators has started, and for one that requests none)."""
    if not per_pod:
        return recorded
    until = now.replace(microsecond=0)  # the status holds whole seconds
    since = _counted_until(recorded)
    if since is not None and until <= since:
        return recorded  # a clock that went back counts nothing, and a count at the same second adds nothing
    added = 0
    started = False
    for pod in pods:
        span = running_time(pod, until)
        if span is None:
            continue
        started = True
        start, end = span
        if since is not None:
            start = max(start, since)
        added += max(0, int((end - start).total_seconds()))
    if recorded is None and not started:
        return None
    totals = recorded.seconds() if recorded is not None else {}
    for resource, amount in per_pod.items():
        totals[resource] = min(INT64_MAX, totals.get(resource, 0) + added * amount)
    return Usage(
        accelerator_seconds=[AcceleratorSeconds(resource=r, seconds=s) for r, s in sorted(totals.items())],
        counted_until=timestamp(until),
    )


def _counted_until(recorded: Usage | None) -> datetime | None:
    if recorded is None:
        return None
    try:
        return parse_timestamp(recorded.counted_until)
    except ValueError:
        return None  # not the operator's writing: counted again from the pods' start


def added(before: Usage | None, after: Usage | None) -> dict[str, int]:
    """Accelerator-seconds by resource that `after` counts beyond `before` (what one status write adds)."""
    if after is None:
        return {}
    was = before.seconds() if before is not None else {}
    grown = {resource: seconds - was.get(resource, 0) for resource, seconds in after.seconds().items()}
    return {resource: seconds for resource, seconds in grown.items() if seconds > 0}
