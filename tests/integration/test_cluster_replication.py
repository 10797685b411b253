"""Replication between real worker processes: read-your-write, exactly-once retries, state
transfer on restart, and convergence after a node was cut off."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_cluster_kit import Cluster, Node, cluster, session_cookie, wait_until

__all__ = ["cluster"]

pytestmark = pytest.mark.integration


def counter(node: Node, cookie: str | None = None, request_id: str | None = None) -> tuple:
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if request_id:
        headers["X-Pyjk-Request-Id"] = request_id
    status, resp_headers, body = node.get("/app/counter", headers)
    assert status == 200, body
    return json.loads(body), resp_headers


def three(cluster: Cluster) -> list[Node]:
    nodes = cluster.start_many(["node1", "node2", "node3"])
    routes = {"node1", "node2", "node3"}
    wait_until(lambda: all(n.routes() == routes for n in nodes), 5, "three members")
    return nodes


def test_right_after_a_response_from_one_node_every_other_node_has_the_write(cluster):
    a, b, c = three(cluster)
    body, headers = counter(a)
    cookie = session_cookie(headers)
    for expected in range(2, 12):  # each read on the next node, no wait in between
        node = (b, c, a)[expected % 3]
        body, headers = counter(node, cookie)
        assert body["count"] == expected and body["node"] == node.route
        cookie = session_cookie(headers) if "Set-Cookie" in headers else cookie
    assert a.counters()["deltas_sent"] >= 4 and b.counters()["deltas_applied"] >= 7


def test_a_retried_request_id_is_answered_from_the_record_on_another_node(cluster):
    a, b, _ = three(cluster)
    _, headers = counter(a)
    cookie = session_cookie(headers)
    done, _ = counter(a, cookie, request_id="retry-me-1")
    assert done["count"] == 2
    replayed, replay_headers = counter(b, cookie, request_id="retry-me-1")
    assert replayed == done and replay_headers["X-Pyjk-Replayed"] == "1"
    after, _ = counter(b, cookie)  # the retry did not count a third time
    assert after["count"] == 3
    assert b.counters()["replays_answered"] == 1


def test_a_restarted_node_holds_every_session_before_it_reports_ready(cluster):
    a, b, c = three(cluster)
    cookies = {}
    for i in range(40):
        body, headers = counter((a, b)[i % 2])
        cookies[body["session"]] = session_cookie(headers)
    c.proc.stop()  # a clean stop: the others forget it at once (kill -9: see membership tests)
    wait_until(lambda: "node3" not in a.routes(), 5, "node3 gone")
    c2 = cluster.start("node3", wait_ready=False)
    wait_until(c2.ready, 15, "restarted node3 ready")
    listing = c2.manager()
    assert listing["sessions"] == 40 and listing["waiting_for"] == []
    assert "state transfer complete" in c2.log()
    for session, cookie in cookies.items():
        body, _ = counter(c2, cookie)
        assert body["count"] == 2 and body["session"].split(".")[0] == session.split(".")[0]


def test_a_node_cut_off_for_a_while_converges_after_it_is_reconnected(cluster):
    a, b, c = three(cluster)
    body, headers = counter(a)
    cookie = session_cookie(headers)
    c.cut(True)
    wait_until(lambda: "node3" not in a.routes() and c.routes() == {"node3"}, 10, "partition")
    for _ in range(5):
        body, headers = counter(a, cookie)
    new_body, new_headers = counter(b)  # a session c has never seen
    assert c.get("/app/counter", {"Cookie": cookie})[0] == 200  # c still serves, stale
    c.cut(False)
    wait_until(lambda: c.routes() == {"node1", "node2", "node3"}, 10, "c to rejoin")
    wait_until(lambda: c.counters().get("syncs_done", 0) >= 1 and c.ready(), 15, "c to resync")
    wait_until(lambda: len({n.manager()["digest"] for n in (a, b, c)}) == 1, 10, "digests to agree")
    body, _ = counter(c, cookie)
    # c's lone write (count 2) lost to a's newer ones (count 6): this is the 7th
    assert body["count"] == 7
    again, _ = counter(c, session_cookie(new_headers))
    assert again["count"] == new_body["count"] + 1
    counters = c.counters()
    assert counters["syncs_done"] >= 1 and counters["drop_fault_in"] > 0
