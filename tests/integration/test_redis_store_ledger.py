"""The Redis store's exactly-once ledger against a real redis-server, driven in-process: a
read that fails is never "not seen" for a request id, and `[exactly_once] max_entries` bounds
what the store keeps (0: nothing is recorded)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from replication.config import parse_cluster_config
from replication.ledger import RecordedResponse
from replication.redis_codec import Keys, loose_record_write
from replication.redis_store import RedisStore
from tests.integration.redis_kit import RedisServer, cli, needs_redis
from tests.support.procs import ProcGroup, free_port
from worker import setup_sessions
from worker.backend import SessionNotSaved
from worker.cache_table import CacheWriteRefused
from worker.caches import cluster_cache
from worker.delta import SessionDelta
from worker.peers import ABSENT, FOUND, UNKNOWN
from worker.readiness import Readiness

pytestmark = [pytest.mark.integration, needs_redis]

RP = "0123456789ABCDEF0123456789ABCDEF"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    group = ProcGroup(tmp_path)
    try:
        yield RedisServer(group, tmp_path / "redis", free_port()).start()
    finally:
        group.stop_all()


def make_store(url: str, extra: str = "", app: web.Application | None = None) -> RedisStore:
    config = parse_cluster_config(
        f'[store]\nkind = "redis"\nurl = "{url}"\ntimeout = 300\n{extra}', "/tmp/c.toml"
    )
    manager = setup_sessions(web.Application(), route="n1")
    store = RedisStore(config, manager, Readiness())
    store.install(web.Application() if app is None else app)
    return store


async def plant_record(store: RedisStore, request_id: str) -> None:
    record = RecordedResponse(200, (("Content-Type", "text/plain"),), b"done", store.clock())
    write = loose_record_write(Keys("pyjk"), request_id, record, 60.0)
    await store.client.set(write.keys[0], write.args[0], px=int(write.args[1]))


async def test_a_failed_read_of_a_session_is_unknown_never_absent(redis):
    store = make_store(redis.url)
    try:
        redis.stop()
        assert await store.load([f"{RP}.n1"], "rid-1") == UNKNOWN
        assert await store.load([f"{RP}.n1"], None) == UNKNOWN
        assert store.counters["read_failures"] == 2
    finally:
        await store.stop()


def created_delta(store: RedisStore) -> SessionDelta:
    return SessionDelta(f"{RP}.n1", store.clock(), created=store.clock(),
                        max_inactive=60.0, set_attributes=(("n", "1"),))  # fmt: skip


async def test_a_request_whose_retry_record_could_not_be_read_runs_but_never_writes(redis):
    store = make_store(redis.url)
    try:
        redis.stop()
        # No session named: the request may run (a page needing no session is served while
        # Redis is down), but its first attempt may have written just before Redis went away
        assert await store.load([], "rid-1") == ABSENT
        redis.restart()  # ... and Redis is back by the time this attempt writes
        delta = created_delta(store)
        store.committed([delta], "rid-1", web.Response(text="again"))
        with pytest.raises(SessionNotSaved):
            await store.sink(delta)
        assert cli(redis.port, "--scan", "--pattern", "pyjk:*").split() == []  # nothing written
        assert store.counters["writes_refused"] == 1
        # the next attempt reads its record: the first attempt's answer is replayed
        await plant_record(store, "rid-1")
        assert await store.load([], "rid-1") == ABSENT  # no session named: none found
        assert store.replay("rid-1") is not None
        # a request id whose record was read may write
        assert await store.load([], "rid-2") == ABSENT
        delta = created_delta(store)
        store.committed([delta], "rid-2", web.Response(text="1"))
        await store.sink(delta)
        assert await store.load([f"{RP}.n1"], None) == FOUND
    finally:
        await store.stop()


async def test_a_request_whose_retry_record_could_not_be_read_writes_no_cache_either(redis):
    # Its first attempt may have run the same update just before Redis went away: applied a
    # second time, a counter would count one click twice. Its cache writes are refused (503)
    # as its session writes are, even with Redis back; other requests write as usual.
    app = web.Application()
    counters = cluster_cache(app, "counters", mode="distributed")
    store = make_store(redis.url, app=app)
    try:
        redis.stop()

        async def unverified_request() -> None:  # one request's task: load, then its handler
            assert await store.load([], "rid-1") == ABSENT
            redis.restart()
            with pytest.raises(CacheWriteRefused):
                await counters.update("hits", lambda n: n + 1, default=0)
            with pytest.raises(CacheWriteRefused):
                await counters.put("last", "rid-1")
            with pytest.raises(CacheWriteRefused):
                await counters.delete("last")
            assert await counters.get("hits") is None  # reads are served

        await asyncio.create_task(unverified_request())
        assert cli(redis.port, "--scan", "--pattern", "pyjk:*").split() == []  # nothing written
        assert store.counters["cache_writes_refused"] == 3

        async def verified_request(request_id: str) -> int:
            assert await store.load([], request_id) == ABSENT
            return await counters.update("hits", lambda n: n + 1, default=0)

        assert await asyncio.create_task(verified_request("rid-2")) == 1
        assert await asyncio.create_task(verified_request("rid-1")) == 2  # its record read: may
    finally:
        await store.stop()


@pytest.mark.parametrize("mode", ["distributed", "local"])
async def test_through_the_middleware_an_unverified_requests_cache_write_is_a_503(
    redis, aiohttp_client, mode
):
    # the same, end to end in aiohttp: the store's load marks the request, the handler that
    # runs next in that request's task has its cache write refused, the client gets 503.
    # A `local` cache (on this node, not in Redis) too, as in distributed mode: its first
    # attempt may have written it here (on the old code the write went through: n 2 then 3)
    app = web.Application()
    manager = setup_sessions(app, route="n1")
    counters = cluster_cache(app, "counters", mode=mode)

    async def hit(request: web.Request) -> web.Response:
        if request.query.get("redis") == "back":
            redis.restart()  # Redis returns between this request's load and its write
        n = await counters.update("hits", lambda n: n + 1, default=0)
        return web.json_response({"n": n})

    app.router.add_post("/hit", hit)
    config = parse_cluster_config(
        f'[store]\nkind = "redis"\nurl = "{redis.url}"\ntimeout = 300\n', "/tmp/c.toml"
    )
    store = RedisStore(config, manager, Readiness())
    store.install(app)
    client = await aiohttp_client(app)
    try:
        redis.stop()
        first = await client.post("/hit?redis=back", headers={"X-Pyjk-Request-Id": "rid-1"})
        assert first.status == 503 and first.headers["Retry-After"] == "1"
        other = await client.post("/hit", headers={"X-Pyjk-Request-Id": "rid-2"})
        assert other.status == 200 and await other.json() == {"n": 1}
        retry = await client.post("/hit", headers={"X-Pyjk-Request-Id": "rid-1"})
        assert retry.status == 200 and await retry.json() == {"n": 2}  # applied once
        assert store.counters["cache_writes_refused"] == 1
    finally:
        await store.stop()


async def test_the_local_ledger_keeps_at_most_exactly_once_max_entries(redis):
    store = make_store(redis.url, "[exactly_once]\nmax_entries = 2\n")
    try:
        for i in range(5):
            await plant_record(store, f"rid-{i}")
            await store.load([], f"rid-{i}")
        assert len(store.ledger) == 2  # the two newest
        assert store.replay("rid-4") is not None and store.replay("rid-0") is None
    finally:
        await store.stop()


async def test_max_entries_0_records_nothing_in_redis(redis):
    store = make_store(redis.url, "[exactly_once]\nmax_entries = 0\n")
    try:
        created = SessionDelta(f"{RP}.n1", store.clock(), created=store.clock(),
                               max_inactive=60.0, set_attributes=(("n", "1"),))  # fmt: skip
        store.committed([created], "rid-9", web.Response(text="1"))
        await store.sink(created)
        assert await store.load([f"{RP}.n1"], "rid-9") == FOUND
        keys = cli(redis.port, "--scan", "--pattern", "pyjk:*").split()
        assert keys == [f"pyjk:{{{RP}}}"]  # the session only: no record, loose or attached
    finally:
        await store.stop()
