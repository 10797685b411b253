"""The cluster caches' modes (replication/cache.py) on members wired in-process, and their
frames (replication/cache_codec.py): fixed schema, malformed or forged frames refused."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from replication import codec
from replication.cache import CacheRemoteError, Caches
from replication.cache_codec import CacheReply, CacheReq
from replication.codec import CodecError
from replication.member_info import MemberInfo
from worker.caches import ClusterCache, cluster_cache

IDS = [f"{i:032x}" for i in range(1, 13)]


class Net:
    """Members that call each other's handlers directly; a member can be killed."""

    def __init__(self, count: int, mode: str, owners: int = 2) -> None:
        self.dead: set[str] = set()
        self.apps: dict[str, ClusterCache] = {}
        self.caches: dict[str, Caches] = {}
        self.frames: list[tuple[str, CacheReq]] = []
        self.mode, self.owners = mode, owners
        for member in IDS[:count]:
            self.join(member)

    def join(self, member: str) -> None:
        app = web.Application()
        cache = cluster_cache(app, "c", mode=self.mode, owners=self.owners)
        caches = Caches(member, self._members(member), self._request, timeout=0.5,
                        rate=1e9)  # fmt: skip
        caches.install({"c": cache})
        self.apps[member], self.caches[member] = cache, caches

    def _members(self, me: str):
        def members() -> Mapping[str, MemberInfo]:
            return {
                m: MemberInfo(m, f"n{m[-1]}", "127.0.0.1", 1, 1.0)
                for m in self.caches
                if m != me and m not in self.dead
            }

        return members

    async def _request(self, info: MemberInfo, req: CacheReq) -> CacheReply:
        if info.id in self.dead:
            raise ConnectionError("dead")
        self.frames.append((info.id, req))
        # the frame really travels: encoded and decoded as on the wire
        req = codec.decode(codec.encode(replace(req, n=1)))  # type: ignore[assignment]
        reply = self.caches[info.id].handle(info, req)
        if not isinstance(reply, CacheReply):
            reply = await reply
        return codec.decode(codec.encode(reply))  # type: ignore[return-value]

    def holders(self, key: str) -> set[str]:
        return {m for m, c in self.caches.items() if c.backends["c"].table.get(key, 0.0)
                and m not in self.dead}  # fmt: skip

    async def settle(self) -> None:
        for caches in self.caches.values():
            if caches.me not in self.dead:
                for backend in caches.backends.values():
                    await backend.rebalance(caches._view, caches.view())
                caches._view = caches.view()


async def test_distributed_writes_land_on_exactly_owners_members() -> None:
    net = Net(4, "distributed", owners=2)
    for i in range(20):
        await net.apps[IDS[i % 4]].put(f"k{i}", i)
    for i in range(20):
        assert len(net.holders(f"k{i}")) == 2
        for cache in net.apps.values():
            assert await cache.get(f"k{i}") == i


async def test_concurrent_updates_from_every_member_lose_nothing() -> None:
    net = Net(3, "distributed", owners=2)
    await asyncio.gather(
        *(net.apps[IDS[i % 3]].update("n", lambda n: n + 1, default=0) for i in range(30))
    )
    assert {await c.get("n") for c in net.apps.values()} == {30}


async def test_a_retried_write_is_recognised_by_the_next_primary() -> None:
    net = Net(3, "distributed", owners=2)
    cache = net.apps[IDS[0]]
    await cache.put("n", 1)
    backend = net.caches[IDS[0]].backends["c"]
    primary, backup = backend.owners_of("n")
    req = CacheReq(0, "c", "cas", "n", "2", "1", op_id="ab" * 16)
    first = await net.caches[primary].backends["c"].serve_write(req)
    assert first.ok
    net.dead.add(primary)  # the primary dies before its answer arrives; the writer retries
    again = await net.caches[backup].backends["c"].serve_write(req)
    assert again.ok and await net.apps[backup].get("n") == 2  # applied once, not refused


