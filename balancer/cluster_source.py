"""The receive-only listener behind a dynamic lb: heartbeats in, member changes out.

One per lb with ``worker.<lb>.cluster``. It joins the cluster's multicast group and opens each
datagram with the cluster key (``replication.codec.open_datagram``: sealed, fresh, not a
replay, from the sender it names). What passes feeds the workers' own pure membership table
(``replication.membership``), whose joins and drops feed the lb's ``DynamicLb``. The balancer
is never a replication member: it sends nothing to the group, opens no channel, holds no
sessions. Its only traffic to the nodes is HTTP: ``GET /-/ready`` of a candidate until it
answers 200, and the same request as the liveness probe of a node gone silent past drop_time
(a worker that answers HTTP at all is alive; one that does not is dropped).

What is dropped is counted by reason (``drop_auth``, ``drop_replay``, ``drop_mode``,
``drop_stale``, ``drop_malformed``, ``drop_foreign_cluster``) and logged: the first of each
reason, then every 100th, so a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import aiohttp

from balancer.cluster_members import REFUSED, DynamicLb, MemberChange
from balancer.config.model import LbConfig, MemberConfig
from replication import codec
from replication.channel import Channel, Endpoint, Faults
from replication.codec import Hello, Message
from replication.config import ClusterConfig, load_cluster_config
from replication.keyfile import load_or_create_key
from replication.mcast import receive_only
from replication.member_info import MemberInfo
from replication.membership import Event as MemberEvent
from replication.membership import Joined, Left, Membership, Probe
from replication.seal import Opener

log = logging.getLogger("pyjk.balancer")

READY_PATH = "/-/ready"
# a candidate's /-/ready is asked this often at most (or every heartbeat interval if shorter):
# it joins within this long of becoming ready, at the cost of a few small GETs while it syncs
CANDIDATE_PROBE = 0.1  # s
LOG_EVERY = 100  # dropped heartbeats of one reason: log the first, then every LOG_EVERY-th


class ClusterSource:
    def __init__(
        self,
        lb: LbConfig,
        template: MemberConfig | None,
        static: Iterable[MemberConfig],
        on_change: Callable[[str], None],  # lb name: its members changed
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lb_name = lb.name
        self.signature = signature(lb, template)
        self.config: ClusterConfig = load_cluster_config(lb.cluster)
        cfg = self.config
        self.key = None if cfg.insecure else load_or_create_key(cfg.key_file)
        self.clock, self.monotonic = clock, monotonic
        self.on_change = on_change
        self.counters: Counter[str] = Counter()
        # The table needs a "me" to ignore; this listener never sends, so a random id no
        # heartbeat can carry is enough.
        sender = secrets.token_bytes(16)
        started = clock()
        self.me = MemberInfo(sender.hex(), "balancer", "127.0.0.1", 1, started)
        self.membership = Membership(self.me, drop_time=cfg.drop_time)
        self.opener = Opener(self.key, max_skew=cfg.max_clock_skew)
        # Without multicast, the members of membership.static_members are asked over TCP:
        # a sealed Hello marked "observer", which a worker answers without adding the asker.
        self.channel = Channel(
            _Observer(self), key=self.key, sender=sender, epoch_ms=int(started * 1000),
            opener=self.opener, counters=self.counters, clock=clock, max_frame=cfg.max_frame,
            connect_timeout=cfg.probe_timeout, faults=Faults(),
        )  # fmt: skip
        self.pool = DynamicLb(
            lb.name, allow=lb.cluster_allow, template=template, static=static,
            probe_interval=min(cfg.frequency, CANDIDATE_PROBE),
        )  # fmt: skip
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=cfg.probe_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        if cfg.multicast:
            self._transport = await receive_only(cfg.group, cfg.mcast_port, cfg.interface,
                                                 self._datagram)  # fmt: skip
        elif not cfg.static_members:
            log.warning("lb=%s cluster=%s has neither multicast nor static_members: no member "
                        "can join", self.lb_name, cfg.source)  # fmt: skip
        self._task = asyncio.create_task(self._run(), name=f"cluster-source-{self.lb_name}")
        sources = [f"group={cfg.group}:{cfg.mcast_port}"] if cfg.multicast else []
        sources += [f"static={h}:{p}" for h, p in cfg.static_members]
        log.info(
            "lb=%s listens to cluster=%s %s sealed=%s",
            self.lb_name, cfg.name, " ".join(sources) or "-", self.key is not None,
        )  # fmt: skip

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        tasks = [t for t in (self._task, *self._probes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- heartbeats ---------------------------------------------------------------------------
    def _datagram(self, data: bytes) -> None:
        hb = codec.open_group_datagram(self.opener, data, self.clock(), self._dropped)
        if hb is None:
            return
        if isinstance(hb, codec.BalancerBeat):  # a balancer pair's (balancer/standby.py)
            self.counters["balancer_heartbeats_in"] += 1
            return
        if hb.cluster != self.config.name:
            self._dropped("foreign_cluster", f"cluster {hb.cluster!r}")
            return
        self.counters["heartbeats_in"] += 1
        self._heard(hb.member, hb.shutdown)

    def _heard(self, member: MemberInfo, shutdown: bool) -> None:
        """A heartbeat, or a static member's answer to our Hello."""
        events = self.membership.heard(member, self.clock(), shutdown=shutdown)
        changes = self._events(events)
        if not shutdown and member.id in self.membership:
            now = self.monotonic()
            changes += self.pool.heard(member, now)
            self._probe_candidates(now)  # a new candidate is asked at once, not at the next tick
        self._apply(changes)

    def _dropped(self, reason: str, detail: str) -> None:
        count_drop(self.counters, f"lb={self.lb_name} heartbeat", reason, detail)

    def _events(self, events: Iterable[MemberEvent]) -> list[MemberChange]:
        changes: list[MemberChange] = []
        for event in events:
            if isinstance(event, Left):
                changes += self.pool.left(event.member, event.reason)
            elif isinstance(event, Probe):
                self._spawn(self._liveness(event.member))
            elif isinstance(event, Joined):
                self.counters["nodes_seen"] += 1
        return changes

    def _apply(self, changes: Sequence[MemberChange]) -> None:
        if not changes:
            return
        for change in changes:
            level = logging.WARNING if change.state == REFUSED else logging.INFO
            log.log(level, "%s", change)
        if any(c.state != REFUSED for c in changes):
            self.on_change(self.lb_name)

    # -- timers and probes --------------------------------------------------------------------
    async def _run(self) -> None:
        next_hello = 0.0
        while True:  # the table's drop checks and the candidates' probes, paced by the latter
            await asyncio.sleep(self.pool.probe_interval)
            if self.config.static_members and self.monotonic() >= next_hello:
                next_hello = self.monotonic() + self.config.frequency
                for host, port in self.config.static_members:
                    self._spawn(self._hello(host, port))
            try:
                self._apply(self._events(self.membership.tick(self.clock())))
                self._probe_candidates(self.monotonic())
            except Exception:  # one bad turn must not end the listener
                log.exception("lb=%s cluster source tick failed", self.lb_name)

    def _probe_candidates(self, now: float) -> None:
        for info in self.pool.probes_due(now):
            self._spawn(self._readiness(info))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _get_ready(self, info: MemberInfo) -> int | None:
        """The status of the node's /-/ready, or None when it cannot be reached."""
        if self._session is None or not info.http_port:
            return None
        host = f"[{info.http_host}]" if ":" in info.http_host else info.http_host
        try:
            async with self._session.get(f"http://{host}:{info.http_port}{READY_PATH}") as r:
                await r.read()
                return r.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def _readiness(self, info: MemberInfo) -> None:
        status = await self._get_ready(info)
        self._apply(self.pool.ready_result(info.id, status == 200, self.clock()))

    async def _hello(self, host: str, port: int) -> None:
        hello = await self.channel.probe(host, port, self.config.probe_timeout)
        if hello is None or hello.cluster != self.config.name:
            return
        self.counters["hellos_in"] += 1
        self._heard(hello.member, hello.shutdown)

    async def _liveness(self, info: MemberInfo) -> None:
        ok = await self._get_ready(info) is not None
        self.counters["probes_ok" if ok else "probes_failed"] += 1
        self._apply(self._events(self.membership.probe_result(info.id, ok, self.clock())))


