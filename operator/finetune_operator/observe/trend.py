"""The loss over a run, kept short: a few dozen points spread over the steps, and a sparkline of them.

A point is added at each read of the log that finds a new loss (the status's history is what one
follows, so a restart continues it). When the history is full, the point that lies closest to its
neighbours goes (the interior point whose neighbours are the fewest steps apart; the oldest on a tie):
the points stay spread over the whole run, the first and the newest are always kept, and the same
reads always keep the same points.
"""

from __future__ import annotations

import math

from finetune_operator.api.status import MAX_LOSS_POINTS, LossPoint

BARS = "▁▂▃▄▅▆▇█"
NOT_FINITE = "×"  # the trainer's nan or inf: training diverged, shown rather than hidden


def with_point(history: list[LossPoint], step: int, loss: str, limit: int = MAX_LOSS_POINTS) -> list[LossPoint]:
    """The history with the loss at this step: a new point after the newest, or the newest one's value
    replaced at the same step; a loss at an earlier step than the newest (a stale read) changes nothing."""
    if history and step < history[-1].step:
        return history
    if history and step == history[-1].step:
        if history[-1].loss == loss:
            return history
        return [*history[:-1], LossPoint(step=step, loss=loss)]
    return downsample([*history, LossPoint(step=step, loss=loss)], limit)


def downsample(points: list[LossPoint], limit: int = MAX_LOSS_POINTS) -> list[LossPoint]:
    """At most `limit` of the points (at least 2 are kept: the first and the last), in their order."""
    kept = list(points)
    limit = max(limit, 2)
    while len(kept) > limit:
        gaps = [kept[i + 1].step - kept[i - 1].step for i in range(1, len(kept) - 1)]
        del kept[1 + gaps.index(min(gaps))]
    return kept


def _value(loss: str) -> float | None:
    try:
        value = float(loss)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sparkline(losses: list[str]) -> str:
    """One character per loss, from ▁ (the lowest) to █ (the highest); all equal: ▄; nan or inf: ×."""
    values = [_value(loss) for loss in losses]
    finite = [v for v in values if v is not None]
    if not finite:
        return NOT_FINITE * len(values)
    # Halved: the span of two finite floats (-1e308, 1e308) must not overflow to inf.
    low, high = min(finite) / 2, max(finite) / 2
    span = high - low
    top = len(BARS) - 1

    def bar(value: float | None) -> str:
        if value is None:
            return NOT_FINITE
        if span == 0:
            return BARS[top // 2]
        return BARS[min(top, math.floor((value / 2 - low) / span * len(BARS)))]

    return "".join(bar(v) for v in values)
