"""Timestamps as the Kubernetes API writes them: RFC 3339, UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 as the API server writes it (`Z`) or as the Python client re-serializes it (`+00:00`)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Beyond this, 2**n seconds exceeds any limit used; it also keeps 2.0**n from overflowing a float
# (after 1024 failures in a row: some 17 hours of an API away at one try a minute).
MAX_DOUBLINGS = 32


def backoff(failures: int, limit: float) -> float:
    """Seconds to wait after the n-th failure in a row: 2, 4, 8, … seconds, at most `limit`."""
    return min(2.0 ** min(failures, MAX_DOUBLINGS), limit)
