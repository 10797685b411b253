"""Distributed mode's exactly-once records when a node is not sure: a request whose retry
record could not be read (its later attempts, its background tasks), a node that restarted
under the same route, and recording turned off. Members wired in-process (DistNet)."""

from __future__ import annotations

import asyncio
import time

import pytest

from replication.config import parse_cluster_config
from replication.session_entry import decode_entry
from worker.backend import SessionNotSaved
from worker.cache_table import CacheWriteRefused, Entry
from worker.peers import ABSENT, FOUND

from .test_dist_sessions import (
    IDS,
    DistNet,
    Node,
    create,
    entry_attrs,
    finish,
    parallel_commits,
    with_counters,
)


def records_unheard_once(node: Node) -> None:
    """The next `rid/` lookup of `node` goes unanswered (a record holder is slow once)."""
    real = node.dist.backend.fetch_from

    async def unheard(key: str, members: tuple[str, ...]) -> tuple[Entry | None, int]:
        if key.startswith("rid/"):
            node.dist.backend.fetch_from = real  # type: ignore[method-assign]
            return None, len(members)
        return await real(key, members)

    node.dist.backend.fetch_from = unheard  # type: ignore[method-assign]


async def three_parallel_writes(node: Node, sid: str) -> None:
    """Requests r-0, r-1, r-2 of one session in flight on `node` at once: r-0's record falls
    out of the entry (kept aside by the owners)."""
    rp = sid.split(".")[0]
    for delta in await parallel_commits(node, sid, 3):
        await node.dist.sink(delta)
    node.dist.release([rp])
    held = node.dist.table.entry(rp)
    assert held is not None and held.text is not None
    assert "r-0" not in decode_entry(held.text, 1 << 16).records


async def test_a_sticky_retry_of_a_request_in_doubt_asks_again_and_may_write_once_heard() -> None:
    # A failover-style read on the session's own node (its copy was missing a moment) could
    # not read r-x's record: that attempt may not write. Its retries read the copy held here
    # (sticky, no lookup on the old code), so they were refused for ever although every
    # owner answers now: the client ended with 503.
    net = DistNet(4)
    node, counters = net.nodes[IDS[0]], with_counters(net)[IDS[0]]
    sid = await create(node, x=0)
    rp = sid.split(".")[0]
    node.dist.table.evict(rp)  # n1 lacks its copy for a moment (a rebalance not done yet)
    records_unheard_once(node)

    async def attempt() -> int:  # one request's task: load, then its handler
        assert await node.dist.load([sid], "r-x") == FOUND
        try:
            return await counters.update("hits", lambda n: n + 1, default=0)
        finally:
            node.dist.release([rp])

    with pytest.raises(CacheWriteRefused, match="retry record"):
        await asyncio.create_task(attempt())
    kept = node.counters["dist_kept_lookups"]
    assert await asyncio.create_task(attempt()) == 1  # read here, asked again, heard
    assert node.counters["dist_reads_local"] >= 1
    assert node.counters["dist_kept_lookups"] == kept + 1
    assert await asyncio.create_task(attempt()) == 2  # heard once: no more in doubt
    assert node.counters["dist_kept_lookups"] == kept + 1


async def test_a_sticky_retry_after_a_refused_write_is_answered_from_the_kept_record() -> None:
    # r-0's record fell out of the entry (three requests in flight); the owners kept it.
    # This node lost it (its ledger: a restart; its copy came back). r-0's retry could not
    # read it: refused, 503. The next retry read the copy held here: on the old code the
    # refusal had consumed the mark, it ran unchecked and r-0 was applied twice.
    net = DistNet(4)
    node = net.nodes[IDS[0]]
    sid = await create(node, x=0)
    rp = sid.split(".")[0]
    await three_parallel_writes(node, sid)
    for request_id, _ in node.dist.ledger.items(time.time()):
        node.dist.ledger._drop(request_id)
    node.dist.table.evict(rp)
    records_unheard_once(node)

    async def attempt() -> str:
        assert await node.dist.load([sid], "r-0") == FOUND
        if (replayed := node.dist.replay("r-0")) is not None:
            node.dist.release([rp])
            return replayed.text  # type: ignore[attr-defined,no-any-return]
        view = node.store.begin(sid, time.time())
        assert view is not None
        view["ran"] = int(view.get("ran") or 0) + 1
        try:
            await finish(node, [view], "r-0")
        except SessionNotSaved:
            return "503"
        return "ran again"

    assert await asyncio.create_task(attempt()) == "503"
    assert await asyncio.create_task(attempt()) == "0 done"
    assert "ran" not in entry_attrs(node, sid)


