"""Following a running training's log: what one read of its tail changes.

The operator reads only the end of the log, every interval, and folds it into what it has seen
(`observe.progress`). This module holds that per-training state and decides, from one read, whether
the trainer status changed (a status write is due) and whether the log has become unreadable or
readable again (a condition is due). No I/O: the caller reads the log and writes the status.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from finetune_operator.api.status import Condition, TrainerStatus
from finetune_operator.observe.log_values import strip_ansi
from finetune_operator.observe.progress import Progress, format_duration, parse_log, trainer_status
from finetune_operator.observe.times import timestamp
from finetune_operator.observe.trend import sparkline, with_point

TAIL_LINES = 400
LIMIT_BYTES = 256 * 1024
UNREADABLE_AFTER = 4  # failed reads in a row before the condition shows
PROGRESSING = "Progressing"
# What of the log's end survives the cleanup of a failed run, in its Failed condition.
KEPT_LINES = 20
KEPT_LINE_CHARS = 200


@dataclass(frozen=True)
class LogTail:
    """One read of a log's tail, as text."""

    text: str
    cut: bool  # the byte limit ended the read: its last line is incomplete


def log_text(data: bytes, cut: bool = False) -> str:
    """A log's bytes as text. A trainer's log is not always UTF-8 (a latin-1 byte from a library's message),
    and a read cut short may end inside a character (a tqdm bar of █): a strict decode raised on both,
    losing the progress and the last lines. Bytes that are no UTF-8 become U+FFFD; a character a `cut`
    read ends in is dropped, since the next read holds it whole."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=not cut)


def log_tail(data: bytes, limit_bytes: int = LIMIT_BYTES) -> LogTail:
    """One read of at most `limit_bytes` (as the API server's limitBytes ends it) as text."""
    cut = len(data) >= limit_bytes
    return LogTail(log_text(data, cut), cut)


@dataclass
class Followed:
    """A training whose log is read, and what was learnt from it."""

    namespace: str
    name: str
    max_iter: int | None
    progress: Progress | None = None
    latest: TrainerStatus | None = None  # the newest trainer status, for the next status write
    failures: int = 0
    condition: Condition | None = None
    started_announced: bool = False
    last_lines: list[str] = field(default_factory=list)
    quiet_reads: int = 0  # reads in a row that found no new progress
    progressing: Condition | None = None  # set from the first stall on (none before: nothing to tell)

    @property
    def verdict(self) -> str:
        return self.progress.verdict if self.progress is not None else "running"


def comparable(status: TrainerStatus | None) -> dict[str, Any] | None:
    """A trainer status without its timestamp: what decides whether a write is due."""
    if status is None:
        return None
    return status.model_dump(exclude={"last_updated_time"}, mode="json")


def fold(followed: Followed, text: str, now: datetime, final: bool = False) -> bool:
    """Fold a log tail in; True if the trainer status changed (a write is due).

    `final`: the container has ended, so the last line counts even without its newline.
    """
    followed.progress = parse_log(text, followed.progress, max_iter=followed.max_iter, final=final)
    followed.last_lines = last_lines(text)
    candidate = with_trend(trainer_status(followed.progress, timestamp(now)), followed.progress, followed.latest)
    if comparable(candidate) == comparable(followed.latest):
        return False
    followed.latest = candidate
    return True


def with_trend(status: TrainerStatus, progress: Progress, previous: TrainerStatus | None) -> TrainerStatus:
    """The status with the loss history (the previous one's, with this read's loss) and its sparkline."""
    history = list(previous.loss_history or []) if previous is not None else []
    if progress.loss is not None:
        history = with_point(history, progress.steps, progress.loss.value)
    if not history:
        return status
    trend = sparkline([point.loss for point in history])
    return status.model_copy(update={"loss_history": history, "loss_trend": trend})


def progress_seen(
    followed: Followed, progressed: bool, limit: int, interval: float, generation: int, now: datetime
) -> Condition | None:
    """After one read of the log loop: Progressing=False (NoProgress) once `limit` reads in a row found no
    new progress, True (ProgressResumed) at the next that does; the condition when it changes, else None.
    A stall never fails the run: the trainer may be saving, or waiting on a slow disk."""
    if progressed:
        followed.quiet_reads = 0
        if followed.progressing is None or followed.progressing.status == "True":
            return None
        resumed = "the training log shows progress again"
        followed.progressing = _progress_condition("True", "ProgressResumed", resumed, generation, now)
        return followed.progressing
    followed.quiet_reads += 1
    stalled = followed.progressing is not None and followed.progressing.status == "False"
    if followed.quiet_reads < limit or stalled:
        return None
    quiet = format_duration(round(limit * interval))
    message = f"the training log showed no new progress in {limit} reads ({quiet}); the training goes on"
    followed.progressing = _progress_condition("False", "NoProgress", message, generation, now)
    return followed.progressing


def stalled(followed: Followed) -> bool:
    return followed.progressing is not None and followed.progressing.status == "False"


def _progress_condition(
    status: Literal["True", "False"], reason: str, message: str, generation: int, now: datetime
) -> Condition:
    return Condition(
        type=PROGRESSING,
        status=status,
        observed_generation=generation,
        last_transition_time=timestamp(now),
        reason=reason,
        message=message,
    )


def last_lines(text: str) -> list[str]:
    """The log's last non-empty lines, each cut short: bounded, for a condition message."""
    lines = [strip_ansi(line).strip() for line in text[-KEPT_LINES * 4 * KEPT_LINE_CHARS :].split("\n")]
    kept = [line[:KEPT_LINE_CHARS] for line in lines if line][-KEPT_LINES:]
    return kept


def first_step_seen(followed: Followed) -> bool:
    """The first finished step is seen and not announced yet: the TrainingStarted event is due."""
    return not followed.started_announced and followed.progress is not None and followed.progress.steps > 0


def first_step_due(followed: Followed) -> bool:
    """True once, when the first finished step is seen (and marked announced)."""
    if not first_step_seen(followed):
        return False
    followed.started_announced = True
    return True


def unreadable_condition(followed: Followed, error: str, generation: int, now: datetime) -> Condition | None:
    """The LogUnreadable condition once reads kept failing (None while it is not worth showing)."""
    followed.failures += 1
    if followed.failures < UNREADABLE_AFTER or (followed.condition and followed.condition.status == "True"):
        return None
    message = f"the training log could not be read {followed.failures} times in a row: {error}"
    followed.condition = _log_condition("True", "LogReadFailed", message, generation, now)
    return followed.condition


def readable_again(followed: Followed, generation: int, now: datetime) -> Condition | None:
    followed.failures = 0
    if followed.condition is None or followed.condition.status != "True":
        return None
    followed.condition = _log_condition("False", "LogRead", "the training log is readable again", generation, now)
    return followed.condition


def _log_condition(
    status: Literal["True", "False"], reason: str, message: str, generation: int, now: datetime
) -> Condition:
    return Condition(
        type="LogUnreadable",
        status=status,
        observed_generation=generation,
        last_transition_time=timestamp(now),
        reason=reason,
        message=message,
    )
