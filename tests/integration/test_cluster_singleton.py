"""Cluster singletons with real processes over loopback multicast: the Immutant counter demo
(worker.examples.singleton_counter) on three nodes through a crash (kill -9), a graceful stop
(SIGTERM) and a restart — one ticking owner at a time, epochs that only grow, a count that
never resets nor double-steps — and a forged election heartbeat that changes nothing."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from replication import codec
from replication.codec import Heartbeat, MemberInfo
from replication.election import Advert
from replication.seal import Kind, Sealer
from tests.integration.test_cluster_kit import Cluster, Node, cluster, multicast_socket, wait_until
from tests.support.procs import free_port

__all__ = ["cluster"]

pytestmark = pytest.mark.integration

APP = ("--app", "worker.examples.singleton_counter:make_app")
DROP = 1.0  # the kit's drop_time (FAST timings)


def counter(node: Node) -> dict[str, Any]:
    status, _, body = node.get("/counter")
    assert status == 200, body
    return json.loads(body)


def owner_seen_by(node: Node) -> tuple[str | None, int]:
    [row] = [s for s in node.manager()["singletons"] if s["name"] == "counter"]
    return row["owner"], row["epoch"]


def read_ticks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def forged_claim(cluster: Cluster, epoch: int) -> None:
    """A heartbeat claiming the counter, sealed with a key that is not the cluster's."""
    me = MemberInfo(secrets.token_hex(16), "node9", "127.0.0.1", 9, time.time())
    advert = Advert(frozenset({"counter"}), {"counter": epoch}, {"counter": epoch})
    hb = Heartbeat(cluster.name, me, 0, "0" * 16, False, advert)
    sealer = Sealer(os.urandom(32), bytes.fromhex(me.id), int(me.start * 1000), Kind.HEARTBEAT)
    sock = multicast_socket("228.0.0.4", cluster.mport)
    try:
        for _ in range(5):
            sock.sendto(sealer.seal(codec.encode(hb), time.time()), ("228.0.0.4", cluster.mport))
    finally:
        sock.close()


def test_counter_singleton_survives_crash_stop_and_restart_without_overlap(
    cluster: Cluster, tmp_path: Path
):
    ticks = tmp_path / "ticks.jsonl"
    env = {"SINGLETON_COUNTER_TICKS": str(ticks)}
    nodes = {n.route: n for n in cluster.start_many(["node1", "node2", "node3"], args=APP, env=env)}
    wait_until(lambda: all(counter(n)["count"] >= 3 for n in nodes.values()), 15, "counting")
    first_owner, first_epoch = owner_seen_by(nodes["node1"])
    assert {owner_seen_by(n) for n in nodes.values()} == {(first_owner, first_epoch)}
    reply = counter(nodes["node2"])
    assert reply["owner"] == first_owner and reply["epoch"] == first_epoch
    assert reply["node"] == "node2"

    # a forged election heartbeat: dropped (counted), nobody changes its mind
    before = nodes["node1"].counters().get("drop_auth", 0)
    forged_claim(cluster, 999)
    wait_until(lambda: nodes["node1"].counters().get("drop_auth", 0) > before, 5, "forgery dropped")
    assert {owner_seen_by(n) for n in nodes.values()} == {(first_owner, first_epoch)}

    # kill -9 of the owner: another member continues the count after the drop time
    victim = nodes.pop(first_owner)
    victim.kill9()
    killed = time.monotonic()
    survivors = list(nodes.values())
    wait_until(lambda: owner_seen_by(survivors[0])[0] not in (None, first_owner), 10, "failover")
    failover = time.monotonic() - killed
    second_owner, second_epoch = owner_seen_by(survivors[0])
    print(f"failover after kill -9: {failover:.2f} s (drop_time {DROP} s)")
    assert second_epoch > first_epoch
    assert failover < DROP + 1.0

    # SIGTERM of the new owner: handed over once its stop finished, within a second
    leaving = nodes.pop(second_owner)
    [third] = nodes.values()
    stopped = time.monotonic()
    leaving.proc.signal(15)
    wait_until(lambda: owner_seen_by(third)[0] == third.route, 5, "handover")
    handover = time.monotonic() - stopped
    print(f"handover after SIGTERM: {handover:.2f} s")
    assert handover < 1.0
    leaving.proc.wait(10)

    # a restart of the first node: it rejoins (and may win the name back by handover)
    back = cluster.start(first_owner, args=APP, env=env)
    wait_until(lambda: counter(back)["count"] > counter(third)["count"] - 2, 10, "rejoined")
    seen = len(read_ticks(ticks))
    wait_until(lambda: len(read_ticks(ticks)) >= seen + 4, 10, "ticks after the restart")

    records = read_ticks(ticks)
    runs: list[tuple[str, int]] = []
    for r in records:  # the file is appended in time order
        if not runs or runs[-1] != (r["node"], r["epoch"]):
            runs.append((r["node"], r["epoch"]))
    print("owners in order:", runs)
    assert len(runs) == len(set(runs)), "an owner ticked again after another one did"
    epochs = [e for _, e in runs]
    assert epochs == sorted(set(epochs)), "epochs must only grow"
    times = [r["t"] for r in records]
    assert times == sorted(times)
    counts = [r["count"] for r in records]
    steps = [b - a for a, b in itertools.pairwise(counts)]
    assert all(s >= 1 for s in steps), f"a reset or a double step: {counts}"
    # a step of 2 only where a crash lost the log line of a tick that did replicate
    assert sum(s != 1 for s in steps) <= 1 and max(steps) <= 2, counts


