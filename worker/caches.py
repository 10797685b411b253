"""Cluster caches for app code: named key/value caches in Infinispan's (Immutant's) modes.

    def make_app() -> web.Application:
        app = web.Application()
        counters = cluster_cache(app, "counters", mode="distributed", owners=2)

        async def hit(request: web.Request) -> web.Response:
            n = await counters.update("hits", lambda n: n + 1, default=0)
            return web.json_response({"hits": n})
        ...

Modes: `replicated` (every entry on every node), `distributed` (each entry on `owners` nodes
chosen by rendezvous hashing, replication/placement.py), `invalidated` (each node keeps its
own copy; a write evicts the others' copies before it returns) and `local` (this node only).
Outside a cluster (`pyjk-worker` without `--cluster`) every mode acts as `local`; in a
cluster the node binds each cache to its mode when it starts (`ClusterCache.bind`).

Values go through the sessions' codec (worker/values.py): JSON-safe types only, never pickle;
a value the codec refuses raises CacheValueError at `put` and nothing is stored or sent.
Every read returns a fresh copy. See docs/worker.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from . import values
from .cache_table import MAX_VALUE_TEXT, CacheError, CacheTable, TableLimits
from .names import NAME_RE

MODES = ("replicated", "distributed", "invalidated", "local")
MAX_KEY_LENGTH = 256
UPDATE_ATTEMPTS = 64  # compare-and-set rounds before update() gives up (CacheConflict)
_MISSING: Any = object()


class CacheValueError(CacheError, TypeError):
    """A key or value the cache cannot hold; says which cache, key and where in the value."""


class CacheConflict(CacheError):
    """update() lost the compare-and-set race UPDATE_ATTEMPTS times in a row."""


class CacheBackend(Protocol):
    """Where a cache's entries live: this node (LocalBackend) or the cluster in one mode
    (replication/cache.py). Values are canonical JSON texts; None means absent."""

    async def get(self, key: str, fresh: bool = False) -> str | None: ...
    async def put(self, key: str, text: str, ttl: float | None) -> None: ...
    async def delete(self, key: str) -> bool: ...
    async def compare_and_set(
        self, key: str, expected: str | None, text: str, ttl: float | None
    ) -> bool: ...
    async def keys(self) -> list[str]: ...


class LocalBackend:
    """One node's table, read and written at once (no other node is asked). `may_write`
    (cache name, key) raises when the request being served may not write (an external
    session store's rule: CacheWriteRefused, as for the caches it binds)."""

    SWEEP_EVERY = 1024  # writes between two expiry sweeps: TTL'd keys never read do not pile up

    def __init__(
        self,
        table: CacheTable,
        clock: Callable[[], float] = time.time,
        *,
        may_write: Callable[[str, str], None] | None = None,
    ) -> None:
        self.table, self.clock, self.may_write = table, clock, may_write
        self._writes = 0

    async def get(self, key: str, fresh: bool = False) -> str | None:
        return self.table.get(key, self.clock())  # the only copy: always fresh

    async def put(self, key: str, text: str, ttl: float | None) -> None:
        self._wrote(key)
        self.table.put(key, text, self.clock(), ttl)

    async def delete(self, key: str) -> bool:
        if self.may_write is not None:
            self.may_write(self.table.name, key)
        return self.table.delete(key, self.clock()) is not None

    async def compare_and_set(
        self, key: str, expected: str | None, text: str, ttl: float | None
    ) -> bool:
        self._wrote(key)
        return self.table.compare_and_set(key, expected, text, self.clock(), ttl) is not None

    async def keys(self) -> list[str]:
        return self.table.keys(self.clock())

    def _wrote(self, key: str) -> None:
        if self.may_write is not None:
            self.may_write(self.table.name, key)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self.table.expire(self.clock())


@dataclass(slots=True)
class CacheStats:
    """What the app asked of one cache on this node (the worker's /metrics)."""

    hits: int = 0
    misses: int = 0
    puts: int = 0
    deletes: int = 0
    conflicts: int = 0  # compare-and-set calls (or update rounds) that found another value
    rebalanced_keys: int = 0  # copies this node sent when members joined or left
    rebalanced_bytes: int = 0


class ClusterCache:
    """One named cache as the app sees it. Keys are str (1..256 chars); values JSON-safe."""

    def __init__(self, name: str, mode: str, owners: int, backend: CacheBackend) -> None:
        self.name, self.mode, self.owners = name, mode, owners
        self.backend = backend
        self.stats = CacheStats()

    def bind(self, backend: CacheBackend) -> None:
        """Serve from `backend` from now on (the cluster node, before the app starts)."""
        self.backend = backend

    async def get(self, key: str, default: Any = None) -> Any:
        text = await self.backend.get(self._key(key))
        if text is None:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        return values.decode(text)

    async def put(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store `value` (a fresh copy: later changes to the object are not seen); `ttl`
        seconds after which it reads as absent (None: it never expires)."""
        key, text, ttl = self._key(key), self._encode(key, value), _ttl(ttl)
        await self.backend.put(key, text, ttl)
        self.stats.puts += 1

    async def delete(self, key: str) -> bool:
        """Remove `key`; False if it was absent."""
        removed = await self.backend.delete(self._key(key))
        self.stats.deletes += removed
        return removed

    async def compare_and_set(
        self, key: str, expected: Any, value: Any, *, ttl: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (`ABSENT`: only if the key
        is absent). Equality is of the JSON forms, so 1 and 1.0 differ, as do dict orders."""
        key, text, ttl = self._key(key), self._encode(key, value), _ttl(ttl)
        want = None if expected is ABSENT else self._encode(key, expected)
        stored = await self.backend.compare_and_set(key, want, text, ttl)
        if stored:
            self.stats.puts += 1
        else:
            self.stats.conflicts += 1
        return stored

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _MISSING,
        ttl: float | None = None,
    ) -> Any:
        """Replace the value with `fn(value)` atomically (compare-and-set, retried when another
        writer came first; `fn` may run more than once, so keep it pure). An absent key reads
        as `default` (no default: KeyError). Returns the value stored."""
        key, ttl = self._key(key), _ttl(ttl)
        for attempt in range(UPDATE_ATTEMPTS):
            # after a lost compare-and-set, read what the primary compares against: this
            # node's own copy may be one the primary has moved past (missed while cut off)
            current = await self.backend.get(key, fresh=attempt > 0)
            if current is None and default is _MISSING:
                raise KeyError(key)
            value = fn(default if current is None else values.decode(current))
            text = self._encode(key, value)
            if await self.backend.compare_and_set(key, current, text, ttl):
                self.stats.puts += 1
                return values.decode(text)
            self.stats.conflicts += 1
        raise CacheConflict(
            f"cache {self.name!r} key {key!r}: {UPDATE_ATTEMPTS} updates in a row lost to "
            "other writers"
        )

    async def keys(self) -> list[str]:
        """Every live key (distributed: asks the members; meant for small caches)."""
        return await self.backend.keys()

    async def size(self) -> int:
        return len(await self.backend.keys())

    def _key(self, key: object) -> str:
        if type(key) is not str or not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise CacheValueError(
                f"cache {self.name!r}: keys are str of 1 to {MAX_KEY_LENGTH} characters, "
                f"found {type(key).__name__} {str(key)[:40]!r}"
            )
        return key

    def _encode(self, key: str, value: object) -> str:
        try:
            return values.encode("value", value)
        except values.AttributeValueError as exc:
            raise CacheValueError(
                f"cache {self.name!r} key {key!r}: {exc.path}: {exc.problem}"
            ) from None


def limits_of(cache: ClusterCache) -> TableLimits:
    """The limits the app gave cluster_cache (kept by the local table until a cluster binds
    the cache), for the backend that takes over."""
    local = cache.backend
    if not isinstance(local, LocalBackend):
        return {}
    return {"max_entries": local.table.max_entries,
            "max_value_bytes": local.table.max_value_bytes}  # fmt: skip


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # compare_and_set(key, ABSENT, value): store only if the key is absent


def _ttl(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    if type(ttl) not in (int, float) or not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a finite number of seconds > 0, found {ttl!r}")
    return float(ttl)


CACHES: web.AppKey[dict[str, ClusterCache]] = web.AppKey("pyjk.caches", dict)


def cluster_cache(
    app: web.Application,
    name: str,
    *,
    mode: str = "distributed",
    owners: int = 2,
    max_entries: int | None = None,
    max_value_bytes: int | None = None,
) -> ClusterCache:
    """The cache `name` of this app, created on first call (a second call with the same
    settings returns the same cache). Local until a cluster node binds it."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"cache name {name!r}: expected {NAME_RE.pattern}")
    if name.startswith("pyjk."):
        raise ValueError(f"cache name {name!r}: names starting with 'pyjk.' are pyjk's own")
    if max_value_bytes is not None and not 1 <= max_value_bytes <= MAX_VALUE_TEXT:
        raise ValueError(
            f"cache {name!r}: max_value_bytes must be 1..{MAX_VALUE_TEXT} (the largest value "
            f"a cache frame carries between nodes), found {max_value_bytes!r}"
        )
    if mode not in MODES:
        raise ValueError(f"cache {name!r}: mode {mode!r} is not one of {', '.join(MODES)}")
    if type(owners) is not int or owners < 1:
        raise ValueError(f"cache {name!r}: owners must be an int >= 1, found {owners!r}")
    caches: dict[str, ClusterCache] = app.setdefault(CACHES, {})
    cache = caches.get(name)
    if cache is not None:
        if (cache.mode, cache.owners) != (mode, owners):
            raise ValueError(
                f"cache {name!r} exists as mode={cache.mode} owners={cache.owners}, "
                f"asked for mode={mode} owners={owners}"
            )
        return cache
    limits: TableLimits = {}
    if max_entries is not None:
        limits["max_entries"] = max_entries
    if max_value_bytes is not None:
        limits["max_value_bytes"] = max_value_bytes
    # the writer id of a local table only orders its own writes; a cluster binds its own
    table = CacheTable(name, writer="local", **limits)
    caches[name] = ClusterCache(name, mode, owners, LocalBackend(table))
    return caches[name]
