"""Dynamic lbs (worker.<lb>.cluster) with real processes and real loopback multicast: workers
join the balancer by their heartbeats once ready, leave it when they stop, and nobody else can
make them join or leave."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from replication import codec
from replication.codec import Heartbeat, MemberInfo
from replication.keyfile import parse_key
from replication.seal import Kind, Sealer
from tests.integration.conftest import Stack, http_get, http_json
from tests.integration.test_cluster_kit import Cluster, multicast_socket
from tests.support.procs import free_port, until, wait_for

pytestmark = pytest.mark.integration
GROUP = "228.0.0.4"
HEADER_SENDER = slice(7, 23)  # the sender id in a sealed envelope's header (seal.py)
MOUNTS = "/app|/*=lb\n/jkmanager|/*=jkstatus\n/metrics=jkstatus\n"


def dynamic_workers(cluster_file: Path, extra: str = "") -> str:
    return (
        "worker.list=lb,jkstatus\n"
        "worker.maintain=1\n"
        "worker.lb.type=lb\n"
        f"worker.lb.cluster={cluster_file}\n"
        "worker.lb.cluster_template=worker.template\n"
        "worker.lb.recover_time=1\n"
        "worker.template.type=http\n"
        "worker.template.socket_connect_timeout=1000\n"
        "worker.template.fail_on_status=-503\n"
        "worker.jkstatus.type=status\n" + extra
    )


def start(stack: Stack, extra: str = "") -> Cluster:
    cluster = Cluster(stack.group, stack.tmp)
    # one process: its log lines are counted (with --processes N the supervisor hears the cluster)
    stack.start_balancer(
        dynamic_workers(cluster.default_config, extra), MOUNTS, args=("--processes", "1")
    )
    wait_for(lambda: "listens to cluster" in stack.balancer.output(), 10, what="the listener")
    return cluster


def members(stack: Stack) -> dict[str, dict]:
    doc = http_json(f"{stack.url}/jkmanager?mime=json")
    (lb,) = [w for w in doc["balancers"] if w["name"] == "lb"]
    return {m["name"]: m for m in lb["members"]}


def has_members(stack: Stack, names: set[str]) -> bool:
    return set(members(stack)) == names


def counter(stack: Stack, cookie: str = "") -> tuple[int, dict, str]:
    status, headers, body = http_get(
        f"{stack.url}/app/counter", {"Cookie": cookie} if cookie else {}
    )
    set_cookie = (headers.get("Set-Cookie") or "").split(";")[0]
    return status, json.loads(body) if status == 200 else {}, set_cookie or cookie


def test_a_dynamic_lb_answers_503_until_a_worker_is_ready_then_routes_to_it(stack: Stack):
    cluster = start(stack)
    assert http_get(f"{stack.url}/app/counter")[0] == 503  # no member yet
    before = time.time()
    node = cluster.start("node4")
    wait_for(lambda: has_members(stack, {"node4"}), 10, what="node4 to join the lb")
    status, answer, _ = counter(stack)
    assert status == 200 and answer["node"] == "node4"
    m = members(stack)["node4"]
    assert (m["origin"], m["port"], m["route"]) == ("cluster", node.port, "node4")
    assert before - 1 <= m["joined_at"] <= time.time() + 1
    metrics = http_get(f"{stack.url}/metrics")[2].decode()
    assert 'member="node4"' in metrics and 'origin="cluster"' in metrics
    assert 'pyjk_member_joined_timestamp_seconds{member="node4",worker="lb"}' in metrics
    assert "origin=cluster" in http_get(f"{stack.url}/jkmanager?mime=txt")[2].decode()
    assert 'origin="cluster"' in http_get(f"{stack.url}/jkmanager?mime=xml")[2].decode()
    assert ".origin=cluster" in http_get(f"{stack.url}/jkmanager?mime=prop")[2].decode()
    html = http_get(f"{stack.url}/jkmanager")[2].decode()
    assert re.search(r"<td>cluster \d\d:\d\d:\d\d UTC</td>", html), html[-3000:]
    assert "lb=lb member=node4 state=JOINED reason=ready" in stack.balancer.output()


def test_workers_that_join_get_new_sessions(stack: Stack):
    cluster = start(stack)
    cluster.start("node1")
    wait_for(lambda: has_members(stack, {"node1"}), 10, what="node1 to join")
    cluster.start_many(["node2", "node3"])
    wait_for(lambda: has_members(stack, {"node1", "node2", "node3"}), 10, what="all to join")
    served = [counter(stack)[1]["node"] for _ in range(30)]  # no cookie: new sessions
    assert set(served) == {"node1", "node2", "node3"}
    assert min(served.count(n) for n in ("node1", "node2", "node3")) >= 5


async def test_a_graceful_stop_under_traffic_fails_no_request_and_sessions_continue(
    stack: Stack,
):
    cluster = start(stack)
    cluster.start_many(["node1", "node2"])
    port = free_port()  # node3 drains for 2 s after SIGTERM: time to see what it is given
    node3 = stack.group.python(
        "-m", "worker", "--route", "node3", "--listen", f"127.0.0.1:{port}",
        "--cluster", str(cluster.default_config), "--drain", "2", name="node3",
    )  # fmt: skip
    await until(lambda: has_members(stack, {"node1", "node2", "node3"}), 20, what="three")
    stop = asyncio.Event()
    errors: list[str] = []
    last_node: dict[int, str] = {}
    answered = [0]

    async def user(i: int) -> None:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=15)
        ) as session:
            expected, deadline = 0, time.monotonic() + 40
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    async with session.get(f"{stack.url}/app/counter") as resp:
                        if resp.status != 200:
                            errors.append(f"user {i}: status {resp.status}")
                            continue
                        answer = await resp.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"user {i}: {exc!r}")
                    continue
                answered[0] += 1
                expected += 1
                if answer["count"] != expected:
                    errors.append(f"user {i}: count {answer['count']} != {expected}")
                    expected = answer["count"]
                last_node[i] = answer["node"]
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(user(i)) for i in range(9)]
    await until(lambda: answered[0] >= 150 and "node3" in last_node.values(), 20, what="load")
    on_node3 = {i for i, n in last_node.items() if n == "node3"}
    node3.signal(signal.SIGTERM)
    await until(lambda: members(stack)["node3"]["activation"] == "DIS", 5, what="node3 disabled")
    # while it drains: sticky requests still reach node3, new sessions never do
    fresh = [await asyncio.to_thread(counter, stack) for _ in range(10)]
    assert "node3" not in {answer["node"] for _, answer, _ in fresh}
    await until(lambda: not node3.alive(), 20, what="node3 to exit")
    await until(lambda: has_members(stack, {"node1", "node2"}), 10, what="node3 removed")
    moved = answered[0]
    await until(lambda: answered[0] >= moved + 100, 20, what="load after the stop")
    stop.set()
    await asyncio.gather(*tasks)
    assert errors == []
    assert on_node3 and all(last_node[i] in {"node1", "node2"} for i in on_node3)
    log = stack.balancer.output()
    assert "lb=lb member=node3 state=DIS reason=leaving" in log
    assert "lb=lb member=node3 state=REMOVED reason=shutdown" in log


def test_a_killed_member_is_failed_over_then_removed_and_may_come_back(stack: Stack):
    cluster = start(stack)
    _, b = cluster.start_many(["node1", "node2"])
    wait_for(lambda: has_members(stack, {"node1", "node2"}), 10, what="both to join")
    sessions = {}
    while len(sessions) < 2:  # one session on each node
        _, answer, cookie = counter(stack)
        sessions.setdefault(answer["node"], cookie)
    counter(stack, sessions["node2"])  # count 2 on node2, replicated to node1
    b.kill9()
    status, answer, _ = counter(stack, sessions["node2"])
    assert status == 200 and (answer["node"], answer["count"]) == ("node1", 3)
    wait_for(lambda: has_members(stack, {"node1"}), 10, what="node2 dropped")
    assert "lb=lb member=node2 state=REMOVED reason=dropped" in stack.balancer.output()
    assert 'member="node2"' not in http_get(f"{stack.url}/metrics")[2].decode()  # series gone
    cluster.start("node2")  # the same route again: the same member again
    wait_for(lambda: has_members(stack, {"node1", "node2"}), 10, what="node2 back")


def test_forged_replayed_and_foreign_heartbeats_add_and_remove_nothing(stack: Stack):
    cluster = start(stack)
    node = cluster.start("node1")
    wait_for(lambda: has_members(stack, {"node1"}), 10, what="node1 to join")
    key = parse_key((stack.tmp / "cluster.key").read_text(), stack.tmp / "cluster.key")
    http_only = stack.start_worker("mallory")  # answers /-/ready 200: would be admitted
    sock = multicast_socket(GROUP, cluster.mport)

    def heartbeat(route: str, host: str, *, seal_key: bytes | None, shutdown: bool = False):
        sender = os.urandom(16)
        info = MemberInfo(sender.hex(), route, "127.0.0.1", 9, time.time(), host,
                          http_only.port, 1)  # fmt: skip
        hb = codec.encode(Heartbeat(cluster.name, info, 0, "0" * 16, shutdown))
        return Sealer(seal_key, sender, 1, Kind.HEARTBEAT).seal(hb, time.time())

    try:
        sock.sendto(heartbeat("mallory", "127.0.0.1", seal_key=os.urandom(32)),
                    (GROUP, cluster.mport))  # fmt: skip
        sock.sendto(heartbeat("mallory", "127.0.0.1", seal_key=None), (GROUP, cluster.mport))
        sock.sendto(heartbeat("mallory", "10.1.2.3", seal_key=key), (GROUP, cluster.mport))
        sock.sendto(heartbeat("node1", "127.0.0.1", seal_key=key), (GROUP, cluster.mport))
        node_id = bytes.fromhex(node.manager()["self"])
        for _ in range(200):  # capture one of node1's real heartbeats off the group
            data = sock.recv(65536)
            if data[HEADER_SENDER] == node_id:
                break
        else:
            raise AssertionError("no heartbeat of node1 seen on the group")
        sock.sendto(data, (GROUP, cluster.mport))  # and play it again
        log = stack.balancer.output
        wait_for(lambda: "heartbeat dropped reason=auth count=1" in log(), 5, what="forgery")
        wait_for(lambda: "heartbeat dropped reason=mode count=1" in log(), 5, what="unsealed")
        wait_for(lambda: "heartbeat dropped reason=replay count=1" in log(), 5, what="replay")
        wait_for(lambda: "member=mallory state=REFUSED reason=address-not-allowed" in log(), 5,
                 what="outside the allow-list")  # fmt: skip
        wait_for(lambda: "member=node1 state=REFUSED reason=route-in-use" in log(), 5,
                 what="a second node1")  # fmt: skip
        # a forged shutdown for node1 (right route, wrong key) removes nothing either
        forged = Heartbeat(cluster.name, MemberInfo(node_id.hex(), "node1", "127.0.0.1", 9,
                           time.time()), 0, "0" * 16, True)  # fmt: skip
        sock.sendto(Sealer(os.urandom(32), node_id, 1, Kind.HEARTBEAT).seal(
            codec.encode(forged), time.time()), (GROUP, cluster.mport))  # fmt: skip
        # datagrams are handled in order: once a marker sent after it is logged, so was it
        sock.sendto(heartbeat("marker", "10.9.9.9", seal_key=key), (GROUP, cluster.mport))
        wait_for(lambda: "member=marker state=REFUSED" in log(), 5, what="the marker")
    finally:
        sock.close()
    assert has_members(stack, {"node1"})
    assert counter(stack)[1]["node"] == "node1"


def test_a_reload_keeps_the_dynamic_members_with_their_state(stack: Stack):
    cluster = start(stack)
    cluster.start("node1")
    wait_for(lambda: has_members(stack, {"node1"}), 10, what="node1 to join")
    for _ in range(3):
        assert counter(stack)[0] == 200
    before = members(stack)["node1"]
    assert stack.workers_file is not None and stack.balancer is not None
    stack.workers_file.write_text(dynamic_workers(cluster.default_config, "worker.lb.retries=3\n"))
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded (SIGHUP)" in stack.balancer.output(), 10, what="the reload")
    after = members(stack)["node1"]
    assert after["elected"] == before["elected"] == 3
    assert (after["joined_at"], after["origin"]) == (before["joined_at"], "cluster")
    assert counter(stack)[0] == 200
    assert stack.balancer.output().count("listens to cluster") == 1  # the listener was kept


def test_without_multicast_the_balancer_asks_the_static_members_and_joins_none_of_them(
    stack: Stack,
):
    cluster = Cluster(stack.group, stack.tmp)
    ports = [free_port(), free_port()]
    static = [f"127.0.0.1:{p}" for p in ports]
    configs = [
        cluster.config(
            membership={"multicast": False, "static_members": static}, receiver={"port": p}
        )
        for p in ports
    ]
    stack.start_balancer(dynamic_workers(configs[0]), MOUNTS, args=("--processes", "1"))
    a, b = cluster.start_many(["node1", "node2"], configs)
    wait_for(lambda: has_members(stack, {"node1", "node2"}), 10, what="both to join")
    assert f"static={static[0]} static={static[1]}" in stack.balancer.output()
    for node in (a, b):  # the balancer asked, and is no member of theirs
        assert node.routes() == {"node1", "node2"}
        assert node.counters().get("observer_probes", 0) > 0
    assert counter(stack)[0] == 200
    b.proc.signal(signal.SIGTERM)
    wait_for(lambda: has_members(stack, {"node1"}), 10, what="node2 to leave")
