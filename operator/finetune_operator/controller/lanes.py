"""Passes of watch events, a bounded number at once, new work first.

After a restart the watch lists every FineTuneJob, and each gets a pass: with thousands live, a
FineTuneJob created meanwhile waited behind all of them (16 s with 1,000) although they needed
nothing. New work (a FineTuneJob this operator never looked at, or one whose spec changed since)
takes the next free slot before any catch-up pass.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def is_new_work(body: dict[str, Any]) -> bool:
    """Not yet looked at in this generation: no status of the operator's, or a spec changed since."""
    status = body.get("status")
    if not isinstance(status, dict) or not status.get("phase"):
        return True
    return bool(status.get("observedGeneration") != body["metadata"].get("generation"))


class Lanes:
    """At most `limit` holders at once; a waiter in the urgent lane is let in before any other."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}

    def idle(self) -> bool:
        """A slot is free and no one waits: an entry now would not wait."""
        return self.free > 0 and not self.waiting[True] and not self.waiting[False]

    def queued(self, urgent: bool) -> int:
        """Waiters in this lane."""
        return len(self.waiting[urgent])

    @asynccontextmanager
    async def slot(self, urgent: bool) -> AsyncIterator[None]:
        await self._enter(urgent)
        try:
            yield
        finally:
            self._leave()

    async def _enter(self, urgent: bool) -> None:
        if self.idle():
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[urgent].append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._leave()  # handed a slot in the same turn it was cancelled: pass it on
            else:
                self.waiting[urgent].remove(waiter)  # (rare: a lane holds only waiters that wait)
            raise

    def _leave(self) -> None:
        for lane in (True, False):
            queue = self.waiting[lane]
            if queue:
                queue.popleft().set_result(None)  # the slot goes straight to it
                return
        self.free += 1
