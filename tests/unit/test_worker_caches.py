"""The cluster cache API (worker/caches.py) in local mode, and the pure table under it
(worker/cache_table.py): values through the sessions' codec, TTLs, compare-and-set and
update, limits, versions that settle copies arriving in any order."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from worker.cache_table import CacheFull, CacheTable, CacheValueTooLarge, Entry
from worker.caches import (
    ABSENT,
    CACHES,
    CacheConflict,
    CacheValueError,
    ClusterCache,
    LocalBackend,
    cluster_cache,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def local_cache(clock: Clock, **limits: int) -> ClusterCache:
    table = CacheTable("c", writer="local", **limits)
    return ClusterCache("c", "local", 1, LocalBackend(table, clock))


# -- the API ----------------------------------------------------------------------------------
async def test_put_then_get_returns_an_equal_fresh_copy() -> None:
    cache = local_cache(Clock())
    cart = {"items": ["a", "b"], "total": 2.5}
    await cache.put("cart", cart)
    cart["items"].append("changed after the put")
    got = await cache.get("cart")
    assert got == {"items": ["a", "b"], "total": 2.5}
    got["items"].clear()
    assert (await cache.get("cart"))["items"] == ["a", "b"]


async def test_a_missing_key_reads_as_the_default_and_counts_a_miss() -> None:
    cache = local_cache(Clock())
    assert await cache.get("nope") is None
    assert await cache.get("nope", 7) == 7
    await cache.put("yes", 0)
    assert await cache.get("yes", 7) == 0
    assert (cache.stats.hits, cache.stats.misses, cache.stats.puts) == (1, 2, 1)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ((1, 2), "value: builtins.tuple is not allowed (use a list)"),
        ({"a": {1: "x"}}, "value['a']: dict key 1 is a int"),
        ([float("nan")], "value[0]: nan is not a finite float"),
        (object(), "builtins.object is not allowed"),
    ],
)
async def test_a_value_the_codec_refuses_raises_at_put_and_nothing_is_stored(
    value: object, where: str
) -> None:
    cache = local_cache(Clock())
    with pytest.raises(CacheValueError, match=r"cache 'c' key 'k': ") as caught:
        await cache.put("k", value)
    assert where in str(caught.value)
    assert await cache.keys() == []
    assert cache.stats.puts == 0


class Recording:
    """A cluster backend that only notes what would be sent to the members."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get(self, key: str, fresh: bool = False) -> str | None:
        self.calls.append("get")
        return None

    async def put(self, key: str, text: str, ttl: float | None) -> None:
        self.calls.append("put")

    async def delete(self, key: str) -> bool:
        self.calls.append("delete")
        return False

    async def compare_and_set(
        self, key: str, expected: str | None, text: str, ttl: float | None
    ) -> bool:
        self.calls.append("cas")
        return True

    async def keys(self) -> list[str]:
        return []


async def test_in_a_cluster_a_value_the_codec_refuses_is_never_sent() -> None:
    backend = Recording()
    cache = ClusterCache("c", "distributed", 2, backend)
    with pytest.raises(CacheValueError, match=r"cache 'c' key 'k': value: builtins.tuple"):
        await cache.put("k", (1, 2))
    with pytest.raises(CacheValueError):
        await cache.compare_and_set("k", ABSENT, {1: "x"})
    with pytest.raises(CacheValueError):
        await cache.update("k", lambda _: object(), default=0)
    assert "put" not in backend.calls and "cas" not in backend.calls  # nothing went out


@pytest.mark.parametrize("key", ["", "x" * 257, 5, b"bytes", None])
async def test_keys_are_non_empty_short_strings(key: object) -> None:
    cache = local_cache(Clock())
    with pytest.raises(CacheValueError, match="keys are str of 1 to 256 characters"):
        await cache.put(key, 1)  # type: ignore[arg-type]


async def test_a_value_past_the_limit_is_refused_with_its_size() -> None:
    cache = local_cache(Clock(), max_value_bytes=10)
    await cache.put("k", "12345678")  # '"12345678"' is 10 bytes
    with pytest.raises(CacheValueTooLarge, match=r"11 bytes as JSON, the limit .* is 10"):
        await cache.put("k", "123456789")
    assert await cache.get("k") == "12345678"


