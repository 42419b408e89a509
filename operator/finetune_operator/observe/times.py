"""Timestamps as the Kubernetes API writes them: RFC 3339, UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 as the API server writes it (`Z`) or as the Python client re-serializes it (`+00:00`)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