def test_a_cut_off_owner_stops_ticking_before_the_others_start(cluster: Cluster, tmp_path: Path):
    ticks = tmp_path / "ticks.jsonl"
    env = {"SINGLETON_COUNTER_TICKS": str(ticks)}
    nodes = {n.route: n for n in cluster.start_many(["node1", "node2", "node3"], args=APP, env=env)}
    wait_until(lambda: len(read_ticks(ticks)) >= 2, 15, "counting")
    owner, epoch = owner_seen_by(nodes["node1"])
    cut = nodes.pop(owner)
    cut.cut(True)  # a partition: the owner hears nobody and nobody hears it
    others = list(nodes.values())
    wait_until(lambda: owner_seen_by(others[0])[0] not in (None, owner), 10, "the majority")
    wait_until(lambda: owner_seen_by(cut)[0] != owner, 5, "the cut-off owner to let go")
    assert "reason=lost-quorum" in cut.log()
    assert cut.counters()["singleton_stops_lost_quorum"] == 1
    cut.cut(False)
    wait_until(lambda: len({owner_seen_by(n) for n in (cut, *others)}) == 1, 10, "one view")
    wait_until(lambda: len(read_ticks(ticks)) >= 8, 15, "ticks after the heal")

    records = read_ticks(ticks)
    first_other = next(r["t"] for r in records if r["node"] != owner)
    last_cut = max(r["t"] for r in records if r["node"] == owner and r["epoch"] == epoch)
    print(f"cut-off owner's last tick {first_other - last_cut:.2f} s before the next owner's first")
    assert last_cut < first_other
    epochs = [r["epoch"] for r in records]
    assert epochs == sorted(epochs)


def test_static_members_elect_one_owner_without_multicast(cluster: Cluster, tmp_path: Path):
    ports = [free_port() for _ in range(3)]
    statics = [f"127.0.0.1:{p}" for p in ports]
    configs = [
        cluster.config(membership={"multicast": False, "static_members": statics},
                       receiver={"port": p})
        for p in ports
    ]  # fmt: skip
    ticks = tmp_path / "ticks.jsonl"
    env = {"SINGLETON_COUNTER_TICKS": str(ticks)}
    nodes = cluster.start_many(["node1", "node2", "node3"], configs, args=APP, env=env)
    wait_until(lambda: len(read_ticks(ticks)) >= 3, 15, "counting")
    assert len({owner_seen_by(n) for n in nodes}) == 1
    owner, epoch = owner_seen_by(nodes[0])
    [victim] = [n for n in nodes if n.route == owner]
    victim.kill9()
    rest = [n for n in nodes if n is not victim]
    wait_until(lambda: owner_seen_by(rest[0])[1] > epoch, 10, "a failover over static pings")
    wait_until(lambda: read_ticks(ticks)[-1]["node"] != owner, 10, "ticks from the new owner")
    nodes_of = [r["node"] for r in read_ticks(ticks)]
    switch = nodes_of.index(next(n for n in nodes_of if n != owner))
    assert set(nodes_of[:switch]) == {owner} and owner not in nodes_of[switch:]