async def test_a_full_cache_refuses_new_keys_but_replaces_existing_ones() -> None:
    clock = Clock()
    cache = local_cache(clock, max_entries=2)
    await cache.put("a", 1)
    await cache.put("b", 2, ttl=5)
    with pytest.raises(CacheFull, match="2 entries, the limit"):
        await cache.put("c", 3)
    await cache.put("a", 10)  # a replacement needs no room
    clock.now += 5
    await cache.put("c", 3)  # "b" expired: it no longer takes room
    assert sorted(await cache.keys()) == ["a", "c"]


async def test_an_entry_reads_as_absent_once_its_ttl_passed() -> None:
    clock = Clock()
    cache = local_cache(clock)
    await cache.put("k", "v", ttl=2.0)
    clock.now += 1.999
    assert await cache.get("k") == "v"
    clock.now += 0.001
    assert await cache.get("k") is None
    assert await cache.size() == 0


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True, "5"])
async def test_a_ttl_must_be_a_positive_finite_number(ttl: object) -> None:
    cache = local_cache(Clock())
    with pytest.raises(ValueError, match="ttl must be"):
        await cache.put("k", 1, ttl=ttl)  # type: ignore[arg-type]


async def test_delete_says_whether_there_was_something_to_delete() -> None:
    cache = local_cache(Clock())
    await cache.put("k", 1)
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_compare_and_set_stores_only_over_the_expected_value() -> None:
    cache = local_cache(Clock())
    assert await cache.compare_and_set("k", ABSENT, 1) is True
    assert await cache.compare_and_set("k", ABSENT, 2) is False
    assert await cache.compare_and_set("k", 5, 2) is False
    assert await cache.compare_and_set("k", 1, 2) is True
    assert await cache.get("k") == 2
    # a stored None is a value, not absence
    await cache.put("n", None)
    assert await cache.compare_and_set("n", ABSENT, 1) is False
    assert await cache.compare_and_set("n", None, 1) is True
    assert cache.stats.conflicts == 3


async def test_update_applies_the_function_and_returns_the_new_value() -> None:
    cache = local_cache(Clock())
    assert await cache.update("n", lambda n: n + 1, default=0) == 1
    assert await cache.update("n", lambda n: n + 1, default=0) == 2
    with pytest.raises(KeyError):
        await cache.update("other", lambda n: n + 1)
    with pytest.raises(CacheValueError):
        await cache.update("n", lambda n: {n})  # a set is not JSON-safe
    assert await cache.get("n") == 2


async def test_concurrent_updates_lose_no_increment() -> None:
    class Interleaving(LocalBackend):
        async def get(self, key: str, fresh: bool = False) -> str | None:
            value = await super().get(key, fresh)
            await asyncio.sleep(0)  # let another update read the same value
            return value

    cache = ClusterCache("c", "local", 1, Interleaving(CacheTable("c", writer="w")))
    await asyncio.gather(*(cache.update("n", lambda n: n + 1, default=0) for _ in range(20)))
    assert await cache.get("n") == 20
    assert cache.stats.conflicts > 0  # the interleaving really raced


async def test_update_gives_up_with_a_conflict_when_it_never_wins() -> None:
    class AlwaysLoses(LocalBackend):
        async def compare_and_set(self, *args: object) -> bool:
            return False

    cache = ClusterCache("c", "local", 1, AlwaysLoses(CacheTable("c", writer="w")))
    with pytest.raises(CacheConflict, match="lost to other writers"):
        await cache.update("n", lambda n: n + 1, default=0)


