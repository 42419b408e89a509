"""Training progress from the aiDAPTIV trainer's log, read in tails.

The operator reads only the end of the log (early lines scroll away) and may read the same lines
twice, so parsing is a merge: `parse_log(text, previous)` folds complete lines into the previous
result, and folding a line again changes nothing. Every value with a timestamp keeps the newest;
a line cut off at the end of `text` is left for the next read; unknown lines are ignored.

Assumptions (the trainer is proprietary; see AIDAPTIV.md): an *iteration* is one micro-batch, the
unit of `[PHISON START] Epoch: E, Iteration: I` / `[PHISON END] Iteration: I`, both counted from 0;
a *step* is a completed iteration counted over the whole run; `max_iter` (when positive) caps the
number of iterations of the whole run, so total steps = min(epochs × iterations per epoch, max_iter).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from finetune_operator.api.status import Metric, TrainerStatus

Verdict = Literal["running", "complete", "failed"]

_STAMP = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)\]\s*(.*)$")
_SCHEDULE = re.compile(r"training schedule consists of (\d+) epochs? with (\d+) iterations? each")
_ACCUMULATION = re.compile(r"accumulated time is set to (\d+) so the training will be updated (\d+) times")
_EPOCH_BEGIN = re.compile(r"Beginning of Epoch (\d+)/(\d+)")
_START = re.compile(r"\[PHISON START\] Epoch: (\d+), Iteration: (\d+)")
_END = re.compile(r"\[PHISON END\] Iteration: (\d+)")
_LOSS = re.compile(r"\[Loss\]:\s*(\S+)")
_EFFICIENCY = re.compile(r"Training efficiency: (\S+) \(tokens/s\)")
_MAX_ITER = re.compile(r"--max_iter (-?\d+)")
_RETURN_CODE = re.compile(r"exits with return code = (-?\d+)")
_ERROR = re.compile(r"^[A-Za-z_.]*(Error|Exception): ")
COMPLETE = "training complete!"


@dataclass(frozen=True)
class Mark:
    """A value and the log time it was written at."""

    value: str
    at: datetime


@dataclass(frozen=True)
class Progress:
    total_epochs: int | None = None
    iterations_per_epoch: int | None = None
    updates_per_epoch: int | None = None
    max_iter: int | None = None
    epoch: int | None = None  # 0-based epoch of the newest [PHISON START]
    epoch_started: datetime | None = None
    last_step: int | None = None  # completed steps at the newest [PHISON END]
    last_step_at: datetime | None = None
    first_step: int | None = None  # the oldest [PHISON END] seen, for the pace
    first_step_at: datetime | None = None
    first_start_at: datetime | None = None
    loss: Mark | None = None
    tokens_per_second: Mark | None = None
    verdict: Verdict = "running"
    evidence: str | None = None

    @property
    def total_steps(self) -> int | None:
        if self.total_epochs is None or self.iterations_per_epoch is None:
            return None
        total = self.total_epochs * self.iterations_per_epoch
        if self.max_iter is not None and self.max_iter > 0:
            total = min(total, self.max_iter)
        return total

    @property
    def steps(self) -> int:
        return self.last_step or 0

    @property
    def current_epoch(self) -> int | None:
        """1-based epoch of the newest step, as the log's 'Beginning of Epoch 1/1' counts."""
        return None if self.epoch is None else self.epoch + 1

    @property
    def iteration(self) -> int | None:
        """Completed iterations within the current epoch."""
        if self.last_step is None or not self.iterations_per_epoch:
            return None
        done = self.last_step - (self.epoch or 0) * self.iterations_per_epoch
        return max(0, min(done, self.iterations_per_epoch))

    @property
    def percentage(self) -> int | None:
        if self.verdict == "complete":
            return 100
        total = self.total_steps
        if not total:
            return None
        # 100 only with the trainer's own word: the last step is followed by saving the model.
        return min(99, math.floor(100 * self.steps / total))

    @property
    def seconds_per_step(self) -> float | None:
        if self.last_step is None or self.last_step_at is None:
            return None
        if self.first_step is not None and self.first_step_at is not None and self.last_step > self.first_step:
            return (self.last_step_at - self.first_step_at).total_seconds() / (self.last_step - self.first_step)
        if self.first_start_at is not None and self.last_step > 0:
            return (self.last_step_at - self.first_start_at).total_seconds() / self.last_step
        return None

    @property
    def remaining_seconds(self) -> int | None:
        """From the log's own timestamps: the pace so far times the steps left."""
        if self.verdict == "complete":
            return 0
        total, pace = self.total_steps, self.seconds_per_step
        if self.verdict == "failed" or total is None or pace is None:
            return None
        return max(0, round(pace * max(0, total - self.steps)))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _newer(mark: Mark | None, value: str, at: datetime) -> Mark:
    return Mark(value, at) if mark is None or at >= mark.at else mark


