"""Whose an object is: its controller owner reference, the only claim the operator trusts."""

from __future__ import annotations

from typing import Any


def controller_of(obj: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(kind, name, uid) of the object's controller owner; Nones if it has none."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("kind"), ref.get("name"), ref.get("uid")
    return None, None, None


def owns(owner: dict[str, Any], child: dict[str, Any]) -> bool:
    """The child names this owner (by uid) as its controller."""
    uid: str = owner["metadata"]["uid"]
    return controller_of(child)[2] == uid
