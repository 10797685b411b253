"""The app's cluster caches in Redis: `cluster_cache(...)` with `[store] kind = "redis"`.

With a Redis store, Redis holds the one shared copy of every cache whose mode is not `local`
(worker/caches.py): `distributed` and `replicated` (Redis, and its replicas, are the copies;
`owners` is not used) and `invalidated` too — a worker keeps no copy of its own, so there is
nothing to invalidate and no window in which a worker reads a value another has replaced. (A
local copy invalidated over pub/sub would save a read, but pub/sub delivers at most once: a
message lost in a reconnect would leave a stale copy for good.) `local` caches stay in the
worker (LocalBackend).

Layout (redis_codec.Keys): an entry is a string key `<prefix>:c:{<cache>}:k:<key>` holding the
value's canonical JSON, with a Redis TTL when the app gave one; the cache's index is a sorted
set `<prefix>:c:{<cache>}:i` of its keys scored by their expiry (ms, Redis's clock; +inf
without a TTL), for `keys()`, `size()` and `max_entries`. The hash tag puts a cache's entries
and index in one slot (on Redis Cluster: one master per cache), so each write is one Lua script
that changes both atomically:

- put and compare_and_set: one script (below): compare with the current value (cas), refuse a
  new key past max_entries, SET with PX, ZADD to the index;
- delete: DEL and ZREM in one script; get: a plain GET; keys: a script that drops the expired
  keys from the index (by its scores) and returns the rest.

Compare-and-set is atomic because the script runs whole on the key's master (no WATCH, no
retry loop in Redis); `update` is ClusterCache's get + compare-and-set loop. Values are checked
on the way in (the sessions' codec, at ClusterCache) and on the way out (cache_codec's strict
canonical-JSON check): a value planted in Redis that another program wrote is refused
(CacheMalformed), logged and counted, never decoded into the app. With `wait_replicas = 1` a
write returns only once a replica has it (WAIT), as for sessions.

Faults: a Redis error or a timeout (`[store] timeout`) raises CacheUnavailable (a
ConnectionError; an uncaught one becomes 503 `Retry-After: 1` in the session middleware), is
counted (`cache_failures`) and logged once per outage, shared with the sessions' outage
accounting; the client reconnects by itself on the next call. A write that failed this way
may still have been applied (as a session write that got no answer). A request whose retry
record could not be read (its first attempt may have written) has its cache writes refused as
its session writes are (CacheWriteRefused, a 503; `cache_writes_refused`) — those of the
`local` caches too, which stay on the node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from worker.cache_table import (
    CacheError,
    CacheFull,
    CacheUnavailable,
    check_value_size,
)
from worker.caches import ClusterCache, LocalBackend, limits_of
from worker.sessions import DEFAULT_MAX_ACTIVE_SESSIONS, DEFAULT_MAX_SESSION_BYTES

from .cache_codec import CacheWireError, value_text
from .redis_store import FAILURES, RedisStore

log = logging.getLogger("pyjk.store")

# KEYS[1] the entry, KEYS[2] the cache's index. ARGV: op ("p" put, "c" compare-and-set),
# expected present ("1") or absent ("0"), expected text, new text, ttl ms (0: none),
# max_entries, the key (the index's member). Returns 1 stored, 0 the value was not the
# expected one, -1 a new key past max_entries. At the limit, index members whose entry is
# gone (evicted by maxmemory, DEL by hand: no TTL tells the index) are dropped first, or the
# cache would stay "full" for good; one pass over the index (same slot: the hash tag), only
# when a new key finds it full.
WRITE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'c' then
  if ARGV[2] == '0' then
    if cur then return 0 end
  elseif cur ~= ARGV[3] then
    return 0
  end
end
if not cur and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  local base = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[7])
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('EXISTS', base .. member) == 0 then redis.call('ZREM', KEYS[2], member) end
  end
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return -1 end
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ttl)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[7])
else
  redis.call('SET', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], '+inf', ARGV[7])
end
return 1
"""

