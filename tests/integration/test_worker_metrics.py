"""A worker's /metrics: sessions and replication families appear and move under real traffic,
parsed with prometheus-client's own parser; the page is loopback (or token) only."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cluster_kit import Node, cluster, session_cookie, wait_until

__all__ = ["cluster"]

pytestmark = pytest.mark.integration


def scrape(node: Node, headers: dict[str, str] | None = None) -> dict[tuple, float]:
    status, _, body = node.get("/metrics", headers)
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_worker_metrics_move_with_sessions_and_replication(cluster):
    a, b = cluster.start_many(["node1", "node2"])
    wait_until(lambda: a.routes() == b.routes() == {"node1", "node2"}, 10, "two members")
    before = scrape(b)
    assert ("process_cpu_seconds_total", ()) in before
    assert before[("pyjk_replication_state_transfer_seconds", ())] >= 0

    _, headers, _ = a.get("/app/counter")
    cookie = session_cookie(headers)
    for _ in range(4):
        assert a.get("/app/counter", {"Cookie": cookie})[0] == 200
    _, headers, body = b.get("/app/counter", {"Cookie": cookie})  # a takeover on b
    assert json.loads(body)["count"] == 6
    after_a, after_b = scrape(a), scrape(b)

    assert after_a[("pyjk_worker_sessions_created_total", ())] == 1
    assert after_b[("pyjk_worker_session_takeovers_total", ())] == 1
    assert after_b[("pyjk_worker_sessions", (("kind", "own"),))] == 1
    assert after_a[("pyjk_worker_sessions", (("kind", "replica"),))] == 1
    assert after_a[("pyjk_worker_sessions_max", ())] > 0
    sent = after_a[("pyjk_replication_frames_total", (("direction", "out"), ("peer", "node2")))]
    got = after_b[("pyjk_replication_frames_total", (("direction", "in"), ("peer", "node1")))]
    assert sent >= 5 and got >= 5
    assert after_a[("pyjk_replication_bytes_total", (("direction", "out"), ("peer", "node2")))]
    assert after_a[("pyjk_replication_members", (("state", "alive"),))] == 1
    assert ("pyjk_replication_acks_missed_total", ()) in after_a
    assert ("pyjk_replication_syncs_total", (("result", "done"),)) in after_a
    assert after_a[("pyjk_replication_ready", ())] == 1
    key = ("pyjk_replication_events_total", (("event", "deltas_sent"),))
    assert after_a[key] >= 5


def test_replays_are_counted_and_the_page_is_loopback_only(cluster):
    a, b = cluster.start_many(["node1", "node2"])
    wait_until(lambda: a.routes() == b.routes() == {"node1", "node2"}, 10, "two members")
    _, headers, _ = a.get("/app/counter")
    cookie = session_cookie(headers)
    retry = {"Cookie": cookie, "X-Pyjk-Request-Id": "metrics-retry-1"}
    assert a.get("/app/counter", retry)[0] == 200
    assert b.get("/app/counter", retry)[0] == 200  # answered from the record
    assert scrape(b)[("pyjk_replication_replays_answered_total", ())] == 1
    # through a proxy (the balancer adds X-Forwarded-For) the page is refused
    status, _, _ = b.get("/metrics", {"X-Forwarded-For": "203.0.113.9"})
    assert status == 403
