"""Reading training progress from the trainer's log while a FineTuneJob runs.

One loop for the whole operator: every interval, one bounded log read per Running FineTuneJob
(the tail of its training container's log), folded into the previous result, and one status patch
only when the progress changed. A log that cannot be read is retried quietly; only when it stays
unreadable does a `LogUnreadable` condition say so. The phase never depends on a log read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from finetune_operator.api.status import Condition, TrainerStatus
from finetune_operator.observe.progress import Progress, parse_log, trainer_status
from finetune_operator.observe.status import timestamp
from finetune_operator.render.entrypoint import CONTAINER_NAME

logger = logging.getLogger("finetune_operator.progress")

TAIL_LINES = 400
LIMIT_BYTES = 256 * 1024
UNREADABLE_AFTER = 4  # failed reads in a row before the condition shows


@dataclass
class Followed:
    """A Running FineTuneJob whose log is read."""

    namespace: str
    name: str
    max_iter: int | None
    progress: Progress | None = None
    written: TrainerStatus | None = None
    failures: int = 0
    condition: Condition | None = None
    started_announced: bool = False


@dataclass
class ProgressState:
    interval: float = 15.0
    followed: dict[str, Followed] = field(default_factory=dict)


def comparable(status: TrainerStatus | None) -> dict[str, Any] | None:
    """A trainer status without its timestamp: what decides whether a write is due."""
    if status is None:
        return None
    return status.model_dump(exclude={"last_updated_time"}, mode="json")


def training_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest pod of the Job (a retry replaces the one before)."""
    candidates = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def termination_message(pod: dict[str, Any] | None) -> str | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER_NAME:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated and terminated.get("message"):
                return str(terminated["message"])
    return None


def fold(followed: Followed, text: str) -> TrainerStatus | None:
    """Fold a log tail in; the new trainer status if it differs from the one written, else None."""
    followed.progress = parse_log(text, followed.progress, max_iter=followed.max_iter)
    candidate = trainer_status(followed.progress, timestamp(datetime.now(UTC)))
    if comparable(candidate) == comparable(followed.written):
        return None
    return candidate


def unreadable_condition(followed: Followed, error: str, generation: int) -> Condition | None:
    """The LogUnreadable condition once reads kept failing (None while it is not worth showing)."""
    followed.failures += 1
    if followed.failures < UNREADABLE_AFTER or (followed.condition and followed.condition.status == "True"):
        return None
    message = f"the training log could not be read {followed.failures} times in a row: {error}"
    followed.condition = _log_condition("True", "LogReadFailed", message, generation)
    return followed.condition


def readable_again(followed: Followed, generation: int) -> Condition | None:
    followed.failures = 0
    if followed.condition is None or followed.condition.status != "True":
        return None
    followed.condition = _log_condition("False", "LogRead", "the training log is readable again", generation)
    return followed.condition


def _log_condition(status: Literal["True", "False"], reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type="LogUnreadable",
        status=status,
        observed_generation=generation,
        last_transition_time=timestamp(datetime.now(UTC)),
        reason=reason,
        message=message,
    )


async def gather_bounded(coroutines: list[Any], limit: int = 8) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> None:
        async with semaphore:
            try:
                await coroutine
            except Exception:  # one job's trouble must not stop the others
                logger.exception("progress read failed")

    await asyncio.gather(*(one(c) for c in coroutines))
