"""Exactly once across snapshots: a member that holds a write holds its recorded response too.

The failure this pins (kill -9 under load, tests/integration/test_balancer_cluster.py): node3
ran request R, its delta (with R's record) reached node1 but not node2, and node3 died before
answering. node2 then merged the session from node1 by anti-entropy: it held R's write without
R's record, and the balancer's retry of R, sent to node2, ran R a second time. So every answer
that carries a session carries the records of its writes the asker may lack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from replication.cache import CacheUnavailable
from replication.cache_codec import CacheReq
from replication.codec import DeltaMsg, Pull, StateChunk
from replication.config import parse_cluster_config
from replication.ledger import Ledger, RecordedResponse
from replication.node import ClusterNode
from replication.replicator import Answer, Replicator
from replication.syncing import split
from tests.support.procs import free_port
from tests.unit.test_replication_replicator import T0, Node, a_b, pull, sync
from worker import get_session, setup_sessions
from worker.caches import cluster_cache
from worker.readiness import Readiness


def response(count: int) -> RecordedResponse:
    return RecordedResponse(
        200, (("Content-Type", "application/json"),), b'{"count":%d}' % count, T0
    )


def count_up(node: Node, session_id: str, request_id: str, now: float = T0) -> DeltaMsg:
    """One request R on `node`: count + 1, its response recorded (as ClusterNode.committed)."""
    view = node.store.begin(session_id, now)
    assert view is not None
    count = view["count"] = view.get("count", 0) + 1
    delta = node.store.commit(view, now)
    assert delta is not None
    return node.rep.local(delta, now, request_id, response(count))


def three() -> tuple[Node, Node, Node, str]:
    """node3 (the writer), node1 and node2, all holding one session at count 1."""
    n3, n1 = a_b()
    n2 = Node("node2b", "c" * 32)
    for x, y in ((n2, n3), (n3, n2), (n2, n1), (n1, n2)):
        x.rep.order.contact(y.id, 0)
    create = n3.write(T0, count=1)
    for node in (n1, n2):
        assert node.rep.receive(n3.id, create, T0).status == "applied"
    return n3, n1, n2, create.delta.session_id


def anti_entropy(asker: Node, answerer: Node) -> StateChunk:
    """The asker's digest pull, as Syncer._exchange sends it, answered and merged."""
    digest = tuple(asker.rep.digest())
    have = asker.rep.versions(rp for rp, _ in digest)
    return pull(answerer, asker, Pull(1, digest=digest, have=have))


def test_a_write_merged_by_anti_entropy_brings_its_record_along():
    n3, n1, n2, sid = three()
    r = count_up(n3, sid, "req-R")
    n1.rep.receive(n3.id, r, T0)  # node3 dies before node2 gets the delta
    assert n2.value(sid, "count") == 1 and n2.rep.ledger.get("req-R", T0) is None

    anti_entropy(n2, n1)

    assert n2.value(sid, "count") == 2  # node2 holds R's write now...
    replayed = n2.rep.ledger.get("req-R", T0)  # ...so a retry of R must be answered, not run
    assert replayed is not None and replayed.body == b'{"count":2}'


def test_a_session_pulled_by_id_brings_the_records_of_its_writes():
    n3, n1, _, sid = three()
    lost = Node("node4", "d" * 32)  # lacks the session entirely (a lookup, a fetch)
    for i in range(3):
        n1.rep.receive(n3.id, count_up(n3, sid, f"req-{i}"), T0)
    rp = sid.split(".")[0]

    pull(n1, lost, Pull(1, ids=(rp,), have=lost.rep.versions((rp,))))

    assert lost.value(sid, "count") == 4
    assert all(lost.rep.ledger.get(f"req-{i}", T0) is not None for i in range(3))


def test_only_records_newer_than_the_askers_version_travel():
    n3, n1, n2, sid = three()
    for i in range(3):
        msg = count_up(n3, sid, f"req-{i}")
        n1.rep.receive(n3.id, msg, T0)
        if i < 2:
            n2.rep.receive(n3.id, msg, T0)
    n2.rep.ledger = Ledger()  # so that whatever it holds afterwards came with the answer

    chunk = anti_entropy(n2, n1)

    assert [rid for rid, _ in chunk.responses] == ["req-2"]
    assert n2.rep.ledger.get("req-2", T0) is not None and n2.value(sid, "count") == 4