async def test_a_background_task_of_an_unverified_request_may_not_write_after_its_commit() -> None:
    # The handler spawns a task that writes a cache after the response: on the old code the
    # commit's refusal consumed the request's mark, the task's write went through while the
    # request was answered 503 — and its retry ran the handler, and the write, again.
    net = DistNet(3)
    node, counters = net.nodes[IDS[0]], with_counters(net)[IDS[0]]
    rid = next(r for r in (f"r-{i:030d}" for i in range(200))
               if IDS[0] not in node.dist.backend.owners_of(f"rid/{r}"))  # fmt: skip
    committed = asyncio.Event()

    async def audit() -> str:
        await committed.wait()
        try:
            return f"stored {await counters.update('hits', lambda n: n + 1, default=0)}"
        except CacheWriteRefused:
            return "refused"

    async def request() -> tuple[str, asyncio.Task[str]]:
        net.hung.update(node.dist.backend.owners_of(f"rid/{rid}"))
        assert await node.dist.load([], rid) == ABSENT
        net.hung.clear()
        background = asyncio.create_task(audit())
        view = node.store.create(time.time())
        view["cart"] = ["book"]
        try:
            await finish(node, [view], rid)
            status = "200"
        except SessionNotSaved:
            status = "503"
        committed.set()
        return status, background

    status, background = await asyncio.create_task(request())
    assert (status, await background) == ("503", "refused")
    assert await counters.get("hits") is None


async def test_a_node_restarted_under_its_route_asks_for_records_it_did_not_keep() -> None:
    # n1 restarts (same route): its ledger is empty and the copy it gets back (a rebalance)
    # carries the newest records only. A sticky retry of r-0, whose record fell out of the
    # entry before the restart, found nothing here on the old code and ran again.
    net = DistNet(4)
    node = net.nodes[IDS[0]]
    sid = await create(node, x=0)
    rp = sid.split(".")[0]
    await three_parallel_writes(node, sid)
    backup = net.nodes[next(m for m in node.dist.backend.owners_of(rp) if m != IDS[0])]
    copy = backup.dist.table.entry(rp)
    assert copy is not None
    node = net.nodes[IDS[0]] = Node(net, IDS[0], "n1")  # the restarted process
    net.introduce(node)
    node.dist.table.apply(rp, copy)  # the rebalance brings its copy back
    assert await node.dist.load([sid], "r-0") == FOUND
    replayed = node.dist.replay("r-0")
    node.dist.release([rp])
    assert replayed is not None, "the retry would run again"
    assert replayed.text == "0 done"  # type: ignore[attr-defined]
    assert node.counters["dist_reads_local"] == 1 and node.counters["dist_kept_lookups"] == 1
    # a session created since the restart is known here whole: no round trip for it
    fresh = await create(node, y=0)
    before = node.counters["cache_requests_out"]
    assert await node.dist.load([fresh], "r-9") == FOUND
    node.dist.release([fresh.split(".")[0]])
    assert node.counters["cache_requests_out"] == before


async def test_max_entries_zero_turns_recording_off_in_distributed_mode_too() -> None:
    # The docs say max_entries = 0 turns recording off. On the old code the entries still
    # carried records (bytes on every copy) that no ledger kept: a half-on state. Now
    # nothing is recorded, as on the Redis store and all-to-all.
    config = parse_cluster_config(
        '[replication]\nmode = "distributed"\n[exactly_once]\nmax_entries = 0\n',
        "/tmp/cluster.toml",
    )
    net = DistNet(3, config)
    node = net.nodes[IDS[0]]
    assert await node.dist.load([], "r-new") == ABSENT
    view = node.store.create(time.time())
    view["x"] = 1
    await finish(node, [view], "r-new")  # a creating request: no record, no rid/ entry
    rp = view.id.split(".")[0]
    entry = node.dist.table.entry(rp)
    assert entry is not None and entry.text is not None
    assert decode_entry(entry.text, 1 << 16).records == {}
    assert all(key == rp for n in net.nodes.values() for key, _ in n.dist.table.items())
