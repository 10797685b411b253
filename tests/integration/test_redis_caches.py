"""The app's cluster caches on a Redis store (replication/redis_cache.py), against real
redis-server processes: one server (in-process stores and real workers behind the balancer)
and a 3+3 Redis Cluster. Redis is the shared copy of every non-local cache; compare-and-set is
one Lua script; TTL is Redis's; an outage is CacheUnavailable (503 through the worker)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from replication.config import parse_cluster_config
from replication.redis_cache import CacheMalformed, RedisCacheBackend
from replication.redis_store import RedisStore
from tests.integration.conftest import Stack, http_get
from tests.integration.redis_kit import RedisClusterKit, RedisServer, cli, needs_redis
from tests.integration.test_redis_store import store_config
from tests.support.procs import ProcGroup, free_port, proc_group, until
from worker import setup_sessions
from worker.cache_table import CacheFull, CacheUnavailable, CacheValueTooLarge
from worker.caches import ABSENT, LocalBackend, cluster_cache
from worker.readiness import Readiness

pytestmark = [pytest.mark.integration, needs_redis]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcGroup]:
    with proc_group(tmp_path) as group:
        yield group


@pytest.fixture
def redis(group: ProcGroup, tmp_path: Path) -> RedisServer:
    return RedisServer(group, tmp_path / "redis", free_port()).start()


def app_with_caches(where: str, **limits: int) -> tuple[web.Application, RedisStore]:
    """An app with caches in each mode, bound to a Redis store at `where` (a [store] body)."""
    app = web.Application()
    # on a 3+3 Redis Cluster, "dist", "repl" and "inval" share the third master's slots;
    # "b" and "c" sit on the first and the second
    for name, mode in (("dist", "distributed"), ("repl", "replicated"),
                       ("inval", "invalidated"), ("mine", "local"), ("b", "distributed"),
                       ("c", "invalidated")):  # fmt: skip
        cluster_cache(app, name, mode=mode, **limits)
    config = parse_cluster_config(f'[store]\nkind = "redis"\n{where}', "/tmp/c.toml")
    store = RedisStore(config, setup_sessions(app, route="n1"), Readiness())
    store.install(app)
    return app, store


def caches(app: web.Application):
    from worker.caches import CACHES

    return app[CACHES]


@contextlib.asynccontextmanager
async def one_store(where: str, **limits: int):
    """The caches of one worker's app on a Redis store; the store's client closed after."""
    app, store = app_with_caches(where, **limits)
    try:
        yield caches(app), store
    finally:
        await store.stop()


async def test_every_mode_but_local_is_one_shared_copy_in_redis(redis: RedisServer):
    (app1, s1), (app2, s2) = (app_with_caches(f'url = "{redis.url}"\n') for _ in range(2))
    try:
        c1, c2 = caches(app1), caches(app2)
        assert isinstance(c1["mine"].backend, LocalBackend)
        for name in ("dist", "repl", "inval"):
            assert isinstance(c1[name].backend, RedisCacheBackend)
            await c1[name].put("k", {"n": [1, 2]})
            assert await c2[name].get("k") == {"n": [1, 2]}  # the other worker sees it
            await c2[name].put("k", "new")
            assert await c1[name].get("k") == "new"  # no stale copy anywhere
            assert await c1[name].keys() == ["k"] and await c2[name].size() == 1
            assert await c1[name].delete("k") is True and await c2[name].get("k") is None
            assert await c2[name].delete("k") is False
        await c1["mine"].put("k", 1)
        assert await c2["mine"].get("k") is None  # local stays per worker
        # keys under the store's key_prefix and the cache's name (one hash tag per cache)
        await c1["dist"].put("hits", 3)
        assert cli(redis.port, "get", "pyjk:c:{dist}:k:hits").strip() == "3"
        assert "hits" in cli(redis.port, "zrange", "pyjk:c:{dist}:i", "0", "-1")
    finally:
        await asyncio.gather(s1.stop(), s2.stop())


async def test_compare_and_set_is_atomic_across_workers(redis: RedisServer):
    (app1, s1), (app2, s2) = (app_with_caches(f'url = "{redis.url}"\n') for _ in range(2))
    try:
        a, b = caches(app1)["dist"], caches(app2)["dist"]
        assert await a.compare_and_set("lock", ABSENT, "me") is True
        assert await b.compare_and_set("lock", ABSENT, "you") is False
        assert await b.compare_and_set("lock", "me", "you") is True
        assert await a.get("lock") == "you"
        # 2 x 40 concurrent increments through two clients: none lost, none doubled
        incr = [c.update("count", lambda n: n + 1, default=0) for c in (a, b) for _ in range(40)]
        results = await asyncio.gather(*incr)
        assert sorted(results) == list(range(1, 81))
        assert await a.get("count") == 80
        assert a.stats.conflicts + b.stats.conflicts > 0  # they did race
    finally:
        await asyncio.gather(s1.stop(), s2.stop())


async def test_ttl_is_kept_by_redis_and_limits_are_the_caches(redis: RedisServer):
    limits = {"max_entries": 2, "max_value_bytes": 64}
    async with one_store(f'url = "{redis.url}"\n', **limits) as (cs, store):
        cache = cs["repl"]
        await cache.put("short", 1, ttl=0.3)
        await cache.put("long", 2)
        pttl = int(cli(redis.port, "pttl", "pyjk:c:{repl}:k:short"))
        assert 0 < pttl <= 300  # Redis expires it
        assert int(cli(redis.port, "pttl", "pyjk:c:{repl}:k:long")) == -1
        with pytest.raises(CacheFull):
            await cache.put("third", 3)  # a new key past max_entries
        await cache.put("long", 5)  # an existing key can always be replaced
        with pytest.raises(CacheValueTooLarge):
            await cache.put("long", "x" * 100)
        await until(lambda: cli(redis.port, "exists", "pyjk:c:{repl}:k:short").strip() == "0",
                    5, what="redis expired the key")  # fmt: skip
        assert await cache.get("short") is None and await cache.keys() == ["long"]
        await cache.put("third", 3)  # the expired one no longer counts
        assert store.counters["cache_full"] == 1


async def test_an_entry_removed_outside_the_cache_does_not_keep_it_full(redis: RedisServer):
    # maxmemory eviction or a DEL by hand removes the entry but not its index member (no TTL
    # tells the index): the cache must not stay "full" for good
    async with one_store(f'url = "{redis.url}"\n', max_entries=2) as (cs, store):
        cache = cs["repl"]
        await cache.put("a", 1)
        await cache.put("b", 2)
        assert cli(redis.port, "del", "pyjk:c:{repl}:k:a").strip() == "1"
        await cache.put("c", 3)  # the index's "a" went, the limit still holds
        assert sorted(await cache.keys()) == ["b", "c"]
        with pytest.raises(CacheFull):
            await cache.put("d", 4)
        assert store.counters["cache_full"] == 1


async def test_a_malformed_value_in_redis_is_refused_and_counted(redis: RedisServer):
    async with one_store(f'url = "{redis.url}"\n') as (cs, store):
        cache = cs["dist"]
        await cache.put("good", [1])
        for planted in ('{"a": 1}', "\x80\x81", "NaN", "[1,]"):
            cli(redis.port, "set", "pyjk:c:{dist}:k:bad", planted)
            with pytest.raises(CacheMalformed, match="'bad'"):
                await cache.get("bad")
        assert store.counters["cache_malformed"] == 4
        assert await cache.get("good") == [1]  # the rest goes on
        # an update of it does not overwrite what it cannot read
        with pytest.raises(CacheMalformed):
            await cache.update("bad", lambda v: 1)


async def test_an_outage_is_cache_unavailable_counted_and_heals_by_itself(redis: RedisServer):
    async with one_store(f'url = "{redis.url}"\ntimeout = 300\n') as (cs, store):
        cache = cs["dist"]
        await cache.put("k", 1)
        redis.stop()
        for call in (cache.get("k"), cache.put("k", 2), cache.update("k", lambda n: n + 1),
                     cache.keys(), cache.delete("k")):  # fmt: skip
            with pytest.raises(CacheUnavailable, match="'dist'"):
                await call
        assert store.counters["cache_failures"] == 5 and store.counters["outages"] == 1
        assert store.down_since is not None
        redis.restart()
        assert await cache.get("k") == 1  # AOF kept it; the client reconnected by itself
        assert store.down_since is None


def test_workers_on_one_redis_share_caches_and_answer_503_while_it_is_down(stack: Stack):
    redis = RedisServer(stack.group, stack.tmp / "redis", free_port()).start()
    config = store_config(stack.tmp, f'url = "{redis.url}"\ntimeout = 300\n')
    app = "tests.integration.apps.caches:make_app"
    n1 = stack.start_worker("n1", "--cluster", config, "--app", app)
    n2 = stack.start_worker("n2", "--cluster", config, "--app", app)

    def post(port: int, path: str) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {"retry_after": exc.headers.get("Retry-After")}

    for i in range(10):
        assert post((n1, n2)[i % 2].port, "/c/dist/hits/incr")[0] == 200
    for worker in (n1, n2):
        for name in ("dist", "repl", "inval"):
            status, _, body = http_get(f"http://127.0.0.1:{worker.port}/c/{name}/hits")
            assert status == 200
            expected = 10 if name == "dist" else None
            assert json.loads(body)["value"] == expected, (worker.name, name, body)
    redis.stop()
    assert post(n1.port, "/c/dist/hits/incr") == (503, {"retry_after": "1"})
    status, _, _ = http_get(f"http://127.0.0.1:{n2.port}/c/dist/hits")
    assert status == 503
    _, _, metrics = http_get(f"http://127.0.0.1:{n1.port}/metrics")
    assert 'pyjk_worker_requests_refused_total{reason="cache"} 1.0' in metrics.decode()
    redis.restart()
    assert post(n2.port, "/c/dist/hits/incr") == (200, {"value": 11})


async def test_caches_on_a_redis_cluster_with_wait_replicas(group: ProcGroup, tmp_path: Path):
    kit = RedisClusterKit(group, tmp_path / "rc").start()
    nodes = ", ".join(f'"{n}"' for n in kit.nodes)
    where = f"nodes = [{nodes}]\nwait_replicas = 1\ntimeout = 2000\n"
    (app1, s1), (app2, s2) = (app_with_caches(where) for _ in range(2))
    try:
        a, b = caches(app1), caches(app2)
        names = ("dist", "repl", "inval", "b", "c")
        masters = {kit.master_of(f"pyjk:c:{{{n}}}:i").port for n in names}
        assert len(masters) == 3  # the caches sit on every master: a real cluster test
        for name in names:
            incr = [c[name].update("n", lambda n: n + 1, default=0) for c in (a, b) * 10]
            assert sorted(await asyncio.gather(*incr)) == list(range(1, 21))
            await a[name].put("t", "x", ttl=30)
            assert await b[name].keys() == ["n", "t"]
        assert s1.counters["wait_short"] == 0 and s1.counters["cache_failures"] == 0
    finally:
        await asyncio.gather(s1.stop(), s2.stop())