async def test_a_retry_after_a_primary_change_is_recognised_where_the_rebalance_copied() -> None:
    # The write reached the primary and its backup, the primary died before answering while a
    # member joined that is the key's new primary: it gets the key by a rebalance copy, which
    # must carry the write's id, or the retried compare-and-set finds "2" where it expects
    # "1", answers "lost" and update() applies the increment a second time.
    p, b, c, d = IDS[:4]
    probe = Net(3, "distributed", owners=2).caches[p].backends["c"]
    key = next(
        k for k in (f"k{i}" for i in range(500))
        if probe.owners_of(k) == (p, b) and probe.owners_of(k, frozenset({b, c, d}))[0] == d
    )  # fmt: skip
    net = Net(3, "distributed", owners=2)
    await net.apps[p].put(key, 1)
    req = CacheReq(0, "c", "cas", key, "2", "1", op_id="ab" * 16)
    assert (await net.caches[p].backends["c"].serve_write(req)).ok
    net.dead.add(p)
    net.join(d)
    await net.settle()  # b copies the key to d, the new primary
    assert d in net.holders(key)
    again = await net.caches[d].backends["c"].serve_write(req)
    assert again.ok, "the retry was not recognised: update() would apply it twice"
    assert await net.apps[d].get(key) == 2


async def test_a_primary_that_fetches_a_missing_key_learns_its_write_ids() -> None:
    net = Net(3, "distributed", owners=2)
    await net.apps[IDS[0]].put("n", 1)
    primary, backup = net.caches[IDS[0]].backends["c"].owners_of("n")
    req = CacheReq(0, "c", "cas", "n", "2", "1", op_id="cd" * 16)
    assert (await net.caches[primary].backends["c"].serve_write(req)).ok
    (other,) = set(IDS[:3]) - {primary, backup}
    entry = net.caches[backup].backends["c"].table.entry("n")
    assert entry is not None and req.op_id in entry.ops  # the copy carried the id
    # a member without the key (a rebalance still bringing it) fetches it first: the fetched
    # entry carries the ids, so the retry is recognised there too
    fetched = await net.caches[other].backends["c"].fetch("n", (backup,))
    assert fetched is not None and req.op_id in fetched.ops


class LateNet(Net):
    """A killed member stays in the others' views until a frame to it fails (a link reset),
    as Caches.members sees it; a hung one stays in them (its frames time out)."""

    def __init__(self, count: int) -> None:
        self.gone: set[str] = set()
        self.hung: set[str] = set()
        super().__init__(count, "distributed", owners=2)

    def _members(self, me: str):
        def members() -> Mapping[str, MemberInfo]:
            return {m: MemberInfo(m, f"n{m[-1]}", "127.0.0.1", 1, 1.0)
                    for m in self.caches if m != me and m not in self.gone}  # fmt: skip

        return members

    async def _request(self, info: MemberInfo, req: CacheReq) -> CacheReply:
        if info.id in self.hung:
            raise TimeoutError("no answer")
        if info.id in self.dead:
            self.gone.add(info.id)  # the link failed: out of the view from now on
        return await super()._request(info, req)


def primary_key(net: LateNet) -> tuple[str, str, str]:
    """A key whose primary is IDS[0]; its backup and the third member."""
    backend = net.caches[IDS[0]].backends["c"]
    key = next(k for k in (f"k{i}" for i in range(100)) if backend.owners_of(k)[0] == IDS[0])
    backup = backend.owners_of(key)[1]
    (third,) = set(IDS[:3]) - {IDS[0], backup}
    return key, backup, third


@pytest.mark.parametrize("existing", [True, False])
async def test_a_strict_write_is_acknowledged_only_once_every_live_owner_has_it(existing: bool):
    net = LateNet(3)
    net.caches[IDS[0]].backends["c"].strict = True  # as the sessions of distributed mode
    key, backup, third = primary_key(net)
    if existing:
        await net.apps[IDS[0]].put(key, 0)
    net.dead.add(backup)  # killed; still in the view
    await net.apps[IDS[0]].put(key, 1)
    # the copy to the dead backup failed, the owners were computed again: the third has it
    assert net.holders(key) == {IDS[0], third}
    net.hung.add(third)  # alive for the view, but it does not answer
    with pytest.raises(CacheRemoteError, match="did not confirm"):
        await net.apps[IDS[0]].put(key, 2)  # not acknowledged: one copy only
    assert net.caches[IDS[0]].counters["cache_writes_short"] == 1


