"""Sessions in Redis or Redis Cluster: the asyncio shell of `[store] kind = "redis"`.

A `SessionBackend` (worker/backend.py) beside the built-in cluster. Workers do not replicate
among themselves; every request reads its sessions from Redis and writes what it changed:

- before the handler (`load`, SessionLoader): one pipelined round trip runs the load script
  for each session the request names (HGETALL, TTL restarted) and reads its request id's
  recorded response; they go into the local store and the local ledger, so the middleware,
  the takeover (route rewrite) and the exactly-once replay work as on any node;
- at commit (`committed`, CommitObserver): the request's deltas (and its response's record on
  the last one) become write-script calls (redis_codec.py); the sink sends them in one
  pipelined round trip, followed by `WAIT 1` on the same connection when `wait_replicas = 1`;
- after the request (`release`): the local copies no other request has open are forgotten.

Faults: any Redis error or a timeout (`[store] timeout`) means "not known": a load answers
503 (never a new empty session for an id that may exist) and a write raises SessionNotSaved
(503, the change is not acknowledged; its retry finds the record if the write did land). The
first failure of an outage is logged, the recovery too, and both are counted; the client
reconnects by itself on the next request. MOVED/ASK and the slot map are the `redis` client's.
A malformed hash or record is refused by the codec (StoreFormatError), logged and counted,
and the request gets 503: the session is neither used nor replaced.

The app's cluster caches (all but `local`) are bound to Redis at install (redis_cache.py),
sharing this store's client, timeout, outage accounting and WAIT; with a `[membership]`
section the worker announces itself to dynamic lbs (announcer.py), replicating nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as RedisNode
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from worker.backend import SessionNotSaved
from worker.cache_table import CacheWriteRefused
from worker.caches import CACHES
from worker.delta import SessionDelta
from worker.middleware import SessionManager
from worker.peers import ABSENT, FOUND, UNKNOWN, Lookup
from worker.readiness import Readiness
from worker.session_ids import split_session_id
from worker.singletons import SINGLETONS

from .announcer import Announcer
from .config import ClusterConfig
from .ledger import Ledger, RecordedResponse
from .planned_writes import Plan, PlannedWrites
from .redis_codec import (
    LOAD_SCRIPT,
    WRITE_SCRIPT,
    Keys,
    StoreFormatError,
    Write,
    loose_record_write,
    pairs,
    record_from,
    state_from,
    write_of,
)
from .replay import Unverified, record_of, replay_from

log = logging.getLogger("pyjk.store")
# Redis names a script by the SHA-1 of its text (EVALSHA): an identifier, not a security use
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
LOAD_SHA = hashlib.sha1(LOAD_SCRIPT.encode()).hexdigest()

MAX_LOAD_IDS = 4  # as worker/peers.py: more ids in one request are not worth a read each
FAILURES = (RedisError, OSError, TimeoutError)


class StoreSetupError(ValueError):
    """The store's settings cannot be used (e.g. an unreadable password file)."""


def read_password(config: ClusterConfig) -> str | None:
    if config.store_password_file is not None:
        try:
            return config.store_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StoreSetupError(
                f"store.password_file {config.store_password_file}: {exc.strerror}"
            ) from None
    if config.store_password_env:
        value = os.environ.get(config.store_password_env)
        if value is None:
            raise StoreSetupError(f"store.password_env: ${config.store_password_env} is not set")
        return value
    return None


def make_client(config: ClusterConfig) -> Any:
    """The `redis` client for `config`: RedisCluster for `nodes`, Redis for `url`."""
    common: dict[str, Any] = {
        "password": read_password(config),
        "socket_timeout": config.store_timeout,
        "socket_connect_timeout": config.store_timeout,
    }
    if config.store_nodes:
        nodes = [RedisNode(host, port) for host, port in config.store_nodes]
        # the cluster client retries a moved or failed-over slot itself, after a refresh of
        # the slot map; bounded so a request does not outlive store.timeout by much
        return RedisCluster(
            startup_nodes=nodes, ssl=config.store_tls, retry=Retry(NoBackoff(), 3), **common
        )
    url = config.store_url
    if config.store_tls and url.startswith("redis://"):
        # from_url picks the connection class by the scheme alone (an ssl=True keyword is
        # dropped: the client would connect in clear): `tls = true` means rediss://
        url = "rediss://" + url[len("redis://") :]
    # no retries: a request that cannot reach Redis is answered 503 at once (it is retried)
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common)