def _min_time(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at < current else current


def _timed_line(state: Progress, at: datetime, body: str) -> Progress:
    if match := _START.search(body):
        epoch = int(match[1])
        if state.epoch_started is None or at >= state.epoch_started:
            state = replace(state, epoch=epoch, epoch_started=at)
        return replace(state, first_start_at=_min_time(state.first_start_at, at))
    if match := _END.search(body):
        return _step_done(state, int(match[1]), at)
    if match := _LOSS.search(body):
        return replace(state, loss=_newer(state.loss, match[1], at))
    if match := _EFFICIENCY.search(body):
        return replace(state, tokens_per_second=_newer(state.tokens_per_second, match[1], at))
    if match := _EPOCH_BEGIN.search(body):
        return replace(state, total_epochs=int(match[2]))
    return _untimed_line(state, body)


def _step_done(state: Progress, iteration: int, at: datetime) -> Progress:
    if state.epoch is None or state.epoch_started is None or state.epoch_started > at:
        return state  # the [PHISON START] of this iteration scrolled away before it was ever seen
    step = state.epoch * (state.iterations_per_epoch or 0) + iteration + 1
    if state.last_step_at is None or at >= state.last_step_at:
        state = replace(state, last_step=step, last_step_at=at)
    if state.first_step_at is None or at < state.first_step_at:
        state = replace(state, first_step=step, first_step_at=at)
    return state


def _untimed_line(state: Progress, line: str) -> Progress:
    if COMPLETE in line:
        return replace(state, verdict="complete", evidence=line.strip())
    if match := _SCHEDULE.search(line):
        return replace(state, total_epochs=int(match[1]), iterations_per_epoch=int(match[2]))
    if match := _ACCUMULATION.search(line):
        return replace(state, updates_per_epoch=int(match[2]))
    if (match := _RETURN_CODE.search(line)) and int(match[1]) != 0:
        # An exception logged before says more than the launcher's return code.
        evidence = state.evidence if state.verdict == "failed" else line.strip()
        return replace(state, verdict="failed", evidence=evidence)
    if state.verdict == "running" and _ERROR.search(line):
        return replace(state, verdict="failed", evidence=line.strip())
    if match := _MAX_ITER.search(line):
        # The launcher's command line is what the trainer really does; it beats the spec's value.
        return replace(state, max_iter=int(match[1]))
    return state


def parse_line(state: Progress, line: str) -> Progress:
    line = line.rstrip("\r")
    # tqdm bars rewrite one line with carriage returns: only the last rewrite counts.
    line = line.rsplit("\r", 1)[-1]
    stamped = _STAMP.match(line)
    if stamped is None:
        return _untimed_line(state, line)
    try:
        at = _time(stamped[1])
    except ValueError:
        return state
    return _timed_line(state, at, stamped[2])


def parse_log(text: str, previous: Progress | None = None, max_iter: int | None = None) -> Progress:
    """Fold the complete lines of `text` into `previous` (a line without its newline waits)."""
    state = previous or Progress(max_iter=max_iter)
    if max_iter is not None and state.max_iter is None:
        state = replace(state, max_iter=max_iter)
    complete_lines = text.split("\n")[:-1]
    for line in complete_lines:
        state = parse_line(state, line)
    return state


def format_duration(seconds: int) -> str:
    """1h2m3s, 4m0s, 59s: short enough for a kubectl column."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def trainer_status(progress: Progress, updated_at: str | None) -> TrainerStatus:
    """The status.trainerStatus for this progress (Kubeflow Trainer's field names)."""
    remaining = progress.remaining_seconds
    named = {
        "epoch": progress.current_epoch,
        "totalEpochs": progress.total_epochs,
        "iteration": progress.iteration,
        "iterationsPerEpoch": progress.iterations_per_epoch,
        "step": progress.last_step,
        "totalSteps": progress.total_steps,
        "loss": progress.loss.value if progress.loss else None,
        "tokensPerSecond": progress.tokens_per_second.value if progress.tokens_per_second else None,
    }
    return TrainerStatus(
        progress_percentage=progress.percentage,
        estimated_remaining_seconds=remaining,
        estimated_remaining_time=None if remaining is None else format_duration(remaining),
        metrics=[Metric(name=name, value=str(value)) for name, value in named.items() if value is not None],
        last_updated_time=updated_at,
    )
