"""A JSON merge patch (RFC 7386) from one document to another, as the status subresource applies it.

A merge patch keeps every key it does not mention, so dropping a field means sending null for it:
without that, a field the operator stops writing (cleanupAfter after the cleanup) would stay forever.
"""

from __future__ import annotations

from typing import Any


def merge_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The smallest patch turning `before` into `after` (lists are replaced whole, as RFC 7386 does)."""
    patch: dict[str, Any] = {key: None for key in before.keys() - after.keys()}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in before or old != value:
            patch[key] = value
    return patch