async def test_a_lenient_write_returns_even_when_a_backup_missed_it() -> None:
    net = LateNet(3)
    key, backup, _ = primary_key(net)
    await net.apps[IDS[0]].put(key, 0)
    net.hung.add(backup)
    await net.apps[IDS[0]].put(key, 1)  # app caches: counted as a missed copy, not refused
    assert net.caches[IDS[0]].counters["cache_copies_missed"] == 1
    assert net.caches[backup].backends["c"].table.get(key, 0.0) == "0"


async def test_a_backup_whose_copy_lags_behind_the_primary_still_updates() -> None:
    # A backup cut off while the primary moved on keeps an older copy; its update must not
    # compare against that copy forever (seen after a partition healed: the singleton counter
    # crashed with "64 updates in a row lost to other writers").
    net = Net(3, "distributed", owners=2)
    await net.apps[IDS[0]].put("n", 1)
    primary, backup = net.caches[IDS[0]].backends["c"].owners_of("n")
    net.dead.add(backup)
    assert await net.apps[primary].update("n", lambda n: n + 1) == 2
    net.dead.discard(backup)
    assert net.caches[backup].backends["c"].table.get("n", 0.0) == "1"  # its lagging copy
    assert await net.apps[backup].update("n", lambda n: n + 1) == 3
    assert await net.apps[primary].get("n") == 3


async def test_a_local_cache_keeps_its_writes_on_its_own_node() -> None:
    net = Net(3, "local")
    await net.apps[IDS[0]].put("k", 1)
    await net.apps[IDS[1]].put("k", 2)
    assert net.frames == []  # nothing was sent to another member
    assert [await net.apps[m].get("k") for m in IDS[:3]] == [1, 2, None]


async def test_keys_survive_losing_fewer_than_owners_members_and_copies_come_back() -> None:
    net = Net(5, "distributed", owners=2)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        await net.apps[IDS[0]].put(key, key)
    await net.settle()
    net.dead.add(IDS[2])
    await net.settle()
    survivor = net.apps[IDS[0]]
    assert [await survivor.get(k) for k in keys] == keys
    assert all(len(net.holders(k)) == 2 for k in keys)


