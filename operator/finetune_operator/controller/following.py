"""Reading training progress from the trainer's log while a FineTuneJob runs.

One loop for the whole operator: every interval, one bounded log read per Running FineTuneJob (the
tail of its training container's log), folded into what was read before. When that changes the
trainer status or the LogUnreadable condition, the loop asks for a reconcile pass, which writes the
status under the object's lock: the loop itself never writes. A log that cannot be read is retried
quietly; only when it stays unreadable does a condition say so. The phase never depends on a read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from finetune_operator.api.base import TRAINER_CONTAINER
from finetune_operator.controller.context import PassContext
from finetune_operator.observe.following import (
    LIMIT_BYTES,
    TAIL_LINES,
    Followed,
    fold,
    progress_seen,
    readable_again,
    unreadable_condition,
)
from finetune_operator.observe.pods import training_pod

logger = logging.getLogger("finetune_operator.progress")

CONCURRENT_READS = 8
# When the tail overflows the byte limit, its end is cut; a short tail still holds the end.
SHORT_TAIL_LINES = 20


async def follow_logs(ctl: PassContext) -> None:
    while True:
        await asyncio.sleep(ctl.settings.log_interval)
        await ctl.check_active()
        if not ctl.active:
            continue
        await gather_bounded([_read_and_reconcile(ctl, followed) for followed in ctl.memory.followed()])


async def _read_and_reconcile(ctl: PassContext, followed: Followed) -> None:
    if await read_progress(ctl, followed, final=False):
        await ctl.reconcile_from_views(followed.namespace, followed.name)


async def read_progress(ctl: PassContext, followed: Followed, final: bool) -> bool:
    """One read of the log's tail, folded in; True if the status should change (progress or condition)."""
    body = ctl.memory.body(followed.namespace, followed.name)
    job = ctl.views.job(body) if body is not None else None
    pod = training_pod(ctl.views.pods(followed.namespace, followed.name, job))
    if pod is None:
        return False
    name = pod["metadata"]["name"]
    try:
        tail = await ctl.kube.read_log(followed.namespace, name, TRAINER_CONTAINER, TAIL_LINES, LIMIT_BYTES)
        if tail.cut:
            tail = await ctl.kube.read_log(followed.namespace, name, TRAINER_CONTAINER, SHORT_TAIL_LINES, LIMIT_BYTES)
    except Exception as error:  # pod gone, kubelet unreachable: not the training's fault
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:300]
        return unreadable_condition(followed, first_line, 0, ctl.clock.now()) is not None
    changed = readable_again(followed, 0, ctl.clock.now()) is not None
    try:
        # A final read folds the last line even without its newline, unless the byte limit cut it.
        folded = fold(followed, tail.text, ctl.clock.now(), final=final and not tail.cut)
    except Exception:  # proven never to happen (hypothesis), but a log is the user's words: it
        # must never hold back the phase, which the Job and the termination message decide.
        logger.exception("the log of %s/%s could not be read as a trainer log", followed.namespace, followed.name)
        return changed
    if not final:  # the loop's reads, one per interval, measure a stall
        settings = ctl.settings
        stall = progress_seen(followed, folded, settings.stall_intervals, settings.log_interval, 0, ctl.clock.now())
        changed = changed or stall is not None
    return folded or changed


async def gather_bounded(coroutines: list[Awaitable[None]], limit: int = CONCURRENT_READS) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Awaitable[None]) -> None:
        async with semaphore:
            try:
                await coroutine
            except Exception:  # one training's trouble must not stop the others
                logger.exception("progress read failed")

    await asyncio.gather(*(one(c) for c in coroutines))
