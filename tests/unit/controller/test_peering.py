"""Which replica is active: the same rule kopf applies to its peering object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finetune_operator.observe.peering import is_active, priority_by_age

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def peer(priority: int, seen_seconds_ago: float = 1, lifetime: int = 30) -> dict[str, object]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - timedelta(seconds=seen_seconds_ago)).isoformat(),
    }


def test_alone_is_active() -> None:
    assert is_active({}, "me", 5, NOW) is True
    assert is_active({"me": peer(5)}, "me", 5, NOW) is True


def test_a_live_peer_of_higher_priority_makes_this_one_stand_by() -> None:
    assert is_active({"me": peer(5), "other": peer(6)}, "me", 5, NOW) is False


def test_a_live_peer_of_the_same_priority_pauses_both_as_kopf_does() -> None:
    assert is_active({"me": peer(5), "other": peer(5)}, "me", 5, NOW) is False


def test_a_lower_priority_peer_does_not_matter() -> None:
    assert is_active({"me": peer(5), "other": peer(4)}, "me", 5, NOW) is True


def test_a_peer_whose_keepalive_expired_is_dead() -> None:
    assert is_active({"other": peer(9, seen_seconds_ago=30, lifetime=30)}, "me", 5, NOW) is True
    assert is_active({"other": peer(9, seen_seconds_ago=29, lifetime=30)}, "me", 5, NOW) is False


def test_kopf_timestamps_with_offset_and_without_lastseen() -> None:
    # kopf writes isoformat() with +00:00; a peer without lastseen counts as seen now (kopf's default).
    assert is_active({"other": {"priority": 9, "lifetime": 60}}, "me", 5, NOW) is False
    assert is_active({"other": {"priority": 9, "lifetime": 60, "lastseen": "2026-11-28T11:58:59+00:00"}}, "me", 5, NOW)


def test_the_older_replica_has_the_higher_priority() -> None:
    older, newer = priority_by_age(1_000), priority_by_age(2_000)
    assert older > newer
    assert older == 2**53 - 1 - 1_000