# KEYS[1] the entry, KEYS[2] the index; ARGV[1] the key. Returns 1 when a live entry went.
DELETE_SCRIPT = """
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

# KEYS[1] the index. The live keys (expired ones leave the index here).
KEYS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

SCRIPTS = (WRITE_SCRIPT, DELETE_SCRIPT, KEYS_SCRIPT)
# Redis names a script by the SHA-1 of its text (EVALSHA): an identifier, not a security use
WRITE_SHA, DELETE_SHA, KEYS_SHA = (hashlib.sha1(s.encode()).hexdigest() for s in SCRIPTS)


class CacheMalformed(CacheError, ValueError):
    """A value in Redis that is not the canonical JSON a put stores (another program's, or
    planted): refused, never decoded."""


class RedisCacheBackend:
    """One cache of the app, kept in Redis (worker.caches.CacheBackend)."""

    def __init__(
        self,
        store: RedisStore,
        name: str,
        *,
        max_entries: int = DEFAULT_MAX_ACTIVE_SESSIONS,
        max_value_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    ) -> None:
        self.store, self.name = store, name
        self.max_entries, self.max_value_bytes = max_entries, max_value_bytes
        self.index = store.keys.cache_index(name)

    def _entry(self, key: str) -> str:
        return self.store.keys.cache_entry(self.name, key)

    # -- CacheBackend -------------------------------------------------------------------------
    async def get(self, key: str, fresh: bool = False) -> str | None:
        entry = self._entry(key)
        (raw,) = await self._call(lambda pipe: pipe.get(entry), key=key)
        self.store.counters["cache_reads"] += 1
        if raw is None:
            return None
        try:
            text = value_text(raw.decode("utf-8"), "value")
        except (UnicodeDecodeError, CacheWireError) as exc:
            self.store.counters["cache_malformed"] += 1
            problem = f"cache {self.name!r} key {key!r} (Redis key {entry!r}): {exc}"
            log.error("cache value refused: %s", problem)
            raise CacheMalformed(f"malformed value in the cache store: {problem}") from None
        assert text is not None
        return text

    async def put(self, key: str, text: str, ttl: float | None) -> None:
        await self._write(key, "p", None, text, ttl)

    async def compare_and_set(
        self, key: str, expected: str | None, text: str, ttl: float | None
    ) -> bool:
        return await self._write(key, "c", expected, text, ttl)

    async def delete(self, key: str) -> bool:
        self.store.check_cache_write(self.name, key)
        keys = (self._entry(key), self.index)
        replies = await self._call(
            lambda pipe: pipe.evalsha(DELETE_SHA, 2, *keys, key), key=key, write=True
        )
        self.store.counters["cache_writes"] += 1
        return int(replies[0]) > 0

    async def keys(self) -> list[str]:
        (listed,) = await self._call(lambda pipe: pipe.evalsha(KEYS_SHA, 1, self.index))
        try:
            return sorted(k.decode("utf-8") for k in listed)
        except UnicodeDecodeError:  # a ZADD of another program's: not a key a put wrote
            self.store.counters["cache_malformed"] += 1
            raise CacheMalformed(f"cache {self.name!r}: its index holds a non-UTF-8 key") from None

    # -- inside -------------------------------------------------------------------------------
    async def _write(
        self, key: str, op: str, expected: str | None, text: str, ttl: float | None
    ) -> bool:
        check_value_size(self.name, key, text, self.max_value_bytes)
        self.store.check_cache_write(self.name, key)
        ttl_ms = 0 if ttl is None else max(1, math.ceil(ttl * 1000))
        keys = (self._entry(key), self.index)
        args = (op, "0" if expected is None else "1", expected or "", text, str(ttl_ms),
                str(self.max_entries), key)  # fmt: skip
        replies = await self._call(
            lambda pipe: pipe.evalsha(WRITE_SHA, 2, *keys, *args), key=key, write=True
        )
        result = int(replies[0])
        if result < 0:
            self.store.counters["cache_full"] += 1
            raise CacheFull(f"cache {self.name!r}: the limit (max_entries) is "
                            f"{self.max_entries} entries; key {key!r} not stored")  # fmt: skip
        self.store.counters["cache_writes"] += 1
        return result == 1

    async def _call(
        self, build: Callable[[Any], None], *, key: str | None = None, write: bool = False
    ) -> list[Any]:
        """One pipelined round trip (and WAIT after a write when wait_replicas = 1) within
        the store's timeout; a failure is CacheUnavailable, counted with the store's outage."""
        store = self.store
        try:
            async with asyncio.timeout(store.config.store_timeout):
                waits = await store.waits([self.index]) if write else []

                def queued(pipe: Any) -> None:
                    build(pipe)
                    store.queue_waits(pipe, waits)

                replies = await store.run(queued, SCRIPTS)
        except FAILURES as exc:
            store.failed("cache", exc)
            where = f"cache {self.name!r}" + (f" key {key!r}" if key is not None else "")
            raise CacheUnavailable(
                f"{where}: the Redis store did not answer ({exc!r}); retry later"
            ) from exc
        store.recovered()
        if not store.replicated(replies, waits):
            raise CacheUnavailable(f"cache {self.name!r} key {key!r}: written, but on no "
                                   "replica in time (wait_replicas = 1); retry later")  # fmt: skip
        return replies[: len(replies) - len(waits)]


def bind_caches(store: RedisStore, caches: Mapping[str, ClusterCache]) -> list[str]:
    """Bind every non-local cache of the app to Redis; the names bound."""
    bound = []
    for name, cache in caches.items():
        if cache.mode == "local":
            # kept on this node, but an unverified request's writes are refused here too, as
            # in distributed mode: its first attempt may have made them (on this node)
            if isinstance(local := cache.backend, LocalBackend):
                cache.bind(LocalBackend(local.table, local.clock,
                                        may_write=store.check_cache_write))  # fmt: skip
            continue
        cache.bind(RedisCacheBackend(store, name, **limits_of(cache)))
        bound.append(name)
    return bound
