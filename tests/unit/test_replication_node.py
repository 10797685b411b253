"""The node's wiring in-process, with links faked: readiness holds, acks and suspects, access."""

from __future__ import annotations

import asyncio
import math
import time

from aiohttp import web

from replication.codec import DeltaMsg, MemberInfo, Pull, StateChunk
from replication.config import parse_cluster_config
from replication.membership import ALIVE, SUSPECT
from replication.node import ClusterNode
from worker import setup_sessions
from worker.delta import SessionDelta
from worker.readiness import Readiness, install_ready_endpoint

PEER = MemberInfo("b" * 32, "node2", "127.0.0.1", 4002, time.time() - 10)
RANDOM = "0123456789ABCDEF0123456789ABCDEF"
OTHER = MemberInfo("c" * 32, "node3", "127.0.0.1", 4003, time.time() - 5)


class FakeLink:
    def __init__(self, acks: bool) -> None:
        self.acks, self.sent, self.pulls = acks, [], []

    def send(self, msg: object) -> asyncio.Future[None] | None:
        self.sent.append(msg)
        if not isinstance(msg, DeltaMsg):
            return None
        future = asyncio.get_running_loop().create_future()
        if self.acks:
            future.set_result(None)
        return future

    def pull(self, msg: Pull) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self.pulls.append((msg, queue))
        return queue


def make_node(
    replication: str = "", security: str = ""
) -> tuple[ClusterNode, web.Application, Readiness]:
    config = parse_cluster_config(
        'name = "unit"\n[membership]\nmulticast = false\n'
        f"[security]\ninsecure = true\n{security}\n"
        f"[replication]\nack_timeout = 50\n{replication}\n",
        "/nonexistent/cluster.toml",
    )
    app = web.Application()
    manager = setup_sessions(app, route="node1")
    readiness = Readiness()
    install_ready_endpoint(app, readiness)
    node = ClusterNode(config, manager, readiness)
    node.install(app)
    return node, app, readiness


def with_links(node: ClusterNode, **acks: bool) -> dict[str, FakeLink]:
    links = {
        PEER.id: FakeLink(acks.get("node2", True)),
        OTHER.id: FakeLink(acks.get("node3", True)),
    }
    node.channel.link = lambda member: links[member.id]  # type: ignore[method-assign]
    for member in (PEER, OTHER):
        node.membership.heard(member, time.time())
    return links


async def test_install_wires_sink_observer_and_holds_readiness_for_state_transfer():
    node, _, readiness = make_node()
    manager = node.manager
    assert manager.sink == node.sink and manager.observer is node
    assert node.store.replica_grace == math.inf
    assert readiness.waiting_for == ("state-transfer",)
    assert "/cluster-manager" in manager.internal_paths


async def test_a_sync_holds_readiness_until_its_last_chunk_arrives():
    node, _, readiness = make_node()
    links = with_links(node)
    readiness.release("state-transfer")
    since = node.replicator.order.contact(PEER.id, 5)
    assert since == 1
    node.syncer.start(PEER, since)
    await asyncio.sleep(0)
    assert readiness.waiting_for == ("resync",)
    pull, queue = links[PEER.id].pulls[0]
    assert pull.since is None  # first contact: the full state
    queue.put_nowait(StateChunk(pull.n, False, 5))
    await asyncio.sleep(0)
    assert not readiness.ready
    queue.put_nowait(StateChunk(pull.n, True, 5))
    for _ in range(5):
        await asyncio.sleep(0)
    assert readiness.ready and node.replicator.order.expected(PEER.id) == 6


