"""The one walk over a pod's container statuses: which states a container has ended in."""

from __future__ import annotations

from typing import Any


def ends(pod: dict[str, Any] | None, name: str, kind: str = "containerStatuses") -> list[dict[str, Any]]:
    """The `terminated` records of the named container (in `kind`: containerStatuses or
    initContainerStatuses), its current state's first and then its last state's (a container
    restarted in place keeps its previous end there); empty if it has not ended."""
    for status in ((pod or {}).get("status") or {}).get(kind) or []:
        if status.get("name") == name:
            states = (status.get("state") or {}, status.get("lastState") or {})
            return [state["terminated"] for state in states if state.get("terminated")]
    return []
