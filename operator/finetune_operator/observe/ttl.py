"""When a finished FineTuneJob's children are cleaned up: a pure decision, as JobSet's TTL controller
makes it ("delete now, or look again at this time"), from the recorded status and the spec alone, so
it survives restarts and needs no timer state to be right."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
    return parse_timestamp(status.completion_time) + timedelta(seconds=seconds)