async def test_a_lost_link_during_a_sync_releases_readiness_and_counts_the_failure():
    node, _, readiness = make_node()
    links = with_links(node)
    readiness.release("state-transfer")
    node.syncer.start(PEER, node.replicator.order.contact(PEER.id, 3))
    await asyncio.sleep(0)
    links[PEER.id].pulls[0][1].put_nowait(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert readiness.ready and node.counters["syncs_failed"] == 1


def created(session_id: str = RANDOM + ".node1") -> SessionDelta:
    return SessionDelta(session_id, time.time(), created=1.0, max_inactive=60.0)


async def test_sync_mode_waits_for_acks_and_a_member_that_misses_one_becomes_a_suspect():
    node, _, _ = make_node()
    links = with_links(node, node3=False)
    delta = created()
    node.store.apply(delta)
    node.committed([delta], "rid-1", web.json_response({"ok": True}))
    started = time.monotonic()
    await node.sink(delta)
    assert time.monotonic() - started >= 0.05  # waited ack_timeout for node3
    assert node.membership.get(OTHER.id).state == SUSPECT
    assert node.membership.get(PEER.id).state == ALIVE
    assert node.counters["acks_missed"] == 1 and node.ledger.get("rid-1", time.time())
    (sent,) = links[PEER.id].sent
    assert isinstance(sent, DeltaMsg) and sent.request_id == "rid-1" and sent.seq == 1

    started = time.monotonic()
    await node.sink(SessionDelta(delta.session_id, time.time(), set_attributes=(("n", "1"),)))
    assert time.monotonic() - started < 0.05  # a suspect is not waited for
    assert len(links[OTHER.id].sent) == 2  # but still sent to


async def test_async_mode_returns_without_waiting():
    node, _, _ = make_node(replication='send_mode = "async"')
    with_links(node, node2=False, node3=False)
    started = time.monotonic()
    await node.sink(created())
    assert time.monotonic() - started < 0.05 and node.counters["acks_missed"] == 0


async def test_cluster_manager_answers_loopback_or_the_token_only(aiohttp_client):
    node, app, _ = make_node(security='manager_token = "s3cret"')
    client = await aiohttp_client(app)
    resp = await client.get("/cluster-manager")
    listing = await resp.json()
    assert resp.status == 200 and listing["members"][0]["state"] == "self"
    assert listing["members"][0]["route"] == "node1" and listing["cluster"] == "unit"
    # sessions held vs max_active_sessions: where this node (and so the cluster) starts refusing
    assert listing["sessions"] == 0 and listing["sessions_limit"] == node.store.max_active_sessions
    proxied = {"X-Forwarded-For": "203.0.113.9"}
    resp = await client.get("/cluster-manager", headers=proxied)
    assert resp.status == 403
    resp = await client.get("/cluster-manager", headers={**proxied, "Authorization": "Bearer no"})
    assert resp.status == 403
    auth = {**proxied, "Authorization": "Bearer s3cret"}
    assert (await client.get("/cluster-manager", headers=auth)).status == 200


def test_an_observers_probe_is_answered_and_adds_nothing():
    from replication.codec import Hello

    node, _, _ = make_node()
    observer = MemberInfo("d" * 32, "balancer", "127.0.0.1", 1, time.time())
    assert node.on_hello(Hello("unit", observer, 0, None, False, False, True), incoming=True)
    assert observer.id not in node.membership and len(node.membership) == 0
    assert node.counters["observer_probes"] == 1
    # an observer never opens a link (deltas would follow): refused
    link = Hello("unit", observer, 0, node.me.id, False, False, True)
    assert not node.on_hello(link, incoming=True)
    assert len(node.membership) == 0


def test_leaving_and_the_http_address_go_into_this_nodes_heartbeats():
    node, _, _ = make_node()
    node.advertise_http("127.0.0.1", 8101, 3)
    assert (node.me.http_host, node.me.http_port, node.me.lbfactor) == ("127.0.0.1", 8101, 3)
    assert not node.me.leaving and not node.make_hello(None, reply=True).member.leaving
    node.announce_leaving()  # no multicast here: nothing is sent, the state is kept
    assert node.me.leaving and node.make_hello(None, reply=True).member.leaving
    assert node.membership.me is node.me


async def test_distributed_mode_wires_the_session_cache_as_loader_and_sink():
    node, _, readiness = make_node('mode = "distributed"\nowners = 2')
    manager = node.manager
    assert node.dist is not None and node.caches is not None
    assert manager.loader is node.dist and manager.observer is node.dist
    assert manager.sink == node.dist.sink and manager.peers is None
    assert "pyjk.sessions" in node.caches.backends
    # until the node heard the members its view may lack a session's owner: 503, not "absent"
    assert "state-transfer" in readiness.waiting_for
    assert await node.dist.load(["0123456789ABCDEF0123456789ABCDEF.node2"], None) == "unknown"
    # a member joining starts no delta sync (there are no deltas): no 503 for a resync
    node._heard(PEER, 7, "", False)
    assert node.counters["syncs_started"] == 0 and "resync" not in readiness.waiting_for
    assert node.dist.routes["node2"] == PEER.id  # its route pins its sessions to it
    await node.stop()


async def test_a_departed_members_per_peer_counters_are_forgotten():
    node, _, _ = make_node()
    node.channel.per_peer["node2"]["frames_in"] += 3
    node.channel.per_peer["node3"]["frames_in"] += 1
    node.channel.link(OTHER)  # node3 is still linked (e.g. restarted under a new id)
    await node.channel.drop_link(PEER.id, PEER.route)
    await node.channel.drop_link("f" * 32, OTHER.route)
    assert set(node.channel.per_peer) == {"node3"}
    await node.channel.close()


async def test_distributed_rotation_keeps_the_new_session_before_it_ends_the_old_one():
    node, _, _ = make_node('mode = "distributed"')
    assert node.dist is not None
    store, now = node.manager.store, time.time()
    view = store.create(now)
    view["a"] = 1
    store.commit(view, now)
    old = store.begin(view.id, now)
    assert old is not None
    new = store.rotate(old, now)
    delta = store.commit(new, now)
    assert delta is not None and delta.replaces == view.id
    node.dist.committed([delta], "login-1", web.Response(text="ok"))
    plan = node.dist._planned.take(delta)
    assert plan is not None
    keys = [key for key, _, _ in plan.writes]
    # the new session first: if its write fails, the old one must still be there
    assert keys == [new.id.split(".")[0], view.id.split(".")[0], "rid/login-1"]
    await node.stop()
