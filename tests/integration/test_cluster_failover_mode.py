"""Failover mode with real processes: `--failover GROUP` nodes over loopback multicast. Only
the master serves; the dormant ones say so on /-/ready, refuse requests, and hold replicas;
after kill -9 of the master one of them is promoted and serves the master's sessions."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_cluster_kit import Cluster, Node, cluster, session_cookie, wait_until

__all__ = ["cluster"]

pytestmark = pytest.mark.integration

GROUP = ("--failover", "front")


def ready(node: Node) -> tuple[int, dict]:
    status, _, body = node.get("/-/ready")
    return status, json.loads(body)


def test_only_the_master_serves_and_a_dormant_node_takes_over_its_sessions(cluster: Cluster):
    nodes = cluster.start_many(["node1", "node2", "node3"], args=GROUP, wait_ready=False)
    wait_until(lambda: sum(ready(n)[0] == 200 for n in nodes) == 1, 15, "one master")
    [master] = [n for n in nodes if ready(n)[0] == 200]
    dormant = [n for n in nodes if n is not master]
    for node in dormant:
        status, body = ready(node)
        assert status == 503 and body["waiting_for"] == ["dormant"]
        status, headers, _ = node.get("/app/counter")
        assert status == 503 and headers["Retry-After"] == "1"

    status, headers, body = master.get("/app/counter")
    assert status == 200, body
    cookie = session_cookie(headers)
    for _ in range(2):
        status, _, body = master.get("/app/counter", {"Cookie": cookie})
    visits = json.loads(body)
    wait_until(lambda: all(n.manager()["sessions"] == 1 for n in dormant), 5, "replicas")

    master.kill9()
    took = wait_until(lambda: sum(ready(n)[0] == 200 for n in dormant) == 1, 10, "a promotion")
    print(f"promoted {took:.2f} s after kill -9 of the master")
    [promoted] = [n for n in dormant if ready(n)[0] == 200]
    [still] = [n for n in dormant if n is not promoted]
    assert ready(still)[0] == 503
    status, _, body = promoted.get("/app/counter", {"Cookie": cookie})
    assert status == 200, body
    after = json.loads(body)
    assert after["count"] == visits["count"] + 1  # the master's session, continued
    rows = {s["name"]: s for s in promoted.manager()["singletons"]}
    assert rows["failover.front"]["owner"] == promoted.route
