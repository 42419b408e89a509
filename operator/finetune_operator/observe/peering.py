"""Which replica is active, as kopf peering decides it.

kopf pauses its watches in a replica that sees a live peer of a higher (or the same) priority, but
the operator's own background work (the log-reading loop, the TTL and retry timers) is not a kopf
watch. It asks `is_active` (the same rule, over the same peering object) before acting, so a standby
replica reads no log and deletes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from finetune_operator.observe.times import parse_timestamp

# Peering priorities fit in a JSON number without loss; the oldest replica gets the highest one.
PRIORITY_CEILING = 2**53 - 1


def priority_by_age(started_ms: int) -> int:
    """A priority that keeps the longest-running replica active: a restarted replica stands by
    instead of taking over, so a restart causes no second hand-over."""
    return PRIORITY_CEILING - started_ms


def is_active(peers: dict[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule: a replica pauses while any other live peer has a priority >= its own."""
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, dict):
            continue
        lastseen = info.get("lastseen")
        seen = parse_timestamp(lastseen) if isinstance(lastseen, str) else now
        if seen + timedelta(seconds=int(info.get("lifetime", 60))) <= now:
            continue  # dead: its keep-alive expired
        if int(info.get("priority", 0)) >= priority:
            return False
    return True