class RedisStore:
    """The Redis backend of one worker (see the module docstring)."""

    def __init__(
        self,
        config: ClusterConfig,
        manager: SessionManager,
        readiness: Readiness,
        *,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        self.config, self.manager, self.readiness, self.clock = config, manager, readiness, clock
        self.store = manager.store
        self.keys = Keys(config.store_key_prefix)
        self.client = client if client is not None else make_client(config)
        self.cluster = isinstance(self.client, RedisCluster)
        # records read for requests in flight (a replay is answered from here, synchronously),
        # within [exactly_once]'s bounds; the records in Redis are bounded by their TTL
        self.ledger = Ledger(
            ttl=config.dedup_ttl, max_entries=config.dedup_max_entries,
            max_bytes=config.dedup_max_bytes, max_body=config.dedup_max_body,
        )  # fmt: skip
        self.counters: Counter[str] = Counter()
        self.down_since: float | None = None
        self._planned: PlannedWrites[Write] = PlannedWrites(self._write)
        # request ids served without knowing whether an earlier attempt wrote (their record
        # could not be read): they may run, but may not write (see `load`)
        self._unverified = Unverified()
        # membership only (announcer.py): dynamic lbs find this worker by its heartbeats
        self.announcer: Announcer | None = None
        if "membership" in config.sections:
            self.announcer = Announcer(config, manager.route, clock=clock)

    manager_token = property(lambda self: self.config.manager_token)

    def check_cache_write(self, cache: str, key: str) -> None:
        """CacheWriteRefused (counted) when the request being served (or a task its handler
        spawned) may not write the app's caches: its retry record could not be read (see
        `load`), so its first attempt may have made this very write, as its session writes
        — a put or an update applied twice is not what the client asked for."""
        if (why := self._unverified.cache_refusal()) is not None:
            self.counters["cache_writes_refused"] += 1
            raise CacheWriteRefused(f"cache {cache!r} key {key!r}: {why}; retry later")

    # -- SessionBackend ----------------------------------------------------------------------
    def install(self, app: web.Application) -> None:
        if app.get(SINGLETONS):
            # singletons (and --failover) are elected over the built-in cluster's membership;
            # a Redis store has none, so every node would run them: refuse instead
            raise StoreSetupError(
                "singletons and --failover need the built-in cluster (its election); "
                '[store] kind = "redis" has no membership to elect over'
            )
        self.manager.sink = self.sink
        self.manager.observer = self
        self.manager.loader = self
        if caches := app.get(CACHES):
            from .redis_cache import bind_caches  # it builds on this module

            bound = bind_caches(self, caches)
            log.info("cluster caches in redis: %s", ",".join(bound) or "none (all local)")

    async def start(self) -> None:
        where = self.config.store_url or ",".join(f"{h}:{p}" for h, p in self.config.store_nodes)
        try:
            async with asyncio.timeout(self.config.store_timeout * 3):
                await self.client.ping()
        except FAILURES as exc:
            # not fatal: requests get 503 until it answers, and the client reconnects itself
            self.failed("ping", exc)
        if self.announcer is not None:
            await self.announcer.start()
        log.info(
            "session store redis=%s cluster=%s wait_replicas=%d",
            where, self.cluster, self.config.store_wait_replicas,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.announcer is not None:
            await self.announcer.stop()
        await self.client.aclose()

    def advertise_http(self, host: str, port: int, lbfactor: int = 1) -> None:
        if self.announcer is not None:  # else: static balancer members only
            self.announcer.advertise_http(host, port, lbfactor)

    def announce_leaving(self) -> None:
        if self.announcer is not None:
            self.announcer.announce_leaving()

    async def release_singletons(self) -> None:
        return None  # install() refused singletons

    def collectors(self) -> Sequence[Collector]:
        return (StoreCollector(self),)

    # -- SessionLoader ------------------------------------------------------------------------
    async def load(self, session_ids: Sequence[str], request_id: str | None) -> Lookup:
        self._unverified.serving(request_id)
        wanted: list[str] = []
        for session_id in session_ids:
            parts = split_session_id(session_id)
            if parts is not None and parts[0] not in wanted:
                wanted.append(parts[0])
        wanted = wanted[:MAX_LOAD_IDS]
        if not wanted and request_id is None:
            return ABSENT
        rid = request_id or "-"
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.store_timeout):

                def build(pipe: Any) -> None:
                    for rp in wanted:
                        keys = (self.keys.session(rp), self.keys.record(rp, rid))
                        pipe.evalsha(LOAD_SHA, 2, *keys)
                    if request_id is not None:
                        pipe.get(self.keys.loose_record(request_id))

                replies = await self.run(build)
        except FAILURES as exc:
            self.failed("read", exc)
            if wanted or request_id is None:
                return UNKNOWN  # a session it cannot read: 503, never a new empty one
            # Only the request id's record was asked (no session cookie). The request may run
            # (a page that needs no session is served while Redis is down), but it may not
            # write: its first attempt may have written, and recorded its response, just
            # before the store went away, and the store may be back by the time this one
            # writes — `committed` refuses its writes (503), so none is applied twice.
            self._unverified.add(request_id)
            return ABSENT
        self.recovered()
        self._unverified.discard(request_id)
        self.counters["loads"] += 1
        self.counters["load_seconds_sum_us"] += int((time.monotonic() - started) * 1e6)
        now = self.clock()
        found = False
        try:
            for rp, reply in zip(wanted, replies, strict=False):
                fields, record = reply
                key = self.keys.session(rp)
                if record is not None and request_id is not None:
                    self._remember(request_id, record_from(key, record, self.config.dedup_max_body))
                if fields:
                    state = state_from(key, rp, pairs(fields), now)
                    if self.store.forget(rp):  # not open here: the store's version is newer
                        self.store.install(state)
                    found = True
            if request_id is not None and replies[-1] is not None:
                loose = self.keys.loose_record(request_id)
                self._remember(
                    request_id, record_from(loose, replies[-1], self.config.dedup_max_body)
                )
        except (StoreFormatError, ValueError, TypeError) as exc:
            self.counters["malformed"] += 1
            log.error("session store value refused: %s", exc)
            return UNKNOWN
        return FOUND if found else ABSENT

    def release(self, random_parts: Sequence[str]) -> None:
        for rp in random_parts:
            self.store.forget(rp)

    # -- CommitObserver and sink --------------------------------------------------------------
    def replay(self, request_id: str) -> web.StreamResponse | None:
        return replay_from(self.ledger, request_id, self.clock(), self.counters)

    def committed(
        self, deltas: Sequence[SessionDelta], request_id: str | None, response: web.StreamResponse
    ) -> None:
        now = self.clock()
        record = record_of(request_id, response, now, max_body=self.config.dedup_max_body,
                           max_entries=self.config.dedup_max_entries)  # fmt: skip
        writes = []
        last = len(deltas) - 1
        for i, delta in enumerate(deltas):
            if i == last and record is not None:
                writes.append(write_of(self.keys, delta, request_id=request_id, record=record,
                                       record_ttl=self.config.dedup_ttl))  # fmt: skip
                if request_id is not None and (delta.created is not None or delta.invalidated):
                    # a retry without the new cookie finds the record here
                    writes.append(loose_record_write(self.keys, request_id, record,
                                                     self.config.dedup_ttl))  # fmt: skip
            else:
                writes.append(write_of(self.keys, delta))
            if delta.replaces is not None:  # a rotation: the old id ends once the new one is in
                ended = SessionDelta(delta.replaces, delta.at, invalidated=True)
                writes.append(write_of(self.keys, ended))
        self._planned.plan(deltas, Plan(writes, refused=self._unverified.refusal(request_id)))

    async def sink(self, delta: SessionDelta) -> None:
        plan = self._planned.take(delta)
        if plan is None:  # not seen at commit (an expiry sweep)
            plan = Plan([write_of(self.keys, delta)])
        if plan.refused is not None:
            self.counters["writes_refused"] += 1
        await self._planned.send(plan)

    async def _write(self, writes: list[Write]) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.store_timeout):
                waits = await self.waits([w.keys[0] for w in writes])

                def build(pipe: Any) -> None:
                    for w in writes:
                        if w.script:
                            pipe.evalsha(WRITE_SHA, 2, *w.keys, *w.args)
                        else:
                            pipe.set(w.keys[0], w.args[0], px=int(w.args[1]))
                    self.queue_waits(pipe, waits)

                replies = await self.run(build)
        except FAILURES as exc:
            self.failed("write", exc)
            raise SessionNotSaved(f"session store write failed: {exc!r}") from exc
        self.recovered()
        if not self.replicated(replies, waits):
            raise SessionNotSaved("the write reached no replica in time (wait_replicas = 1)")
        self.counters["writes"] += 1
        self.counters["write_bytes"] += sum(w.size for w in writes)
        self.counters["write_seconds_sum_us"] += int((time.monotonic() - started) * 1e6)

    # -- internals ---------------------------------------------------------------------------
    async def run(
        self, build: Callable[[Any], None], scripts: Sequence[str] = (WRITE_SCRIPT, LOAD_SCRIPT)
    ) -> list[Any]:
        """One pipelined round trip of the commands `build` queues. Scripts go by digest
        (EVALSHA: their text is not sent with every request); a node that lacks them (restarted,
        or a replica just promoted: SCRIPT LOAD is not replicated) gets them, and the pipeline
        runs once more. Every command in it is idempotent (absolute HSET/HDEL/SET values, reads,
        WAIT), so running it again is safe."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            try:
                replies: list[Any] = await pipe.execute()
                return replies
            except NoScriptError:
                if attempt == 2:
                    raise
                self.counters["scripts_loaded"] += 1
                for script in scripts:
                    await self.client.script_load(script)  # every master, in a cluster
        raise AssertionError("unreachable")

    async def waits(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """One WAIT per node written to (a rotation's two sessions may sit on two masters):
        what `queue_waits` sends after the writes to `keys`, when wait_replicas = 1."""
        if self.config.store_wait_replicas < 1:
            return []
        if not self.cluster:
            return [{}]
        await self.client.initialize()  # the slot map (a no-op once known): WAIT goes by node
        nodes = {}
        for key in keys:
            node = self.client.get_node_from_key(key)
            nodes[node.name] = node
        return [{"target_nodes": node} for node in nodes.values()]

    def queue_waits(self, pipe: Any, waits: list[dict[str, Any]]) -> None:
        wait_ms = max(1, int(self.config.store_timeout * 500))
        for target in waits:
            # on the connection that wrote: WAIT counts that connection's writes
            pipe.execute_command("WAIT", self.config.store_wait_replicas, wait_ms, **target)

    def replicated(self, replies: list[Any], waits: list[dict[str, Any]]) -> bool:
        """Whether every WAIT at the end of `replies` saw the writes on a replica (counted
        and logged when not)."""
        acks = [_acks(reply) for reply in replies[len(replies) - len(waits) :]]
        if all(n >= self.config.store_wait_replicas for n in acks):
            return True
        self.counters["wait_short"] += 1
        log.warning("store write not on a replica in time (WAIT answered %r)", acks)
        return False

    def _remember(self, request_id: str, record: RecordedResponse) -> None:
        self.ledger.put(request_id, record, self.clock())

    def failed(self, what: str, exc: BaseException) -> None:
        self.counters[f"{what}_failures"] += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.counters["outages"] += 1
            log.error("session store unreachable op=%s error=%r; requests that need a session "
                      "get 503 until it answers", what, exc)  # fmt: skip

    def recovered(self) -> None:
        if self.down_since is not None:
            log.warning("session store reachable again after %.1f s",
                        time.monotonic() - self.down_since)  # fmt: skip
            self.down_since = None


def _acks(reply: Any) -> int:
    if isinstance(reply, dict):  # a cluster client may answer per node
        return min((int(v) for v in reply.values()), default=0)
    return int(reply)


class StoreCollector(Collector):
    """The Redis store's families on the worker's /metrics."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counters = self.store.counters
        up = GaugeMetricFamily("pyjk_store_up", "1 when the last session store call succeeded")
        up.add_metric([], 0 if self.store.down_since is not None else 1)
        yield up
        events = CounterMetricFamily(
            "pyjk_store_events", "session store events (loads, writes, failures, malformed, "
            "outages, replays, writes not on a replica in time, session and cache writes refused "
            "after an unread retry record)", labels=["event"],
        )  # fmt: skip
        for name in ("loads", "writes", "read_failures", "write_failures", "ping_failures",
                     "malformed", "outages", "replays_answered", "wait_short", "writes_refused",
                     "scripts_loaded", "cache_reads", "cache_writes", "cache_failures",
                     "cache_malformed", "cache_full", "cache_writes_refused"):  # fmt: skip
            events.add_metric([name], counters[name])
        yield events
        sent = CounterMetricFamily("pyjk_store_write_bytes", "bytes of keys and values written")
        sent.add_metric([], counters["write_bytes"])
        yield sent
