"""Membership without replication: a worker on a Redis store that still announces itself.

With `[store] kind = "redis"` the workers share no sessions over the cluster channel, but a
balancer with a dynamic lb (`worker.<lb>.cluster`, balancer/cluster_source.py) finds its members
by their heartbeats. When the cluster file has a `[membership]` section, the Redis store runs
an Announcer: the same sealed heartbeats a replicating member sends (multicast, every
`frequency`; the cluster key from `[security]`), carrying where the worker serves HTTP, its
lbfactor and whether it is leaving, and a shutdown heartbeat at stop so balancers drop it at
once. For networks without multicast (`multicast = false`, the balancer's `static_members`) it
also listens on `[receiver]` and answers a balancer's sealed observer Hello.

It is no replication member: its heartbeats say seq 0 and an empty digest, it opens no link
to anyone, refuses every Hello but an observer's, and drops every other frame (counted). Workers
of the built-in cluster do not share a cluster name with Redis workers; they would be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from . import codec
from .channel import Channel, Endpoint, Faults
from .codec import Heartbeat, Hello, Message
from .config import ClusterConfig
from .keyfile import load_key
from .mcast import Multicast
from .member_info import MemberInfo
from .seal import Kind, Opener, Sealer

log = logging.getLogger("pyjk.cluster")

NO_DIGEST = "0" * 16  # it holds no sessions to compare


class Announcer:
    """Heartbeats (and observer Hellos) for one worker that is not a replication member."""

    def __init__(
        self, config: ClusterConfig, route: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config, self.clock = config, clock
        self.counters: Counter[str] = Counter()
        # the balancers open its heartbeats with the cluster's key: a fresh one made here
        # would have every heartbeat dropped without a word, so a missing file is refused
        self.key = None if config.insecure else load_key(config.key_file)
        sender = secrets.token_bytes(16)
        started = clock()
        self.me = MemberInfo(sender.hex(), route, config.receiver_host, 1, started)
        epoch_ms = int(started * 1000)
        self._sealer = Sealer(self.key, sender, epoch_ms, Kind.HEARTBEAT)
        self.channel = Channel(
            self, key=self.key, sender=sender, epoch_ms=epoch_ms,
            opener=Opener(self.key, max_skew=config.max_clock_skew), counters=self.counters,
            clock=clock, max_frame=config.max_frame, connect_timeout=config.probe_timeout,
            faults=Faults(),
        )  # fmt: skip
        self.mcast: Multicast | None = None
        if config.multicast:
            self.mcast = Multicast(config.group, config.mcast_port, config.interface, config.ttl)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        port = await self.channel.start(cfg.receiver_host, cfg.receiver_port)
        self.me = replace(self.me, port=port)
        if self.mcast is not None:
            await self.mcast.start(self._ignore)  # other members' heartbeats are not ours
        self.beat()
        self._task = asyncio.create_task(self._beating(), name="announcer")
        log.info("announcing membership only (session store: redis) cluster=%s route=%s "
                 "sealed=%s multicast=%s", cfg.name, self.me.route, self.key is not None,
                 self.mcast is not None)  # fmt: skip

    def advertise_http(self, host: str, port: int, lbfactor: int = 1) -> None:
        self.me = replace(self.me, http_host=host, http_port=port, lbfactor=lbfactor)

    def announce_leaving(self) -> None:
        self.me = replace(self.me, leaving=True)
        self.beat()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.beat(shutdown=True)
        await self.channel.close()
        if self.mcast is not None:
            self.mcast.close()

    def beat(self, shutdown: bool = False) -> None:
        if self.mcast is None:
            return
        hb = Heartbeat(self.config.name, self.me, 0, NO_DIGEST, shutdown)
        if self.mcast.send(self._sealer.seal(codec.encode(hb), self.clock())):
            self.counters["heartbeats_out"] += 1

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.config.frequency)
            self.beat()

    def _ignore(self, data: bytes) -> None:
        self.counters["heartbeats_ignored"] += 1

    # -- channel.Handler: answer a balancer's probe, nothing else ------------------------------
    def make_hello(
        self, to: str | None, *, reply: bool, first_seq: int | None = None, shutdown: bool = False
    ) -> Hello:
        return Hello(self.config.name, self.me, 0, to, reply, shutdown)

    def on_hello(self, hello: Hello, *, incoming: bool) -> bool:
        if hello.cluster != self.config.name or not hello.observer:
            self.counters["hellos_refused"] += 1  # a replicating member: nothing to share
            return False
        self.counters["observer_probes"] += 1
        return hello.to is None and not hello.reply

    def on_message(self, peer: MemberInfo, msg: Message, endpoint: Endpoint) -> None:
        self.counters["drop_unexpected"] += 1

    def on_link_lost(self, member_id: str) -> None:
        return None
