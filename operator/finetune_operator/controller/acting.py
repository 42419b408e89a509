"""Carrying out a pass's decision (decide/decision.py), in the order a user reads it: the TTL's
deletions and their Event, the status write and its Event, the next attempt, then the Events that
follow the status (TrainingStarted, ModelPathMismatch, OutputPushed)."""

from __future__ import annotations

import logging
from typing import Any

from finetune_operator.controller.context import PassContext
from finetune_operator.controller.memory import Remembered
from finetune_operator.decide.attempts import AttemptChange
from finetune_operator.decide.decision import Decision, Snapshot, Told

logger = logging.getLogger("finetune_operator")


async def act(ctl: PassContext, body: dict[str, Any], snap: Snapshot, decision: Decision) -> None:
    remembered = ctl.memory.of(snap.uid)
    if not await _clean_up(ctl, body, snap, decision):
        # The FineTuneJob itself was deleted (ttlPolicy: DeleteFineTuneJob): a failure seen by this pass
        # is counted all the same, its record is gone.
        if ctl.metrics is not None:
            ctl.metrics.record_written(snap.namespace, {}, decision.failed, None)
        return
    _remember(remembered, snap, decision)
    await _write_status(ctl, body, remembered, snap, decision)
    if snap.change is not None:
        # Recorded first: a crash from here on finds the old Job stale (kept if it failed, else deleted)
        # and makes the next attempt's Job; no attempt is skipped or repeated.
        await next_attempt(ctl, body, snap.change, remembered)
    if decision.training_started and snap.followed is not None:
        snap.followed.started_announced = True
        await ctl.post(body, "Normal", "TrainingStarted", "the trainer finished its first step")
    for kind, reason, message in decision.after:
        await ctl.post(body, kind, reason, message)


async def _clean_up(ctl: PassContext, body: dict[str, Any], snap: Snapshot, decision: Decision) -> bool:
    """The TTL's timer and work; False when the FineTuneJob is gone with it."""
    if decision.ttl_timer_cancelled:
        ctl.timers.cancel((snap.uid, "ttl"))
    if decision.ttl_timer is not None:
        ctl.requeue(snap.namespace, snap.name, snap.uid, "ttl", decision.ttl_timer)
    cleanup = decision.cleanup
    if cleanup is None:
        return True
    for name, uid in cleanup.jobs:  # the last attempt's and the failed attempts' kept beside it
        await ctl.kube.delete_job(snap.namespace, name, uid)
    await ctl.post(body, "Normal", "TTLExpired", cleanup.message)
    if cleanup.delete_finetunejob:
        await ctl.kube.delete_finetunejob(snap.namespace, snap.name, snap.uid)
        return False
    return True


def _remember(remembered: Remembered, snap: Snapshot, decision: Decision) -> None:
    if decision.follow is not None:
        remembered.followed = decision.follow
    elif decision.unfollow:
        remembered.followed = None
    # What stays between passes is the plan's facts, not the model of a spec of any size.
    if snap.plan.ftj is not None:
        remembered.plan = snap.plan.light()
    remembered.phase = decision.status.phase


async def _write_status(
    ctl: PassContext, body: dict[str, Any], remembered: Remembered, snap: Snapshot, decision: Decision
) -> None:
    """What an earlier pass failed to tell; the status, if it changed; its Event. A write that raised may
    have been stored all the same: its Event is told by the next pass."""
    if decision.untold is not None:
        remembered.untold = None
        await tell(ctl, body, remembered, decision.untold)
    if decision.patch is not None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("status of %s/%s: %s; changed %s", snap.namespace, snap.name, decision.status.phase,
                         sorted(decision.patch))  # fmt: skip
        try:
            await ctl.kube.patch_status(snap.namespace, snap.name, decision.patch)
        except Exception:
            remembered.untold = decision.event
            raise
        remembered.written = decision.written
        _count_written(ctl, remembered, snap, decision)
    if decision.event is not None:
        await tell(ctl, body, remembered, decision.event)


def _count_written(ctl: PassContext, remembered: Remembered, snap: Snapshot, decision: Decision) -> None:
    """What the write just recorded, counted once: by the write, so never again after a restart."""
    if decision.status.phase == "Running":
        remembered.ran = True
    elif decision.status.phase == "Queued":
        remembered.ran = False  # taken back by its queue: the next Running ends a wait again
    if ctl.metrics is not None:
        ctl.metrics.record_written(snap.namespace, decision.accrued, decision.failed, decision.queue_wait)


async def tell(ctl: PassContext, body: dict[str, Any], remembered: Remembered, event: Told) -> None:
    remembered.told_phase = event.phase
    await ctl.post(body, event.kind, event.reason, event.message)


async def next_attempt(ctl: PassContext, body: dict[str, Any], change: AttemptChange, remembered: Remembered) -> None:
    """A failed attempt's Job stays (the next pass makes the next one's at once); any other goes first
    (its deletion, seen by the Job watch, brings the next pass)."""
    metadata, owner = change.job["metadata"], body["metadata"]
    if change.keep:
        ctl.requeue(owner["namespace"], owner["name"], owner["uid"], "children", 0.0)
    else:
        await ctl.kube.delete_job(owner["namespace"], metadata["name"], metadata["uid"])
    remembered.job_gone()  # the next attempt's Job gets its own Service and ConfigMap
