"""When a finished FineTuneJob's children are cleaned up: a pure decision, as JobSet's TTL controller
makes it ("delete now, or look again at this time"), from the recorded status and the spec alone, so
it survives restarts and needs no timer state to be right."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.times import parse_timestamp


@dataclass(frozen=True)
class Retention:
    """How long a finished run's children stay: after a success, and after a failure (None: kept)."""

    after_success: int | None
    after_failure: int | None


def cleanup_deadline(status: FineTuneJobStatus, retention: Retention) -> datetime | None:
    """When the cleanup is due, counted from the recorded completion; None if it never is (again)."""
    if status.completion_time is None or status.cleanup_time is not None:
        return None
    seconds = {"Succeeded": retention.after_success, "Failed": retention.after_failure}.get(status.phase or "")
    if seconds is None:
        return None
    return saturated_sum(parse_timestamp(status.completion_time), seconds)


LATEST = datetime.max.replace(tzinfo=UTC)


def saturated_sum(moment: datetime, seconds: int) -> datetime:
    """`moment` plus `seconds`, or the latest time there is when the sum lies beyond it: a TTL of a FineTuneJob
    stored before its bound (or a completion time written near year 9999) must mean "never", not raise on
    every pass and keep the final status from being written."""
    if seconds > (LATEST - moment) // timedelta(seconds=1):  # whole seconds: no float rounding
        return LATEST
    return moment + timedelta(seconds=seconds)
