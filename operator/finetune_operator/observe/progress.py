"""Training progress from the aiDAPTIV trainer's log, read in tails.

The operator reads only the end of the log (early lines scroll away) and may read the same lines
twice, so parsing is a merge: `parse_log(text, previous)` folds complete lines into the previous
result, and folding a line again changes nothing. Timed values keep the newest (iterations also
the oldest, for the pace), and what depends on several lines (the step an END closes) is derived
from those kept values when asked, so lines in any order fold the same once or twice. A line cut
off at the end of `text` is left for the next read unless the log is final; unknown lines are
ignored.

The log is not trusted: a user's `echo` in the prescript writes to it too. No text makes parsing
raise, and every value that reaches the status fits its field.

Assumptions (the trainer is proprietary; see AIDAPTIV.md): an *iteration* is one micro-batch, the
unit of `[PHISON START] Epoch: E, Iteration: I` / `[PHISON END] Iteration: I`, both counted from 0;
a *step* is a completed iteration counted over the whole run; `max_iter` (when positive) caps the
number of iterations of the whole run, so total steps = min(epochs × iterations per epoch, max_iter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from finetune_operator.api.status import Checkpoints, Metric, TrainerStatus
from finetune_operator.observe import log_values
from finetune_operator.observe.log_values import COMPLETE, MAX_REMAINING_SECONDS, strip_ansi

LogVerdict = Literal["running", "complete", "failed"]


@dataclass(frozen=True)
class Mark:
    """A value and the log time it was written at."""

    value: str
    at: datetime


@dataclass(frozen=True)
class Start:
    """A `[PHISON START] Epoch: E, Iteration: I` line."""

    at: datetime
    epoch: int
    iteration: int

    def done(self, per_epoch: int) -> int:
        """Steps completed when this iteration began."""
        return self.epoch * per_epoch + self.iteration


@dataclass(frozen=True)
class End:
    """A `[PHISON END] Iteration: I` line (it names no epoch: that is its START's)."""

    at: datetime
    iteration: int


class _Timed(Protocol):
    @property
    def at(self) -> datetime: ...


_T = TypeVar("_T", bound=_Timed)


def _newest(kept: _T | None, seen: _T) -> _T:
    # On equal times the later line wins: a re-read replays the same lines, so the same one wins again.
    return seen if kept is None or seen.at >= kept.at else kept


def _oldest(kept: _T | None, seen: _T) -> _T:
    return seen if kept is None or seen.at < kept.at else kept


@dataclass(frozen=True)
class Progress:
    total_epochs: int | None = None
    iterations_per_epoch: int | None = None
    updates_per_epoch: int | None = None
    max_iter: int | None = None
    newest_start: Start | None = None
    oldest_start: Start | None = None
    newest_end: End | None = None
    oldest_end: End | None = None
    loss: Mark | None = None
    tokens_per_second: Mark | None = None
    verdict: LogVerdict = "running"
    evidence: str | None = None
    # Checkpoint saves: a save is counted when its START is later than any seen before, so a line read
    # again (overlapping tails) is never counted twice; a restart seeds both from the status.
    checkpoints: int = 0
    newest_save: datetime | None = None
    save_spent: Mark | None = None  # the newest `[time spent]` of a save

    @property
    def last_save_seconds(self) -> str | None:
        """How long the newest save took, once it has finished (its time spent logged after its start)."""
        spent, start = self.save_spent, self.newest_save
        if spent is None or (start is not None and spent.at < start):
            return None
        return spent.value

    @property
    def total_steps(self) -> int | None:
        if self.total_epochs is None or self.iterations_per_epoch is None:
            return None
        total = self.total_epochs * self.iterations_per_epoch
        if self.max_iter is not None and self.max_iter > 0:
            total = min(total, self.max_iter)
        return log_values.bounded(total)

    @property
    def _per_epoch(self) -> int:
        return self.iterations_per_epoch or 0

    @property
    def last_step(self) -> int | None:
        """Completed steps at the newest [PHISON END] (None until one is seen after a START)."""
        start, end = self.newest_start, self.newest_end
        if start is None or end is None:
            return None
        if start.at < end.at:
            return log_values.bounded(start.epoch * self._per_epoch + end.iteration + 1)  # the END closes this START
        # An iteration began at or after the newest END: every one before it is done.
        return log_values.bounded(start.done(self._per_epoch))

    @property
    def steps(self) -> int:
        return self.last_step or 0

    @property
    def epoch(self) -> int | None:
        """0-based epoch of the newest [PHISON START]."""
        return None if self.newest_start is None else self.newest_start.epoch

    @property
    def current_epoch(self) -> int | None:
        """1-based epoch of the newest step, as the log's 'Beginning of Epoch 1/1' counts."""
        return None if self.epoch is None else log_values.bounded(self.epoch + 1)

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
        last = self.last_step
        if last is None or self.newest_end is None or self.oldest_start is None:
            return None
        first = self.oldest_start
        since: list[tuple[int, datetime]] = []
        if self.oldest_end is not None and first.at < self.oldest_end.at:
            # From the end of the oldest step seen: the first step's warm-up would slow the pace.
            since.append((first.epoch * self._per_epoch + self.oldest_end.iteration + 1, self.oldest_end.at))
        # Else from the oldest START: one step in, or a tail whose oldest END closed a START never seen.
        since.append((first.done(self._per_epoch), first.at))
        for step, at in since:
            if last > step:
                pace = (self.newest_end.at - at).total_seconds() / (last - step)
                return pace if pace >= 0 else None
        return None

    @property
    def remaining_seconds(self) -> int | None:
        """From the log's own timestamps: the pace so far times the steps left."""
        if self.verdict == "complete":
            return 0
        total, pace = self.total_steps, self.seconds_per_step
        if self.verdict == "failed" or total is None or pace is None:
            return None
        return round(min(MAX_REMAINING_SECONDS, pace * max(0, total - self.steps)))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _timed_line(state: Progress, at: datetime, body: str) -> Progress:
    # A line that names its kind but holds an absurd value is ignored whole, not read as another kind.
    if match := log_values.START.search(body):
        epoch, iteration = log_values.count(match[1]), log_values.count(match[2])
        if epoch is None or iteration is None:
            return state
        start = Start(at, epoch, iteration)
        return replace(
            state, newest_start=_newest(state.newest_start, start), oldest_start=_oldest(state.oldest_start, start)
        )
    if match := log_values.END.search(body):
        if (iteration := log_values.count(match[1])) is None:
            return state
        end = End(at, iteration)
        return replace(state, newest_end=_newest(state.newest_end, end), oldest_end=_oldest(state.oldest_end, end))
    if match := log_values.LOSS.search(body):
        if (loss := log_values.loss(match[1])) is None:
            return state
        return replace(state, loss=_newest(state.loss, Mark(loss, at)))
    if match := log_values.EFFICIENCY.search(body):
        if (tokens := log_values.throughput(match[1])) is None:
            return state
        return replace(state, tokens_per_second=_newest(state.tokens_per_second, Mark(tokens, at)))
    if log_values.SAVE_START.search(body):
        if state.newest_save is not None and at <= state.newest_save:
            return state
        return replace(state, checkpoints=state.checkpoints + 1, newest_save=at)
    if match := log_values.SAVE_SPENT.search(body):
        if (spent := log_values.throughput(match[1])) is None:
            return state
        return replace(state, save_spent=_newest(state.save_spent, Mark(spent, at)))
    if match := log_values.EPOCH_BEGIN.search(body):
        total_epochs = log_values.count(match[2])
        return state if total_epochs is None else replace(state, total_epochs=total_epochs)
    return _untimed_line(state, body)


def _untimed_line(state: Progress, line: str) -> Progress:
    if COMPLETE in line:
        return replace(state, verdict="complete", evidence=log_values.evidence(line))
    if match := log_values.SCHEDULE.search(line):
        epochs, per_epoch = log_values.count(match[1]), log_values.count(match[2])
        if epochs is None or per_epoch is None:
            return state
        return replace(state, total_epochs=epochs, iterations_per_epoch=per_epoch)
    if match := log_values.ACCUMULATION.search(line):
        updates = log_values.count(match[2])
        return state if updates is None else replace(state, updates_per_epoch=updates)
    # Nonzero by its digits: a return code of any length is a failure, and int() is not needed.
    if (match := log_values.RETURN_CODE.search(line)) and match[1].lstrip("-").lstrip("0"):
        # An exception logged before says more than the launcher's return code.
        evidence = state.evidence if state.verdict == "failed" else log_values.evidence(line)
        return replace(state, verdict="failed", evidence=evidence)
    if state.verdict == "running" and log_values.ERROR.match(line):
        return replace(state, verdict="failed", evidence=log_values.evidence(line))
    if match := log_values.MAX_ITER.search(line):
        # The launcher's command line is what the trainer really does; it beats the spec's value.
        max_iter = log_values.signed(match[1])
        return state if max_iter is None else replace(state, max_iter=max_iter)
    return state


def parse_line(state: Progress, line: str) -> Progress:
    # tqdm bars rewrite one line with carriage returns: only the last rewrite counts.
    line = strip_ansi(line.rstrip("\r").rsplit("\r", 1)[-1])
    stamped = log_values.STAMP.fullmatch(line)
    if stamped is None:
        return _untimed_line(state, line)
    try:
        at = _time(stamped[1])
    except ValueError:
        return state
    return _timed_line(state, at, stamped[2])


def parse_log(
    text: str, previous: Progress | None = None, max_iter: int | None = None, *, final: bool = False
) -> Progress:
    """Fold the complete lines of `text` into `previous`.

    A line without its newline waits for the next read (a tail may have cut it), unless `final`:
    the container has terminated and nothing more will come, so the last line is all there is.
    """
    state = previous or Progress(max_iter=max_iter)
    if max_iter is not None and state.max_iter is None:
        state = replace(state, max_iter=max_iter)
    lines = text.split("\n")
    if not final:
        lines.pop()
    for line in lines:
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


def _metric_value(value: int | str | None) -> str | None:
    # parse_log keeps every value within bounds; a Progress made otherwise must not break the status either.
    if isinstance(value, int):
        return None if log_values.bounded(value) is None else str(value)
    return value if value is not None and len(value) <= log_values.MAX_NUMBER_CHARS else None


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
    values = {name: _metric_value(value) for name, value in named.items()}
    return TrainerStatus(
        progress_percentage=progress.percentage,
        estimated_remaining_seconds=remaining,
        estimated_remaining_time=None if remaining is None else format_duration(remaining),
        metrics=[Metric(name=name, value=value) for name, value in values.items() if value is not None],
        last_updated_time=updated_at,
        checkpoints=checkpoints(progress),
    )


def checkpoints(progress: Progress) -> Checkpoints | None:
    """The saves so far (None before the first)."""
    if not progress.checkpoints:
        return None
    saved = progress.newest_save
    return Checkpoints(
        count=progress.checkpoints,
        last_time=None if saved is None else log_time(saved),
        last_duration_seconds=progress.last_save_seconds,
    )


def log_time(at: datetime) -> str:
    """A log time in status: the trainer's clock writes no zone; it is taken as UTC, to the microsecond
    (so that a restart, seeding the newest save from it, compares it exactly with the log's lines)."""
    return f"{at:%Y-%m-%dT%H:%M:%S.%f}Z"


def seeded(recorded: Checkpoints | None, max_iter: int | None) -> Progress | None:
    """Where a restart picks a log up: the saves counted before (re-read lines are not counted again)."""
    if recorded is None or recorded.last_time is None:
        return None
    try:
        newest = datetime.fromisoformat(recorded.last_time.removesuffix("Z"))
    except ValueError:
        return None
    return Progress(max_iter=max_iter, checkpoints=recorded.count, newest_save=newest.replace(tzinfo=None))