async def test_housekeeping_forgets_expired_entries_nobody_reads() -> None:
    net = Net(2, "replicated")
    clock = [100.0]
    for caches in net.caches.values():
        caches.clock = lambda: clock[0]
    await net.apps[IDS[0]].put("k", 1, ttl=5)
    assert all(c.backends["c"].table.entry("k") is not None for c in net.caches.values())
    clock[0] += 5
    assert sum(c.expire() for c in net.caches.values()) == 2
    clock[0] += 3600  # the tombstones too, later
    for caches in net.caches.values():
        caches.expire()
        assert caches.backends["c"].table.entry("k") is None


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7), st.integers(0, 99)),
        st.tuples(st.just("kill"), st.integers(0, 11), st.just(0)),
        st.tuples(st.just("join"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(STEPS, st.integers(2, 3))
def test_no_acknowledged_write_is_lost_through_one_failure_at_a_time(
    steps: list[tuple[str, int, int]], owners: int
) -> None:
    """Puts, kill -9s (fewer than `owners` at once: each followed by its rebalance) and joins
    in any order: every acknowledged value stays readable from every live member, on exactly
    `owners` of them."""

    async def run() -> None:
        net = Net(owners + 1, "distributed", owners=owners)
        joined = owners + 1
        acked: dict[str, int] = {}
        for op, a, b in steps:
            live = [m for m in net.caches if m not in net.dead]
            if op == "put":
                await net.apps[live[b % len(live)]].put(f"k{a}", b)
                acked[f"k{a}"] = b
            elif op == "kill" and len(live) > owners:
                net.dead.add(live[a % len(live)])
            elif op == "join" and joined < len(IDS):
                net.join(IDS[joined])
                joined += 1
            await net.settle()
            live = [m for m in net.caches if m not in net.dead]
            for key, value in acked.items():
                for member in live:
                    assert await net.apps[member].get(key) == value, (key, member)
                assert len(net.holders(key)) == owners, key

    asyncio.run(run())


async def test_replicated_puts_reach_every_member() -> None:
    net = Net(3, "replicated")
    await net.apps[IDS[1]].put("k", {"v": 1})
    assert net.holders("k") == set(IDS[:3])


async def test_invalidated_put_evicts_the_other_copies_before_it_returns() -> None:
    net = Net(3, "invalidated")
    await net.apps[IDS[0]].put("k", 1)
    await net.apps[IDS[1]].put("k", 2)
    assert net.holders("k") == {IDS[1]}
    assert await net.apps[IDS[0]].get("k") is None


# -- frames -----------------------------------------------------------------------------------
def test_cache_frames_round_trip() -> None:
    req = CacheReq(3, "c", "copy", "k", '{"a":[1,2.5]}', None, (5, IDS[0]), 99.5, None, "cd" * 16,
                   ("ab" * 16, "cd" * 16))  # fmt: skip
    assert codec.decode(codec.encode(req)) == req
    reply = CacheReply(3, True, "1", (7, IDS[1]), None, ("a", "b"), None, ("ef" * 16,))
    assert codec.decode(codec.encode(reply)) == reply


def test_cluster_cache_refuses_values_no_cache_frame_can_carry() -> None:
    app = web.Application()
    with pytest.raises(ValueError, match=r"max_value_bytes must be 1\.\.1048576"):
        cluster_cache(app, "big", max_value_bytes=2 << 20)
    assert cluster_cache(app, "ok", max_value_bytes=1 << 20).name == "ok"
    with pytest.raises(ValueError, match="pyjk's own"):
        cluster_cache(app, "pyjk.sessions")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"v": "{'a': 1}"}, "not a JSON value"),
        ({"v": '{"a": 1}'}, "not in canonical form"),
        ({"v": "NaN"}, "not a JSON value"),
        ({"op": "drop-table"}, "cache.op"),
        ({"c": "../etc"}, "cache.c"),
        ({"k": ""}, "cache.k"),
        ({"ver": [1, "someone"]}, "version out of range"),
        ({"ver": None, "op": "copy"}, "a copy carries its version"),
        ({"ttl": -1}, "cache.ttl"),
        ({"id": "x"}, "cache.id"),
        ({"ids": ["x"]}, "cache.ids"),
        ({"ids": ["ab" * 16] * 9}, "cache.ids"),
        ({"ids": None}, "cache.ids"),
        ({"extra": 1}, "fields must be"),
    ],
)
def test_a_malformed_cache_frame_is_refused_with_the_field(change: dict, problem: str) -> None:
    wire = codec.to_wire(CacheReq(1, "c", "put", "k", "1", None, None, None, None, "ab" * 16))
    wire.update(change)
    with pytest.raises(CodecError, match=problem):
        codec.from_wire(wire)


async def test_a_retry_of_a_strict_write_that_ended_short_is_acknowledged_only_with_its_copies():
    # The first attempt was applied on the primary but its backup did not confirm (503 to
    # the writer); the retry with the same id must not get "applied already" → ok without the
    # copies: it is acknowledged once the owners confirm, not before.
    net = LateNet(3)
    primary = net.caches[IDS[0]].backends["c"]
    primary.strict = True
    key, backup, _ = primary_key(net)
    await net.apps[IDS[0]].put(key, 0)
    net.hung.add(backup)  # alive for the view, but it does not answer
    req = CacheReq(0, "c", "put", key, "1", op_id="cd" * 16)
    first = await primary.serve_write(req)
    assert not first.ok and first.error is not None
    again = await primary.serve_write(req)  # the writer's retry, the owner still silent
    assert not again.ok and "did not confirm" in (again.error or "")
    net.hung.clear()
    assert (await primary.serve_write(req)).ok
    assert net.holders(key) == {IDS[0], backup}
    assert await net.apps[backup].get(key) == 1
