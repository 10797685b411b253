"""The node as the session middleware's SessionPeers (worker/peers.py), links faked: when it holds
requests back, how it asks the members for a session it lacks, and the join ordering that keeps
a joiner's snapshot from missing acknowledged writes."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from replication.codec import DeltaMsg, Hello, MemberInfo, Pull, StateChunk
from replication.config import parse_cluster_config
from replication.membership import ALIVE
from replication.merge import Replica, SessionMeta
from replication.node import RESYNC, STATE_TRANSFER, ClusterNode
from replication.syncing import MAX_LOOKUPS
from tests.support.procs import free_port
from tests.unit.test_replication_node import OTHER, PEER, RANDOM, FakeLink, make_node, with_links
from worker import setup_sessions
from worker.delta import SessionDelta, SessionState
from worker.peers import ABSENT, FOUND, UNKNOWN, Hold
from worker.readiness import Readiness

JOINER = MemberInfo("d" * 32, "node4", "127.0.0.1", 4004, time.time())


def replica(rp: str = RANDOM, route: str = "node2", count: int = 7) -> Replica:
    state = SessionState(f"{rp}.{route}", 1.0, time.time(), 60.0, {"count": str(count)})
    return Replica(state, SessionMeta.fresh(state, (3, PEER.id)))


async def pulls_sent(links: dict[str, FakeLink], count: int) -> None:
    for _ in range(100):
        if sum(len(link.pulls) for link in links.values()) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError("the pulls were not sent")


def answer(link: FakeLink, *sessions: Replica) -> None:
    pull, queue = link.pulls[-1]
    queue.put_nowait(StateChunk(pull.n, True, 9, tuple(sessions)))


async def test_requests_are_held_back_during_state_transfer_and_resync_not_shutdown():
    node, _, readiness = make_node()
    assert node.manager.peers is node
    assert node.holding_back() == Hold(STATE_TRANSFER, own_sessions=False)
    readiness.hold(RESYNC)
    assert node.holding_back() == Hold(STATE_TRANSFER, own_sessions=False)  # the stricter
    readiness.release(STATE_TRANSFER)
    assert node.holding_back() == Hold(RESYNC, own_sessions=True)
    readiness.release(RESYNC)
    readiness.hold("shutting-down")  # draining: what it holds is still complete
    assert node.holding_back() is None


async def test_the_middlewares_refusals_are_listed_as_cluster_counters(aiohttp_client):
    node, app, _ = make_node()
    client = await aiohttp_client(app)
    node.manager.refused.update({"state-transfer": 2, "lookup": 1})
    counters = (await (await client.get("/cluster-manager")).json())["counters"]
    assert counters["requests_refused_state_transfer"] == 2
    assert counters["requests_refused_lookup"] == 1


async def test_a_session_one_member_holds_is_merged_and_found_without_waiting_for_the_rest():
    node, _, _ = make_node()
    links = with_links(node)
    lookup = asyncio.create_task(node.find([RANDOM]))
    await pulls_sent(links, 2)
    assert all(link.pulls[0][0].ids == (RANDOM,) for link in links.values())
    answer(links[PEER.id], replica())  # node3 never answers
    started = time.monotonic()
    assert await lookup == FOUND
    assert time.monotonic() - started < 0.05  # not the 50 ms bound
    held = node.store.get_state(RANDOM)
    assert held is not None and held.attributes["count"] == "7" and held.route == "node2"
    assert node.counters["lookups_found"] == 1


async def test_every_member_answering_without_it_is_absent():
    node, _, _ = make_node()
    links = with_links(node)
    lookup = asyncio.create_task(node.find([RANDOM]))
    await pulls_sent(links, 2)
    for link in links.values():
        answer(link)
    assert await lookup == ABSENT and node.store.get_state(RANDOM) is None


async def test_a_member_silent_past_the_bound_makes_it_unknown():
    node, _, _ = make_node()  # ack_timeout 50 ms: the bound
    links = with_links(node)
    lookup = asyncio.create_task(node.find([RANDOM]))
    await pulls_sent(links, 2)
    answer(links[PEER.id])
    started = time.monotonic()
    assert await lookup == UNKNOWN
    assert 0.03 < time.monotonic() - started < 1.0
    assert node.counters["lookups_unknown"] == 1


async def test_a_member_whose_link_is_lost_cannot_hold_it_for_us():
    node, _, _ = make_node()
    links = with_links(node)
    lookup = asyncio.create_task(node.find([RANDOM]))
    await pulls_sent(links, 2)
    answer(links[PEER.id])
    links[OTHER.id].pulls[0][1].put_nowait(None)  # connection lost (e.g. killed)
    assert await lookup == ABSENT


async def test_invalidated_sessions_and_a_lone_node_answer_absent_without_asking():
    node, _, _ = make_node()
    assert await node.find([RANDOM]) == ABSENT  # no members at all: as standalone
    links = with_links(node)
    node.replicator.merge_chunk(StateChunk(1, True, 0, dead=((RANDOM, (4, PEER.id)),)), 1.0)
    assert await node.find([RANDOM]) == ABSENT
    assert all(link.pulls == [] for link in links.values())


class FakeEndpoint:
    def __init__(self) -> None:
        self.written: list[object] = []
        self.writer = self

    def write(self, msg: object) -> bool:
        self.written.append(msg)
        return True

    async def drain(self) -> None:
        return None


async def commit(node: ClusterNode, delta: SessionDelta) -> None:
    node.store.apply(delta)
    node.committed([delta], None, web.Response())
    await node.sink(delta)


async def test_a_joiner_is_a_live_member_before_its_snapshot_is_cut_so_later_writes_wait_for_it():
    # The survivor's side of a join: the joiner's Hello precedes its Pull on one connection,
    # so every write numbered after the snapshot goes to the joiner and waits for its ack.
    node, _, readiness = make_node()
    readiness.release(STATE_TRANSFER)
    links = with_links(node)
    links[JOINER.id] = FakeLink(acks=False)
    await commit(node, SessionDelta(f"{RANDOM}.node1", time.time(), created=1.0, max_inactive=60.0))
    assert node.on_hello(Hello("unit", JOINER, 0, to=node.me.id), incoming=True)
    assert node.membership.get(JOINER.id).state == ALIVE
    endpoint = FakeEndpoint()
    node.on_message(JOINER, Pull(1), endpoint)  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    (chunk,) = endpoint.written
    assert isinstance(chunk, StateChunk) and chunk.final and chunk.seq == 1
    assert [r.state.random_part for r in chunk.sessions] == [RANDOM]

    started = time.monotonic()
    write = SessionDelta(f"{RANDOM}.node1", time.time(), set_attributes=(("n", "1"),))
    await commit(node, write)
    (sent,) = links[JOINER.id].sent
    assert isinstance(sent, DeltaMsg) and sent.seq == chunk.seq + 1
    assert time.monotonic() - started >= 0.05  # the response waited for the joiner's ack
    assert node.counters["acks_missed"] == 1  # (it never acked: now a suspect)


def real_node(route: str, port: int, ports: list[int]) -> ClusterNode:
    statics = json.dumps([f"127.0.0.1:{p}" for p in ports])
    config = parse_cluster_config(
        f'name = "unit"\n[membership]\nmulticast = false\nfrequency = 50\n'
        f"static_members = {statics}\n[receiver]\nport = {port}\n"
        "[security]\ninsecure = true\n[replication]\nack_timeout = 1000\n",
        "/nonexistent/cluster.toml",
    )
    app = web.Application()
    readiness = Readiness()
    node = ClusterNode(config, setup_sessions(app, route=route), readiness)
    node.install(app)
    return node


async def test_over_real_links_a_member_hands_over_the_session_the_other_lacks():
    ports = [free_port(), free_port()]
    a, b = real_node("node1", ports[0], ports), real_node("node2", ports[1], ports)
    await a.start()
    await b.start()
    try:
        for _ in range(200):  # bounded: 2 s
            if len(a.membership) == len(b.membership) == 1 and b.readiness.ready:
                break
            await asyncio.sleep(0.01)
        assert len(b.membership) == 1 and b.readiness.ready
        # held by node1 only (installed, never replicated): node2 must ask for it
        a.store.install(SessionState(f"{RANDOM}.node1", 1.0, time.time(), 60.0, {"n": "3"}))
        assert b.store.get_state(RANDOM) is None
        assert await b.find([RANDOM]) == FOUND
        assert b.store.get_state(RANDOM).attributes == {"n": "3"}
        assert await b.find(["A" * 32]) == ABSENT  # asked, and nobody has it
        assert b.counters["lookups_found"] == b.counters["lookups_absent"] == 1
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_past_the_cap_of_lookups_in_flight_a_request_is_told_unknown_without_asking():
    node, _, _ = make_node()
    links = with_links(node)
    waiting = [asyncio.create_task(node.find([f"{i:032X}"])) for i in range(MAX_LOOKUPS)]
    await pulls_sent(links, 2 * MAX_LOOKUPS)
    assert await node.find([RANDOM]) == UNKNOWN
    assert sum(len(link.pulls) for link in links.values()) == 2 * MAX_LOOKUPS  # none added
    assert node.counters["lookups_refused"] == 1
    assert set(await asyncio.gather(*waiting)) == {UNKNOWN}  # nobody answered them either


# -- refresh before a takeover -------------------------------------------------------------------
async def test_a_takeover_refresh_merges_the_newer_copy_a_member_answers():
    node, _, _ = make_node()
    links = with_links(node)
    node.store.install(replica(count=5).state)  # held here, routed to node2 (a takeover)
    node.replicator.meta[RANDOM] = replica(count=5).meta
    refresh = asyncio.create_task(node.refresh([RANDOM]))
    await pulls_sent(links, 2)
    newer = replica(count=6)
    newer = Replica(newer.state, SessionMeta.fresh(newer.state, (9, OTHER.id)))
    answer(links[OTHER.id], newer)  # node3 got node2's last write
    answer(links[PEER.id])  # node2 (or what is left of it) has nothing newer
    assert await refresh == FOUND
    assert node.store.get_state(RANDOM).attributes["count"] == "6"
    assert all(link.pulls[0][0].have for link in links.values())  # only newer copies, please
    assert node.counters["refreshes"] == 1


async def test_a_takeover_refresh_with_a_silent_member_is_unknown():
    node, _, _ = make_node()  # ack_timeout 50 ms: the bound
    links = with_links(node)
    node.store.install(replica(count=5).state)
    refresh = asyncio.create_task(node.refresh([RANDOM]))
    await pulls_sent(links, 2)
    answer(links[PEER.id])
    assert await refresh == UNKNOWN
    assert node.counters["refreshes_unanswered"] == 1


async def test_a_takeover_refresh_with_no_live_member_asks_nobody():
    node, _, _ = make_node()
    node.store.install(replica(count=5).state)
    assert await node.refresh([RANDOM]) == FOUND
    assert node.counters["refreshes"] == 0


async def test_a_takeover_refresh_skips_a_member_whose_link_just_failed():
    node, _, _ = make_node()
    links = with_links(node)
    node.store.install(replica(count=5).state)
    node.channel.note_failure(PEER.id)  # its connection was reset: killed, or cut off
    refresh = asyncio.create_task(node.refresh([RANDOM]))
    await pulls_sent(links, 1)
    answer(links[OTHER.id])
    assert await refresh == FOUND
    assert links[PEER.id].pulls == []


async def test_past_the_cap_of_asks_in_flight_a_takeover_refresh_is_unknown_without_asking():
    node, _, _ = make_node()
    links = with_links(node)
    node.store.install(replica(count=5).state)
    waiting = [asyncio.create_task(node.find([f"{i:032X}"])) for i in range(MAX_LOOKUPS)]
    await pulls_sent(links, 2 * MAX_LOOKUPS)
    assert await node.refresh([RANDOM]) == UNKNOWN
    assert sum(len(link.pulls) for link in links.values()) == 2 * MAX_LOOKUPS  # none added
    assert node.counters["refreshes_refused"] == 1
    await asyncio.gather(*waiting)
    assert node.syncer._lookups == 0  # every ask gave its place back


async def test_a_takeover_refresh_of_an_invalidated_id_asks_nobody():
    node, _, _ = make_node()
    links = with_links(node)
    node.replicator.dead[RANDOM] = ((1, PEER.id), time.time())  # a tombstone: gone
    assert await node.refresh([RANDOM]) == FOUND
    assert sum(len(link.pulls) for link in links.values()) == 0
    assert node.counters["refreshes"] == 0
