"""What the controller needs from the world, as narrow interfaces: the Kubernetes API (`Kube`, or an
in-memory fake in unit tests), the clock, and timers. Nothing here talks to anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from finetune_operator.observe.following import LogTail

T = TypeVar("T")


class KubePort(Protocol):
    async def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    async def create_config_map(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    async def create_service(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def delete_job(self, namespace: str, name: str, uid: str) -> bool: ...
    async def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None: ...
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def read_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> LogTail: ...
    async def post_event(
        self,
        owner: dict[str, Any],
        kind: str,
        reason: str,
        message: str,
        when: datetime | None = None,
        name: str | None = None,
    ) -> None: ...
    async def list_events(self, namespace: str, involved_uid: str, reason: str) -> list[dict[str, Any]]: ...
    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]] | None: ...
    async def set_job_requested_suspend(self, namespace: str, name: str, suspend: bool) -> None: ...
    async def set_workload_active(self, namespace: str, name: str, active: bool) -> None: ...
    async def read_peers(self, peering: str, namespace: str | None) -> dict[str, Any]: ...
    async def delete_finetunejob(self, namespace: str, name: str, uid: str) -> None: ...
    async def read_finetunejob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def list_labelled(
        self, kind: str, namespace: str | None, label: str, entry: Callable[[dict[str, Any]], T]
    ) -> list[T]: ...


class Clock:
    """Wall time for status timestamps and deadlines; a test swaps in a clock it moves itself."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class Timers:
    """One pending callback per key (a new one replaces the old), run as a task when it fires.

    Keys are (uid, purpose), so that forgetting an object cancels all of its timers."""

    def __init__(self) -> None:
        self.pending: dict[Hashable, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(self, key: Hashable, delay: float, callback: Callable[[], Awaitable[None]]) -> None:
        self.cancel(key)
        self.pending[key] = asyncio.get_running_loop().call_later(max(0.0, delay), self._fire, key, callback)

    def _fire(self, key: Hashable, callback: Callable[[], Awaitable[None]]) -> None:
        self.pending.pop(key, None)
        self.spawn(callback())

    def spawn(self, work: Awaitable[None]) -> None:
        """Run work in a task of its own, kept until it ends."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self, key: Hashable) -> None:
        handle = self.pending.pop(key, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self, uid: str) -> None:
        for key in [k for k in self.pending if isinstance(k, tuple) and k and k[0] == uid]:
            self.cancel(key)

    def delay_of(self, key: Hashable) -> float | None:
        """Seconds until the timer of this key fires (None: none pending); for tests and metrics."""
        handle = self.pending.get(key)
        return None if handle is None else handle.when() - asyncio.get_running_loop().time()