def count_drop(counters: Counter[str], what: str, reason: str, detail: str) -> None:
    """Count a dropped datagram by reason; log the first of each reason, then every
    LOG_EVERY-th, so a flood cannot flood the log."""
    key = f"drop_{reason}"
    counters[key] += 1
    count = counters[key]
    if count == 1 or count % LOG_EVERY == 0:
        log.warning("%s dropped reason=%s count=%d: %s", what, reason, count, detail[:200])


def signature(lb: LbConfig, template: MemberConfig | None) -> tuple[object, ...]:
    """What a source is built from: when it changes on reload, the source is replaced."""
    return (lb.cluster, lb.cluster_allow, template)


class _Observer:
    """The channel's handler for a balancer: it only ever probes (replication.channel.Handler)."""

    def __init__(self, source: ClusterSource) -> None:
        self.source = source

    def make_hello(
        self, to: str | None, *, reply: bool, first_seq: int | None = None, shutdown: bool = False
    ) -> Hello:
        return Hello(self.source.config.name, self.source.me, 0, to, reply, shutdown, True)

    def on_hello(self, hello: Hello, *, incoming: bool) -> bool:
        return False  # nothing connects to a balancer: it has no receiver

    def on_message(self, peer: MemberInfo, msg: Message, endpoint: Endpoint) -> None:
        return None

    def on_link_lost(self, member_id: str) -> None:
        return None