def test_records_merged_from_a_snapshot_travel_on_with_the_session():
    n3, n1, n2, sid = three()
    n1.rep.receive(n3.id, count_up(n3, sid, "req-R"), T0)
    anti_entropy(n2, n1)  # node2 got R's write and record from node1, not from the writer
    late = Node("node5", "e" * 32)
    rp = sid.split(".")[0]

    pull(n2, late, Pull(1, ids=(rp,)))

    assert late.value(sid, "count") == 2 and late.rep.ledger.get("req-R", T0) is not None


def test_a_record_is_kept_when_its_delta_arrives_and_must_wait_for_an_earlier_one():
    n3, n1, _, sid = three()
    count_up(n3, sid, "req-1")  # lost on the way
    second = count_up(n3, sid, "req-2")

    received = n1.rep.receive(n3.id, second, T0)

    assert received.status == "buffered" and n1.value(sid, "count") == 1
    # acked already: a retry of req-2 arriving here is answered with its record
    assert n1.rep.ledger.get("req-2", T0) is not None
    sync(n3, n1, received)  # the gap is recovered from the writer
    assert n1.value(sid, "count") == 3 and n1.rep.ledger.get("req-1", T0) is not None


def test_a_snapshot_chunk_carries_the_records_of_its_own_sessions():
    n3, _, _, sid = three()
    other = n3.write(T0, count=1).delta.session_id
    for i in range(4):
        count_up(n3, sid, f"s-{i}")
        count_up(n3, other, f"o-{i}")
    answer = n3.rep.answer(Pull(1), T0)  # a full snapshot: every record rides along
    assert len(answer.responses) == 8

    chunks = split(answer, budget=1)  # as small as can be: one session per chunk

    by_session = {
        sessions[0].state.random_part: {rid for rid, _ in responses}
        for sessions, _, responses in chunks
        if sessions
    }
    assert by_session == {
        sid.split(".")[0]: {f"s-{i}" for i in range(4)},
        other.split(".")[0]: {f"o-{i}" for i in range(4)},
    }


def test_records_of_sessions_not_sent_still_ride_in_a_full_snapshot():
    rep = Replicator(Node("node1", "a" * 32).store, "a" * 32)
    rep.ledger.put("loose", response(1), T0)  # not attached to any write
    answer = rep.answer(Pull(1), T0)
    assert [rid for rid, _ in answer.responses] == ["loose"]
    assert [rid for _, _, responses in split(answer, 1) for rid, _ in responses] == ["loose"]
    assert isinstance(answer, Answer)


def test_the_ledger_finds_a_sessions_records_by_version_and_forgets_evicted_ones():
    ledger = Ledger(max_entries=3)
    rp = "0123456789ABCDEF0123456789ABCDEF"
    for i in range(1, 5):
        ledger.put(f"r{i}", response(i).attached(rp, (i, "a" * 32)), T0)
    assert [rid for rid, _ in ledger.for_session(rp, T0)] == ["r2", "r3", "r4"]  # r1 evicted
    assert [rid for rid, _ in ledger.for_session(rp, T0, (3, "a" * 32))] == ["r4"]
    assert ledger.for_session("F" * 32, T0) == []
    ledger.put("r4", response(4), T0)  # the same record again, unattached: still attached
    assert [rid for rid, _ in ledger.for_session(rp, T0, (3, "a" * 32))] == ["r4"]
    assert ledger.for_session(rp, T0 + 301) == [] and len(ledger) == 0


# -- the same over real links, through the session middleware ---------------------------------
def real_node(
    route: str, port: int, ports: list[int], setup=None
) -> tuple[ClusterNode, web.Application]:
    statics = json.dumps([f"127.0.0.1:{p}" for p in ports])
    config = parse_cluster_config(
        f'name = "unit"\n[membership]\nmulticast = false\nfrequency = 50\n'
        f"static_members = {statics}\n[receiver]\nport = {port}\n"
        "[security]\ninsecure = true\n"
        # no resync (503) before the retry: the test decides when state moves
        "[replication]\nack_timeout = 5000\nanti_entropy_interval = 60000\n",
        "/nonexistent/cluster.toml",
    )
    app = web.Application()
    app.router.add_get("/counter", counter)
    if setup is not None:
        setup(app)  # before the node is installed: it takes the app's caches then
    node = ClusterNode(config, setup_sessions(app, route=route), Readiness())
    node.install(app)
    return node, app


