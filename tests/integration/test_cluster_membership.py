"""Membership with real processes over loopback multicast: join, crash, clean leave, and
who must never join (another cluster's name, the wrong key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cluster_kit import Cluster, cluster, session_cookie, wait_until
from tests.support.procs import free_port

__all__ = ["cluster"]

pytestmark = pytest.mark.integration


def test_join_within_a_second_crash_after_drop_time_and_probe_clean_leave_at_once(
    cluster: Cluster,
):
    a, b = cluster.start_many(["node1", "node2"])
    wait_until(lambda: a.routes() == b.routes() == {"node1", "node2"}, 5, "a and b to meet")

    c = cluster.start("node3", wait_ready=False)  # timed from its node's start
    joined = wait_until(
        lambda: "node3" in a.routes() and "node3" in b.routes(), 5, "node3 in every listing"
    )
    assert joined < 1.0
    wait_until(lambda: c.routes() == {"node1", "node2", "node3"}, 5, "node3 to see everyone")
    listing = a.manager()
    me = next(m for m in listing["members"] if m["state"] == "self")
    assert me["route"] == "node1" and listing["cluster"] == cluster.name
    assert {m["state"] for m in listing["members"]} == {"self", "alive"}

    c.kill9()
    gone = wait_until(
        lambda: "node3" not in a.routes() and "node3" not in b.routes(), 5, "node3 dropped"
    )
    # drop_time 1 s (measured from the last heartbeat, up to 0.1 s before the kill) plus a
    # probe the kernel refuses at once
    assert 0.8 < gone < 1.0 + 0.3 + 0.5
    assert a.counters()["probes_failed"] >= 1

    b.proc.stop()  # SIGTERM: a clean shutdown
    left = wait_until(lambda: "node2" not in a.routes(), 5, "node2 gone after its shutdown")
    assert left < 0.5  # far below drop_time: the shutdown heartbeat removed it


def test_another_cluster_name_on_the_same_group_stays_apart(cluster: Cluster):
    other_config = cluster.config(name=cluster.name + "-other")
    a, b, other = cluster.start_many(
        ["node1", "node2", "node9"], [cluster.default_config, cluster.default_config, other_config]
    )
    for node in (a, other):
        wait_until(
            lambda n=node: n.counters().get("drop_foreign_cluster", 0) >= 5, 5, "foreign beats"
        )
    assert a.routes() == b.routes() == {"node1", "node2"}
    assert other.routes() == {"node9"}


def test_a_node_with_the_wrong_key_never_joins(cluster: Cluster):
    elsewhere = cluster.config(key_dir=cluster.tmp / "elsewhere")
    a, intruder = cluster.start_many(["node1", "node7"], [cluster.default_config, elsewhere])
    assert (cluster.tmp / "elsewhere" / "cluster.key").read_bytes() != (
        cluster.tmp / "cluster.key"
    ).read_bytes()
    for node in (a, intruder):
        wait_until(lambda n=node: n.counters().get("drop_auth", 0) >= 5, 5, "refused heartbeats")
    assert a.routes() == {"node1"} and intruder.routes() == {"node7"}


def test_static_members_find_each_other_without_multicast(cluster: Cluster):
    ports = [free_port() for _ in range(3)]
    statics = [f"127.0.0.1:{p}" for p in ports]

    def config(port: int) -> Path:
        return cluster.config(
            membership={"multicast": False, "static_members": statics},
            receiver={"port": port},
        )

    a, b = cluster.start_many(["node1", "node2"], [config(ports[0]), config(ports[1])])
    wait_until(lambda: a.routes() == b.routes() == {"node1", "node2"}, 5, "static pings")
    status, headers, _ = a.get("/app/counter")
    status, _, body = b.get("/app/counter", {"Cookie": session_cookie(headers)})
    assert status == 200 and b'"count": 2' in body
    assert a.counters().get("heartbeats_out", 0) == 0  # no multicast at all

    c = cluster.start("node3", config(ports[2]))
    wait_until(lambda: c.manager()["sessions"] == 1, 5, "state transfer to node3")
    c.proc.stop()
    left = wait_until(lambda: "node3" not in a.routes(), 5, "node3 gone after its shutdown")
    assert left < 0.5
    b.kill9()
    wait_until(lambda: a.routes() == {"node1"}, 5, "node2 dropped after silence and a probe")
