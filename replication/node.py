"""One worker's cluster membership and replication: the asyncio shell around the pure parts.

`ClusterNode(config, manager, readiness)` then `install(app)` (before the app starts: sink,
commit observer, /cluster-manager), `await start()` (receiver, multicast, loops, state
transfer) and `await stop()` (shutdown announcement first). It reads sockets, asks the pure
objects — Membership, Replicator (with its Sequencer), Ledger — and writes their answers:

- heartbeats every `frequency` (multicast, and Hellos to static members); silence past
  `drop_time` → probe → drop; a shutdown heartbeat drops at once;
- each request's deltas are stamped and queued to every member while the request commits
  (CommitObserver), and the sink then waits for the acks in sync mode; a member that misses
  one within `ack_timeout` becomes a suspect;
- syncs (state transfer, gap recovery, rejoin) pull snapshots and hold readiness meanwhile;
  requests are refused (503) then, and a session id not held here is asked of the members
  before the request may go on without it (SessionPeers, worker/peers.py);
- anti-entropy, touches, replica expiry and housekeeping run on timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web
from prometheus_client.registry import Collector

from worker.cache_table import CacheError
from worker.caches import CACHES
from worker.delta import SessionDelta
from worker.failover import DORMANT
from worker.middleware import SessionManager
from worker.peers import Hold, Lookup
from worker.readiness import Readiness
from worker.singletons import SINGLETONS

from . import codec
from .cache import Caches
from .cache_codec import CacheReply, CacheReq
from .channel import Channel, Endpoint, Faults
from .codec import Ack, DeltaMsg, Heartbeat, Hello, Message, Pull, Touch
from .config import ClusterConfig
from .dist_sessions import DistributedSessions
from .election import Advert
from .endpoints import install_endpoints
from .keyfile import load_or_create_key
from .ledger import Ledger
from .mcast import Multicast
from .member_info import MemberInfo
from .membership import ALIVE, Joined, Left, Membership, Probe
from .membership import Event as MemberEvent
from .replay import record_of, replay_from
from .replicator import Replicator
from .seal import Kind, Opener, Sealer
from .singleton import SingletonRunner
from .syncing import Syncer

log = logging.getLogger("pyjk.cluster")
STATE_TRANSFER = "state-transfer"
RESYNC = "resync"
# readiness holds that mean "sessions may be missing or stale"; during a resync (one member's
# writes) sessions routed here are still complete: this node wrote them last
INCOMPLETE = {STATE_TRANSFER: Hold(STATE_TRANSFER), RESYNC: Hold(RESYNC, own_sessions=True)}
# failover mode: a dormant node serves nothing, though its sessions are complete
REFUSING = {**INCOMPLETE, DORMANT: Hold(DORMANT)}
LOOKUP_TIMEOUT = 1.0  # s, at most (ack_timeout if shorter): asking members for a session
CACHE_REBALANCE_RATE = 8 * 1024 * 1024  # bytes/s of cache copies a rebalance may send


class ClusterNode:
    def __init__(
        self,
        config: ClusterConfig,
        manager: SessionManager,
        readiness: Readiness,
        *,
        clock: Callable[[], float] = time.time,
        faults_enabled: bool = False,
    ) -> None:
        self.config, self.manager, self.readiness, self.clock = config, manager, readiness, clock
        self.store = manager.store
        self.counters: Counter[str] = Counter()
        self.state_transfer_seconds: float | None = None  # set when the start-up one ends
        self.faults, self.faults_enabled = Faults(), faults_enabled
        self.key = None if config.insecure else load_or_create_key(config.key_file)
        if self.key is None:
            log.warning("cluster=%s runs UNSEALED (insecure = true)", config.name)
        sender = secrets.token_bytes(16)
        started = clock()
        self.me = MemberInfo(sender.hex(), self.store.route, config.receiver_host, 1, started)
        epoch_ms = int(started * 1000)
        self.ledger = Ledger(
            ttl=config.dedup_ttl, max_entries=config.dedup_max_entries,
            max_bytes=config.dedup_max_bytes, max_body=config.dedup_max_body,
        )  # fmt: skip
        self.replicator = Replicator(self.store, self.me.id, ledger=self.ledger,
                                     counters=self.counters)  # fmt: skip
        self.membership = Membership(self.me, drop_time=config.drop_time)
        self.opener = Opener(self.key, max_skew=config.max_clock_skew)
        self._hb_sealer = Sealer(self.key, sender, epoch_ms, Kind.HEARTBEAT)
        self.channel = Channel(
            self, key=self.key, sender=sender, epoch_ms=epoch_ms, opener=self.opener,
            counters=self.counters, clock=clock, max_frame=config.max_frame,
            connect_timeout=config.probe_timeout, faults=self.faults,
        )  # fmt: skip
        self.syncer = Syncer(self)
        self.mcast = None
        if config.multicast:
            self.mcast = Multicast(config.group, config.mcast_port, config.interface, config.ttl)
        self.digest = "0" * 16
        self._prepared: dict[int, tuple[SessionDelta, dict[str, asyncio.Future[None]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.singletons: SingletonRunner | None = None  # the app's singletons, if it has any
        self.caches: Caches | None = None  # the app's cluster caches, if it has any
        self.dist: DistributedSessions | None = None  # sessions in distributed mode
        self._dead: set[str] = set()  # members whose last probe proved them gone (refused)

    # -- lifecycle ----------------------------------------------------------------------------
    def install(self, app: web.Application) -> None:
        install_endpoints(app, self)
        self.readiness.hold(STATE_TRANSFER)
        caches = app.get(CACHES)
        if caches or self.config.mode == "distributed":
            self.caches = Caches(
                self.me.id, self._cache_members, self._cache_request,
                timeout=self.config.ack_timeout, rate=CACHE_REBALANCE_RATE,
                counters=self.counters, clock=self.clock,
            )  # fmt: skip
            self.caches.install(caches or {})
        if self.config.mode == "distributed":
            assert self.caches is not None
            # each session is an entry of an internal distributed cache (dist_sessions.py)
            self.dist = DistributedSessions(
                self.config, self.manager, self.readiness, self.caches, spawn=self.spawn,
                counters=self.counters, clock=self.clock,
            )  # fmt: skip
            self.dist.install()
        else:
            self.manager.sink = self.sink
            self.manager.observer = self
            self.manager.peers = self
            # The owner expires its sessions and says so; replicas expire only through the
            # replicator's rules (owner gone, or 2x), never by the store's own factor.
            self.store.replica_grace = math.inf
        if specs := app.get(SINGLETONS):
            self.singletons = SingletonRunner(
                specs, member_id=self.me.id, route=self.me.route, started=self.me.start,
                drop_time=self.config.drop_time, frequency=self.config.frequency,
                clock=self.clock, counters=self.counters, announce=self._announce,
                may_start=self._complete,  # nothing starts before the state transfer
            )  # fmt: skip

    async def start(self) -> None:
        cfg = self.config
        port = await self.channel.start(cfg.receiver_host, cfg.receiver_port)
        self.me = replace(self.me, port=port)
        self.membership.me = self.me
        if self.mcast is not None:
            await self.mcast.start(self._datagram)
        log.info(
            "cluster node started cluster=%s id=%s route=%s receiver=%s:%d sealed=%s mode=%s",
            cfg.name, self.me.id, self.me.route, cfg.receiver_host, port,
            self.key is not None, cfg.send_mode,
        )  # fmt: skip
        self._heartbeat()
        loops: list[tuple[Callable[[], object], float]] = [
            (self._beat, cfg.frequency),
            (self._maintain, min(1.0, cfg.anti_entropy_interval)),
        ]
        if self.dist is None:  # all-to-all: touches, anti-entropy and the state transfer
            loops += [(self._touch, cfg.touch_interval),
                      (self.syncer.anti_entropy, cfg.anti_entropy_interval)]  # fmt: skip
            self._tasks.append(asyncio.create_task(self.syncer.state_transfer()))
        else:  # distributed: nothing to copy at start, the rebalance brings what it owns
            self._tasks.append(asyncio.create_task(self._settle()))
        for loop, every in loops:
            self._tasks.append(asyncio.create_task(self._every(loop, every)))
        if self.singletons is not None:
            self.singletons.start()
        if self.caches is not None:
            self.caches.start()

    async def _settle(self) -> None:
        """Distributed mode: ready once this node has heard the members (two heartbeat
        periods, as the state transfer waits): before, its view may lack a session's owner,
        and a session read as absent would be replaced by a new one."""
        started = time.monotonic()
        await asyncio.sleep(2 * self.config.frequency)
        self.state_transfer_seconds = time.monotonic() - started
        self.readiness.release(STATE_TRANSFER)
        log.info("sessions distributed owners=%d members=%d: ready",
                 self.config.owners, len(self.membership.members()) + 1)  # fmt: skip

    async def release_singletons(self) -> None:
        """Graceful: stop the singletons held here and tell the cluster (a handover)."""
        if self.singletons is not None:
            await self.singletons.release()

    @property
    def manager_token(self) -> str:
        return self.config.manager_token

    def collectors(self) -> Sequence[Collector]:
        """Replication's families for the worker's /metrics (SessionBackend)."""
        from .metrics import ReplicationCollector

        return (ReplicationCollector(self),)

    def advertise_http(self, host: str, port: int, lbfactor: int = 1) -> None:
        """Where this node serves HTTP, sent in every heartbeat from now on: balancers with a
        dynamic lb (worker.<lb>.cluster) add it as a member once its /-/ready answers 200."""
        self.me = replace(self.me, http_host=host, http_port=port, lbfactor=lbfactor)
        self.membership.me = self.me

    def announce_leaving(self) -> None:
        """A graceful stop began: say so at once (balancers give no new sessions here, sticky
        requests go on while the worker drains); stop() later announces the shutdown itself."""
        self.me = replace(self.me, leaving=True)
        self.membership.me = self.me
        self._heartbeat()

    async def stop(self) -> None:
        """Stop the singletons, announce the shutdown (peers drop this member at once), then
        close everything."""
        if self.singletons is not None:
            await self.singletons.close()
        if self.caches is not None:
            await self.caches.close()
        self._stopping = True
        self._heartbeat(shutdown=True)
        targets = {(m.info.host, m.info.port) for m in self.membership.members()}
        targets |= set(self.config.static_members)
        targets.discard((self.me.host, self.me.port))
        await asyncio.gather(*(self._announce_shutdown(h, p) for h, p in targets))
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.channel.close()
        if self.mcast is not None:
            self.mcast.close()
        log.info("cluster node stopped id=%s", self.me.id)

    async def _announce_shutdown(self, host: str, port: int) -> None:
        with contextlib.suppress(Exception):
            await self.channel.probe(host, port, self.config.probe_timeout, shutdown=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; it is cancelled at stop()."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("cluster background task failed: %r", exc, exc_info=exc)

    async def _every(self, step: Callable[[], object], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("cluster timer failed step=%s", getattr(step, "__name__", step))

    # -- heartbeats and membership ---------------------------------------------------------
    def _beat(self) -> None:
        self._heartbeat()
        self._handle(self.membership.tick(self.clock()))
        self._ping_static()

    def _announce(self) -> None:
        """An election change travels now: a heartbeat, and a Hello to each static member."""
        self._heartbeat()
        self._ping_static()

    def _ping_static(self) -> None:
        for host, port in self.config.static_members:
            if (host, port) != (self.me.host, self.me.port):
                self.spawn(self._ping(host, port))

    def _heartbeat(self, shutdown: bool = False) -> None:
        if self.mcast is None:
            return
        if self.faults.cut:
            self.counters["drop_fault_out"] += 1
            return
        advert = None if self.singletons is None else self.singletons.advert()
        hb = Heartbeat(self.config.name, self.me, self.replicator.seq, self.digest, shutdown,
                       advert)  # fmt: skip
        if self.mcast.send(self._hb_sealer.seal(codec.encode(hb), self.clock())):
            self.counters["heartbeats_out"] += 1

    def _datagram(self, data: bytes) -> None:
        if self.faults.cut:
            self.counters["drop_fault_in"] += 1
            return
        hb = codec.open_group_datagram(self.opener, data, self.clock(), self._dropped)
        if hb is None:
            return
        if isinstance(hb, codec.BalancerBeat):
            # a balancer of an active/standby pair: never a member, so never a replica, a
            # cache owner or a singleton owner (balancer/standby.py)
            self.counters["balancer_heartbeats_in"] += 1
            return
        if hb.cluster != self.config.name:
            self.counters["drop_foreign_cluster"] += 1
            return
        if hb.member.id == self.me.id:
            return
        self.counters["heartbeats_in"] += 1
        self._heard(hb.member, hb.seq, hb.digest, hb.shutdown, advert=hb.election)

    def _dropped(self, reason: str, _detail: str) -> None:
        self.counters[f"drop_{reason}"] += 1

    def _heard(
        self, info: MemberInfo, seq: int, digest: str, shutdown: bool, *, exact: bool = False,
        advert: Advert | None = None,
    ) -> None:  # fmt: skip
        now = self.clock()
        events = self.membership.heard(info, now, seq=seq, digest=digest, shutdown=shutdown)
        self._handle(events)
        if shutdown or info.id not in self.membership:
            return
        if self.singletons is not None:
            self.singletons.heard(info.id, info.route, info.start, advert)
        if self.dist is not None:  # distributed: no deltas, so no per-origin order to follow
            return
        joined = any(isinstance(e, Joined) for e in events)
        order = self.replicator.order
        if exact or joined:
            since = order.contact(info.id, seq)
        else:
            since = order.advertised(info.id, seq, now, self.config.ack_timeout)
        if since is not None:
            self.syncer.start(info, since)

    async def _ping(self, host: str, port: int) -> None:
        hello = await self.channel.probe(host, port, self.config.probe_timeout)
        if hello is not None:
            self.on_hello(hello, incoming=False)

    def _handle(self, events: Sequence[MemberEvent]) -> None:
        for event in events:
            if isinstance(event, Joined):
                m = event.member
                log.info("member joined id=%s route=%s at=%s:%d", m.id, m.route, m.host, m.port)
                if self.dist is not None:
                    self.dist.learn(m)
                if m.route == self.me.route:
                    log.warning("member id=%s has this node's route=%s: one of us is "
                                "misconfigured (routes must be unique)", m.id, m.route)  # fmt: skip
            elif isinstance(event, Left):
                m = event.member
                log.info("member left id=%s route=%s reason=%s", m.id, m.route, event.reason)
                self.syncer.member_left(m.id, forever=event.reason == "shutdown")
                if self.singletons is not None:
                    certain = event.reason == "shutdown" or m.id in self._dead
                    self.singletons.left(m.id, certain=certain)
                self._dead.discard(m.id)
                self.spawn(self.channel.drop_link(m.id, m.route))
            elif isinstance(event, Probe):
                self.spawn(self._probe(event.member))
        if events:
            self.syncer.progress.set()
            if self.caches is not None:
                self.caches.view_changed()

    async def _probe(self, member: MemberInfo) -> None:
        hello, refused = await self.channel.probe_verdict(
            member.host, member.port, self.config.probe_timeout
        )
        ok = hello is not None and hello.member.id == member.id
        if refused or (hello is not None and not ok):  # its process is gone, not cut off
            self._dead.add(member.id)
        self.counters["probes_ok" if ok else "probes_failed"] += 1
        self._handle(self.membership.probe_result(member.id, ok, self.clock()))

    # -- channel.Handler -----------------------------------------------------------------------
    def make_hello(
        self, to: str | None, *, reply: bool, first_seq: int | None = None, shutdown: bool = False
    ) -> Hello:
        seq = self.replicator.seq if first_seq is None else first_seq
        advert = None if self.singletons is None else self.singletons.advert()
        return Hello(
            self.config.name, self.me, seq, to, reply, shutdown or self._stopping, election=advert
        )

    def on_hello(self, hello: Hello, *, incoming: bool) -> bool:
        if hello.cluster != self.config.name:
            self.counters["drop_foreign_cluster"] += 1
            return False
        if hello.member.id == self.me.id:
            return False
        if hello.observer:  # a balancer reading who is here: answer a probe, add nothing
            self.counters["observer_probes"] += 1
            return hello.to is None and not hello.reply
        # A link from the member to us states exactly what it sent before it (ordering.py).
        exact = incoming and hello.to == self.me.id
        self._heard(hello.member, hello.seq, "", hello.shutdown, exact=exact,
                    advert=hello.election)  # fmt: skip
        return True

    def on_message(self, peer: MemberInfo, msg: Message, endpoint: Endpoint) -> None:
        now = self.clock()
        if isinstance(msg, DeltaMsg):
            received = self.replicator.receive(peer.id, msg, now)
            endpoint.write(Ack(msg.n))  # after applying (or buffering): "processed" semantics
            self.syncer.follow_up(peer, received)
        elif isinstance(msg, Pull):
            self.spawn(self.syncer.answer(peer, msg, endpoint))
        elif isinstance(msg, Touch):
            self.replicator.receive_touch(msg.items)
        elif isinstance(msg, CacheReq) and self.caches is not None:
            self.spawn(self._serve_cache(peer, msg, endpoint))
        else:
            self.counters["drop_unexpected"] += 1

    def on_link_lost(self, member_id: str) -> None:
        self.counters["links_lost"] += 1
        if self.caches is not None:  # a killed member's keys move now, not at its drop
            self.caches.view_changed()

    # -- cluster caches (cache.py) -------------------------------------------------------------
    def _cache_members(self) -> dict[str, MemberInfo]:
        """The members caches place keys on: the member table, less those whose link just
        failed (a killed member resets it at once; the table drops it only after drop_time).
        The exclusion lasts 2 x drop_time: by then it was dropped or must be tried again."""
        now = self.clock()
        out = {}
        for member in self.membership.members():
            failed = self.channel.last_failure(member.info.id)
            recent = failed is not None and now - failed < 2 * self.config.drop_time
            if not (recent and self.channel.link_down(member.info.id)):
                out[member.info.id] = member.info
        return out

    def _cache_request(self, info: MemberInfo, req: CacheReq) -> asyncio.Future[CacheReply]:
        return self.channel.link(info).request(req)

    async def _serve_cache(self, peer: MemberInfo, req: CacheReq, endpoint: Endpoint) -> None:
        assert self.caches is not None
        try:
            reply = self.caches.handle(peer, req)
            if not isinstance(reply, CacheReply):
                reply = await reply
        except CacheError as exc:  # e.g. no other owner answered: the asker gets an answer
            reply = CacheReply(req.n, False, error=str(exc)[:200])
        endpoint.write(reply)

    # -- CommitObserver and sink (worker.middleware) ----------------------------------------
    def replay(self, request_id: str) -> web.StreamResponse | None:
        return replay_from(self.ledger, request_id, self.clock(), self.counters)

    def committed(
        self, deltas: Sequence[SessionDelta], request_id: str | None, response: web.StreamResponse
    ) -> None:
        now = self.clock()
        record = record_of(request_id, response, now, max_body=self.config.dedup_max_body,
                           max_entries=self.config.dedup_max_entries)  # fmt: skip
        last = len(deltas) - 1
        for i, delta in enumerate(deltas):
            if i == last and record is not None:  # recorded here, attached to this write
                msg = self.replicator.local(delta, now, request_id, record)
            else:
                msg = self.replicator.local(delta, now)
            self._prepared[id(delta)] = (delta, self.broadcast(msg))

    async def sink(self, delta: SessionDelta) -> None:
        entry = self._prepared.pop(id(delta), None)
        if entry is not None and entry[0] is delta:
            futures = entry[1]
        else:  # not seen at commit (e.g. the expiry sweep): stamp and send now
            futures = self.broadcast(self.replicator.local(delta, self.clock()))
        if self.config.send_mode == "sync" and futures:
            await self._wait_acks(futures)

    def broadcast(self, msg: DeltaMsg) -> dict[str, asyncio.Future[None]]:
        """Queue `msg` to every member; the futures of those not under suspicion."""
        waited: dict[str, asyncio.Future[None]] = {}
        for member in self.membership.members():
            future = self.channel.link(member.info).send(msg)
            if future is None:
                continue
            future.add_done_callback(self._acked(member.info.id))
            if member.state == ALIVE:
                waited[member.info.id] = future
        self.counters["deltas_sent"] += 1
        return waited

    def _acked(self, member_id: str) -> Callable[[asyncio.Future[None]], None]:
        def done(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                self.membership.ack_seen(member_id)

        return done

    async def _wait_acks(self, futures: dict[str, asyncio.Future[None]]) -> None:
        await asyncio.wait(futures.values(), timeout=self.config.ack_timeout)
        now = self.clock()
        for member_id, future in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                continue
            self.counters["acks_missed"] += 1
            log.warning("ack missed member=%s; it is a suspect now", member_id)
            self._handle(self.membership.ack_missed(member_id, now))

    # -- SessionPeers (worker.peers) ----------------------------------------------------------
    def holding_back(self) -> Hold | None:
        held = self.readiness.waiting_for
        return next((hold for reason, hold in REFUSING.items() if reason in held), None)

    def _complete(self) -> bool:
        return not set(INCOMPLETE) & set(self.readiness.waiting_for)

    async def find(self, random_parts: Sequence[str]) -> Lookup:
        timeout = min(LOOKUP_TIMEOUT, self.config.ack_timeout)
        return await self.syncer.lookup(tuple(random_parts), timeout)

    async def refresh(self, random_parts: Sequence[str]) -> Lookup:
        timeout = min(LOOKUP_TIMEOUT, self.config.ack_timeout)
        return await self.syncer.refresh(tuple(random_parts), timeout)

    # -- timers --------------------------------------------------------------------------------
    def _maintain(self) -> None:
        now = self.clock()
        for session_id in self.replicator.reconcile(now):
            self.broadcast(
                self.replicator.local(SessionDelta(session_id, now, invalidated=True), now)
            )
        live = {self.me.route} | {m.info.route for m in self.membership.members()}
        slack = 2 * self.config.touch_interval + self.config.frequency
        self.replicator.expire_replicas(now, live, slack)
        self.ledger.expire(now)
        if self.caches is not None:
            self.caches.expire()
        self.digest = self.replicator.digest_hash()

    def _touch(self) -> None:
        items = self.replicator.touches()
        for start in range(0, len(items), 10_000):
            msg = Touch(tuple(items[start : start + 10_000]))
            for member in self.membership.members():
                self.channel.link(member.info).send(msg)

    def update_readiness(self) -> None:
        if self.syncer.running:
            self.readiness.hold(RESYNC)
        else:
            self.readiness.release(RESYNC)
