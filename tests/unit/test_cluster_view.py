"""Live sessions per route from a worker's /cluster-manager listing (pure part)."""

from __future__ import annotations

from balancer.cluster_view import _preferred_first, live_by_route, sessions_limit


def test_live_sessions_are_read_per_route_from_the_listing():
    listing = {
        "cluster": "demo",
        "self": "a",
        "members": [
            {"id": "a", "route": "node1", "live_sessions": 3},
            {"id": "b", "route": "node2", "live_sessions": 0},
        ],
    }
    assert live_by_route(listing) == {"node1": 3, "node2": 0}


def test_malformed_entries_are_skipped_not_trusted():
    listing = {
        "members": [
            {"route": "node1", "live_sessions": "3"},
            {"route": 7, "live_sessions": 1},
            {"route": "node2", "live_sessions": True},
            "junk",
            {"route": "node3", "live_sessions": 2},
        ]
    }
    assert live_by_route(listing) == {"node3": 2}
    assert live_by_route({"members": "nope"}) == {}
    assert live_by_route({}) == {}


def test_the_member_that_answered_last_is_asked_first():
    endpoints = [("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 2)]
    assert _preferred_first(endpoints, ("127.0.0.1", 2)) == [("127.0.0.1", 2), ("127.0.0.1", 1)]
    assert _preferred_first(endpoints, None) == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def test_the_sessions_limit_is_read_from_the_listing_when_it_is_a_number():
    assert sessions_limit({"sessions": 3, "sessions_limit": 100_000}) == 100_000
    assert sessions_limit({"sessions_limit": "100"}) is None
    assert sessions_limit({"sessions_limit": True}) is None
    assert sessions_limit({}) is None