# -- registration -----------------------------------------------------------------------------
def test_cluster_cache_registers_once_per_name() -> None:
    app = web.Application()
    counters = cluster_cache(app, "counters", mode="distributed", owners=2)
    assert cluster_cache(app, "counters", mode="distributed", owners=2) is counters
    assert app[CACHES] == {"counters": counters}
    with pytest.raises(ValueError, match="exists as mode=distributed owners=2"):
        cluster_cache(app, "counters", mode="replicated")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": "a b"}, "cache name 'a b'"),
        ({"name": "x", "mode": "sharded"}, "mode 'sharded' is not one of"),
        ({"name": "x", "owners": 0}, "owners must be an int >= 1"),
    ],
)
def test_bad_cache_settings_are_refused(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        cluster_cache(web.Application(), **kwargs)


# -- the table: copies from other nodes -------------------------------------------------------
def test_a_newer_copy_replaces_and_an_older_one_is_ignored() -> None:
    table = CacheTable("c", writer="a")
    mine = table.put("k", '"mine"', now=0.0)
    assert table.apply("k", Entry('"old"', (mine.version[0] - 1, "z"))) is False
    assert table.apply("k", Entry('"new"', (mine.version[0] + 1, "b"))) is True
    assert table.get("k", 0.0) == '"new"'
    # the next local write outranks what it has seen
    assert table.put("k", '"later"', now=0.0).version > (mine.version[0] + 1, "b")


def test_a_delete_is_a_tombstone_that_outranks_the_write_it_deletes() -> None:
    table = CacheTable("c", writer="a", tombstone_ttl=60.0)
    written = table.put("k", "1", now=0.0)
    tomb = table.delete("k", now=1.0)
    assert tomb is not None and tomb.text is None and tomb.version > written.version
    assert table.apply("k", written) is False  # a late copy of the write does not resurrect
    assert table.keys(1.0) == [] and table.size(1.0) == 0
    table.expire(61.0)
    assert table.entry("k") is None  # the tombstone is forgotten after its time


WRITES = st.lists(
    st.tuples(st.integers(1, 20), st.sampled_from("abc"), st.sampled_from(["1", "2", None])),
    min_size=1,
    max_size=30,
    unique_by=lambda w: w[:2],  # a version names one write: a writer never reuses a counter
)


@given(WRITES, st.randoms())
def test_copies_applied_in_any_order_settle_on_the_newest(writes: list, rnd: object) -> None:
    entries = [Entry(text, (counter, writer)) for counter, writer, text in writes]
    newest = max(entries, key=lambda e: e.version)
    shuffled = list(entries)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    table = CacheTable("c", writer="me")
    for entry in shuffled:
        table.apply("k", entry)
    stored = table.entry("k")
    assert stored is not None and stored.version == newest.version
    assert table.get("k", 0.0) == next(e.text for e in entries if e.version == newest.version)


def test_evict_forgets_a_copy_without_a_tombstone() -> None:
    table = CacheTable("c", writer="a", max_entries=1)
    table.put("k", "1", now=0.0)
    assert table.evict("k") is True and table.entry("k") is None
    table.put("j", "2", now=0.0)  # the evicted entry no longer takes room
    assert table.evict("k") is False


Ttl = float | None


def test_a_table_with_a_merge_merges_a_put_into_the_live_value_only() -> None:
    calls: list[tuple[str, str, float, float | None]] = []

    def union(stored: str, incoming: str, now: float, ttl: float | None) -> tuple[str, Ttl]:
        calls.append((stored, incoming, now, ttl))
        return stored[:-1] + "," + incoming[1:], ttl

    table = CacheTable("c", writer="a", merge=union)
    table.put("k", "[1]", now=0.0)  # nothing stored: as it comes
    written = table.put("k", "[2]", now=1.0, ttl=10.0)
    assert written.text == "[1,2]" and table.get("k", 1.0) == "[1,2]"
    assert calls == [("[1]", "[2]", 1.0, 10.0)]
    table.put("k", "[3]", now=20.0)  # the stored value expired: not merged
    assert table.get("k", 20.0) == "[3]" and len(calls) == 1
    plain = CacheTable("c", writer="a")  # the app caches: a put replaces
    plain.put("k", "[1]", now=0.0)
    assert plain.put("k", "[2]", now=1.0).text == "[2]"


def test_a_merged_put_expires_by_the_ttl_its_merge_decides_not_the_puts() -> None:
    # the value kept may be the stored one (a late put of an older session state): its own
    # lifetime holds — None (never), or a shorter one — whatever ttl the put brought
    def keep_stored(stored: str, incoming: str, now: float, ttl: float | None):
        return stored, None if stored == '"forever"' else 5.0

    table = CacheTable("c", writer="a", merge=keep_stored)
    table.put("k", '"forever"', now=0.0)
    assert table.put("k", '"older"', now=1.0, ttl=1800.0).expires is None
    table.put("e", '"ended"', now=0.0, ttl=5.0)
    assert table.put("e", '"touch"', now=1.0, ttl=1800.0).expires == 6.0
    assert table.get("e", 7.0) is None


def test_compare_and_set_is_refused_on_a_table_that_merges() -> None:
    table = CacheTable("c", writer="a", merge=lambda s, i, now, ttl: (s, ttl))
    with pytest.raises(ValueError, match="compare-and-set is refused on a table that merges"):
        table.compare_and_set("k", None, "[1]", now=0.0)
    assert table.get("k", 0.0) is None