async def counter(request: web.Request) -> web.Response:
    session = await get_session(request)
    assert session is not None
    session["count"] = session.get("count", 0) + 1
    return web.json_response({"count": session["count"]})


async def test_over_real_links_a_retry_after_the_writer_died_is_replayed_not_run_again(
    aiohttp_client,
):
    ports = [free_port() for _ in range(3)]
    (n3, app3), (n1, _), (n2, app2) = (
        real_node(route, port, ports) for route, port in zip(("n3", "n1", "n2"), ports, strict=True)
    )
    nodes = (n3, n1, n2)
    for node in nodes:
        await node.start()
    try:
        for _ in range(300):  # bounded: 3 s
            if all(len(n.membership) == 2 and n.readiness.ready for n in nodes):
                break
            await asyncio.sleep(0.01)
        assert all(len(n.membership) == 2 and n.readiness.ready for n in nodes)
        c3, c2 = await aiohttp_client(app3), await aiohttp_client(app2)
        first = await c3.get("/counter", headers={"X-Pyjk-Request-Id": "r1"})
        cookie = first.headers["Set-Cookie"].split(";")[0]
        rp = cookie.split("=")[1].split(".")[0]
        assert n2.store.get_state(rp).attributes["count"] == "1"  # sync: on every member

        # node3's next delta reaches node1 only (node3 is killed before it goes to node2)
        link = n3.channel.link(n2.membership.me)
        send = link.send
        link.send = lambda msg: None if isinstance(msg, DeltaMsg) else send(msg)  # type: ignore[method-assign]
        second = await c3.get("/counter", headers={"X-Pyjk-Request-Id": "r2", "Cookie": cookie})
        assert await second.json() == {"count": 2}  # ...and its answer never reached the client
        n3.faults.cut = True
        assert n2.store.get_state(rp).attributes["count"] == "1"

        await n2.syncer._exchange(n1.membership.me)  # anti-entropy: node2 gets node1's copy
        assert n2.store.get_state(rp).attributes["count"] == "2"

        headers = {"X-Pyjk-Request-Id": "r2", "Cookie": cookie}
        retry = await c2.get("/counter", headers=headers)  # the balancer's retry of r2
        assert retry.status == 200 and retry.headers.get("X-Pyjk-Replayed") == "1"
        assert await retry.json() == {"count": 2}
        assert n2.store.get_state(rp).attributes["count"] == "2"  # not run a second time
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))


async def test_over_real_links_a_cache_request_that_fails_is_answered_and_leaves_no_waiter():
    ports = [free_port() for _ in range(2)]

    def with_cache(app: web.Application) -> None:
        cluster_cache(app, "c", mode="distributed", owners=2)

    (n1, _), (n2, _) = (
        real_node(r, p, ports, with_cache) for r, p in zip(("n1", "n2"), ports, strict=True)
    )
    await asyncio.gather(n1.start(), n2.start())
    try:
        for _ in range(300):  # bounded: 3 s
            if all(len(n.membership) == 1 and n.readiness.ready for n in (n1, n2)):
                break
            await asyncio.sleep(0.01)
        assert n1.caches is not None and n2.caches is not None

        def refuse(peer, req):  # the serving side cannot reach the key's other owners
            raise CacheUnavailable("cache 'c' key 'k': no owner answered")

        n2.caches.handle = refuse  # type: ignore[method-assign]
        link = n1.channel.link(n2.membership.me)
        reply = await asyncio.wait_for(link.request(CacheReq(0, "c", "get", "k")), 2)
        assert not reply.ok and "no owner answered" in (reply.error or "")
        assert link._requests == {}

        n2.caches.handle = lambda peer, req: asyncio.sleep(10)  # type: ignore[method-assign]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.request(CacheReq(0, "c", "get", "k")), 0.1)
        await asyncio.sleep(0)  # the done callback runs
        assert link._requests == {}  # the asker gave up: no entry is left behind
    finally:
        await asyncio.gather(n1.stop(), n2.stop())
