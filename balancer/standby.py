"""``--cluster FILE`` and ``--standby``: the balancer pair on the cluster's sealed channel.

Run once per balancer (its supervisor with ``--processes N``, the process itself with one),
never in the data-plane processes. Every ``frequency`` it sends a sealed ``BalancerBeat`` on
the cluster's multicast group: the active one with its lb state (balancer/lb/handover.py says
what and how it is split), a standby with none. It reads the group too: the other
balancer's beats (workers' heartbeats are opened and ignored here; forged, stale or replayed
datagrams are dropped and counted by reason, as the workers do).

A standby (``wait_turn``) binds nothing while an active is heard. With N processes it is
warm (``pair_run.Warm``: the supervisor): its data-plane processes start at once, load the
configuration and bind to the shared records, but accept nothing until the takeover. It
applies the active's lb state to its own engines as it arrives (with N processes they are
the shared records the processes read, so their first decisions are the active's). When the
active falls silent for the cluster's ``drop_time`` (or says it stops), it logs
``balancer=standby state=active reason=... peer=...``, waits until every listening port is
free (the active's death frees them on one machine; an error every ``BIND_RETRY`` s while
they stay held, and it waits on), applies the state once more and returns: the caller binds
and serves as any balancer does (a warm supervisor only binds and lets its processes accept).

Two actives on shared sockets (balancer/pair.py): the one started later steps down — it stops
serving as on SIGTERM (listeners closed, drain) but is a standby from the decision on: it beats
as one during the drain and, should the active fall silent meanwhile, ends the drain at once
(``on_drain_takeover``). ``pair_run.run_paired`` then leaves ``args.restart_argv`` for
launch.py, which starts the same process again as a standby (one that takes over at once when
the active fell silent). SIGTERM stops a balancer for good (``term``): its shutdown beat is its
last, peers' beats decide nothing more for it, and a step-down's drain ends in an exit.

What the status page and /metrics show (``Balancer: active|standby``, the peer, takeovers,
two actives, step-downs) comes from ``view()``; with N processes the supervisor writes it as a
small JSON document in its slot of the shared table, where every data-plane process reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from balancer.cluster_source import count_drop
from balancer.lb.engine import LbEngine
from balancer.lb.handover import Applied, LbStateCopy, lb_entries, parse_part, split_state
from balancer.pair import (
    ACTIVE,
    ActiveBack,
    PairEvent,
    PairState,
    PairView,
    PeerHeard,
    StepDown,
    Takeover,
    TwoActives,
)
from replication import codec
from replication.codec import BalancerBeat
from replication.config import ClusterConfig, load_cluster_config
from replication.keyfile import load_or_create_key
from replication.mcast import Multicast
from replication.seal import HEADER, Kind, Opener, Sealer

if TYPE_CHECKING:
    pass

log = logging.getLogger("pyjk.balancer")

BIND_RETRY = 60.0  # s a standby that took over waits for the active's ports before each error
BIND_POLL = 0.05  # s between two tries


class PairError(Exception):
    """``--cluster`` cannot be used for a balancer pair (e.g. no multicast)."""


def port_free(host: str, port: int) -> bool:
    """Whether nothing holds ``host:port``: a plain bind (no SO_REUSEPORT, which another
    balancer's sockets would share) succeeds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class BalancerPair:
    def __init__(
        self,
        cluster: Path,
        *,
        standby: bool,
        listen: Sequence[str],
        engines: Callable[[], Mapping[str, LbEngine]],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        step_downs: int = 0,
        peer_silent: bool = False,
    ) -> None:
        self.config: ClusterConfig = load_cluster_config(cluster)
        cfg = self.config
        if not cfg.multicast:
            raise PairError(f"{cluster}: a balancer pair heartbeats over multicast; "
                            "membership.multicast is off")  # fmt: skip
        if standby and not cfg.insecure and not cfg.key_file.exists():
            # a key made here could open nothing the active sends: the standby would take
            # over after drop_time while the active serves, neither hearing the other
            raise PairError(f"{cfg.key_file}: no cluster key; a standby needs the active's "
                            "(copy the file, mode 0600)")  # fmt: skip
        self.key = None if cfg.insecure else load_or_create_key(cfg.key_file)
        # the peer refuses a heartbeat whose listen it cannot read: refuse to start instead
        # of a silent split brain (parse_listen already holds each one to codec.LISTEN_RE)
        if len(listen) > codec.MAX_LISTEN:
            raise PairError(f"{len(listen)} --listen: a balancer pair's heartbeat carries "
                            f"at most {codec.MAX_LISTEN}")  # fmt: skip
        bad = [x for x in listen if not codec.LISTEN_RE.fullmatch(x)]
        if bad:
            raise PairError(f"--listen {bad[0]!r} cannot be sent in a balancer heartbeat")
        self.listen = tuple(listen)
        self.engines = engines
        self.clock, self.monotonic = clock, monotonic
        self.counters: Counter[str] = Counter()
        sender = secrets.token_bytes(16)
        self.id = sender.hex()
        self.started = clock()
        self.state = PairState(self.id, standby=standby, drop_time=cfg.drop_time,
                               now=monotonic(), started=self.started,
                               step_downs=step_downs, listen=self.listen,
                               peer_silent=peer_silent, host=cfg.interface,
                               frequency=cfg.frequency)  # fmt: skip
        self.copy = LbStateCopy(window=cfg.drop_time)  # what the active still sends
        self.opener = Opener(self.key, max_skew=cfg.max_clock_skew)
        self.sealer = Sealer(self.key, sender, int(self.started * 1000), Kind.HEARTBEAT)
        self.mcast = Multicast(cfg.group, cfg.mcast_port, cfg.interface, cfg.ttl)
        self.on_view: Callable[[PairView], None] = lambda view: None  # the supervisor's table
        # stop serving (as SIGTERM does, without exiting): this active steps down
        self.on_step_down: Callable[[], None] = lambda: None
        # the active fell silent while this one drained after its step-down: end the drain
        self.on_drain_takeover: Callable[[], None] = lambda: None
        self.stop_requested = False  # SIGTERM/SIGINT (term()): exit, whatever else happens
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._capped_logged = False
        self._left = False  # leave(): the shutdown heartbeat is sent

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.mcast.start(self._datagram)
        self._task = asyncio.create_task(self._run(), name="balancer-pair")
        cfg = self.config
        log.info("balancer=%s pair id=%s cluster=%s group=%s:%d sealed=%s drop_time_ms=%d",
                 self.state.role, self.id, cfg.name, cfg.group, cfg.mcast_port,
                 self.key is not None, cfg.drop_time * 1000)  # fmt: skip

    def leave(self) -> None:
        """This balancer stops for good (its listening sockets are closed; requests in flight
        drain on): no more heartbeats, and a last one that says so, so the standby takes
        over at once, not after drop_time nor after the drain; from here on a peer's beats
        decide nothing (a standby taking over is no reason to step down)."""
        if self._left:
            return
        self._left = True
        self.state.leave()
        if self._task is not None:
            self._task.cancel()
        self._beat(shutdown=True)

    def stopping(self) -> None:
        """Its listeners are closed (the balancer's ``on_stopping``): a stop for good leaves;
        a step-down's drain goes on beating as a standby (it may take over before the drain
        ends), and says so at once."""
        if self.state.stepping_down and not self.stop_requested:
            self._beat()
        else:
            self.leave()

    def term(self) -> None:
        """SIGTERM/SIGINT (the balancer's ``on_term``): stop for good, even during a
        step-down's drain (no restart as a standby)."""
        self.stop_requested = True
        self.leave()

    async def stop(self) -> None:
        self.leave()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.mcast.close()

    async def wait_turn(
        self,
        listens: Sequence[tuple[str, int, bool]],
        handlers: Mapping[signal.Signals, Callable[[], object]] | None = None,
    ) -> bool:
        """A standby: wait until it is this balancer's turn to serve, the ports free. False
        when SIGTERM/SIGINT came first (the caller exits 0). ``handlers``: what other signals
        do meanwhile (SIGHUP reloads, SIGUSR1 reopens the access log: their default would
        end the process)."""
        if self.state.role == ACTIVE:
            return True
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        handled = {signal.SIGTERM: stopping.set, signal.SIGINT: stopping.set, **(handlers or {})}
        for sig, handler in handled.items():
            loop.add_signal_handler(sig, handler)
        log.info("balancer=standby waits: serves nothing while the active is heard")
        try:
            while not stopping.is_set():
                if self.state.taking_over and await self._ports_free(listens, stopping):
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.frequency):
                        await self._wake.wait()
                self._wake.clear()
            else:
                return False
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)  # back to the default: for SIGHUP, the end
                if sig not in (signal.SIGTERM, signal.SIGINT):
                    # until serve() handles them (one balancer binds first): not the end
                    signal.signal(sig, signal.SIG_IGN)
        applied = self._apply()
        self.state.serving()
        self.counters["takeovers"] += 1
        log.warning("balancer=standby state=active reason=ports-free members_applied=%d",
                    len(applied))  # fmt: skip
        self._publish()
        self._beat()
        return True

    async def _ports_free(
        self, listens: Sequence[tuple[str, int, bool]], stopping: asyncio.Event
    ) -> bool:
        deadline = self.monotonic() + BIND_RETRY
        tries = 0
        while not stopping.is_set() and self.state.taking_over:
            held = [f"{h}:{p}" for h, p, _ in listens if not port_free(h, p)]
            if not held:
                return True
            tries += 1
            if tries == 1 or tries % 100 == 0:
                log.warning("balancer=standby ports held=%s; retrying (the active's death "
                            "frees them)", ",".join(held))  # fmt: skip
            if self.monotonic() > deadline:
                # an active that hangs holding the ports: exiting would leave no balancer at
                # all once it dies; wait on, loudly (log, and counted for the cluster view)
                self.counters["ports_held_too_long"] += 1
                log.error("balancer=standby ports held=%s for over %.0fs: the silent active "
                          "still holds them (hung?); still waiting", ",".join(held),
                          BIND_RETRY)  # fmt: skip
                deadline = self.monotonic() + BIND_RETRY
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BIND_POLL):
                    await stopping.wait()
        return False

    def carry_in(self, text: str) -> int:
        """The lb state copy the previous image had (``pair_run.carry_out``: a restart after
        a step-down): a takeover before the active's next beat still has it, aged by the
        time the exec took. How many entries."""
        try:
            doc = json.loads(text)
            part, refused = parse_part(doc["lbs"])
            elapsed = min(max(0.0, self.clock() - float(doc["at"])), self.config.drop_time)
        except (ValueError, AttributeError, KeyError, TypeError):
            part, refused, elapsed = {}, ["not a JSON object of lbs"], 0.0
        for reason in refused:
            self._dropped("bad_state", reason)
        self.copy.take(part, self.monotonic() - elapsed)
        return len(part)

    def view(self) -> PairView:
        return self.state.view(self.monotonic())

    # -- heartbeats ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                self._beat()
                self._events(self.state.tick(self.monotonic()))
                self._publish()
            except Exception:  # one bad turn must not end the pair
                log.exception("balancer pair tick failed")
            pause = self.config.frequency
            due = self.state.due_in(self.monotonic())
            if due is not None and due < pause:  # the takeover's moment, not the next beat's
                await asyncio.sleep(due + 0.001)
                self._events(self.state.tick(self.monotonic()))
                pause -= due + 0.001
            await asyncio.sleep(max(0.0, pause))

    def _beat(self, shutdown: bool = False) -> None:
        cfg, role = self.config, self.state.role
        parts: list[dict[str, dict[str, object]]] = [{}]
        if role == ACTIVE and not shutdown:
            parts, capped = split_state(lb_entries(self.engines(), self.monotonic()))
            self.counters["lb_state_capped"] = capped
            if capped and not self._capped_logged:
                log.warning("balancer=active lb state of %d members not sent: over %d "
                            "datagrams per heartbeat", capped, len(parts))  # fmt: skip
            self._capped_logged = bool(capped)
        for i, lbs in enumerate(parts, 1):
            beat = BalancerBeat(cfg.name, self.id, role, self.started, cfg.interface,
                                self.listen, i, len(parts), lbs, shutdown)  # fmt: skip
            if self.mcast.send(self.sealer.seal(codec.encode(beat), self.clock())):
                self.counters["heartbeats_out"] += 1

    def _datagram(self, data: bytes) -> None:
        msg = codec.open_group_datagram(self.opener, data, self.clock(), self._dropped)
        if msg is None:
            return
        if not isinstance(msg, BalancerBeat):
            self.counters["member_heartbeats_in"] += 1  # a worker's: not ours to read
            return
        if msg.cluster != self.config.name:
            self._dropped("foreign_cluster", f"cluster {msg.cluster!r}")
            return
        if msg.id == self.id:
            return
        now = self.monotonic()
        # an active of other sockets (another service in the cluster): its lb state is not
        # this balancer's to copy, nor to apply when it serves its own
        if msg.role == ACTIVE and msg.lbs and self.state.relevant(msg.host, msg.listen):
            # an entry this balancer cannot read (a newer active's, or a value out of its
            # bounds) is skipped and counted; the beat still counts as the active heard
            part, refused = parse_part(msg.lbs)
            for reason in refused:
                self._dropped("bad_state", reason)
            self.copy.take(part, now, sent=_sent(data), origin=msg.id)
            # its first decisions are the active's (a step-down's engines drain its own)
            waiting = self.state.role != ACTIVE and not self.state.stepping_down
            if waiting and not self.state.taking_over:
                self._apply(part)
        self.counters["heartbeats_in"] += 1
        self._events(self.state.heard(msg.id, msg.role, msg.host, msg.listen, now,
                                      shutdown=msg.shutdown, started=msg.start))  # fmt: skip

    def _events(self, events: Sequence[PairEvent]) -> None:
        for event in events:
            if isinstance(event, PeerHeard):
                log.info("balancer=%s hears peer=%s role=%s listen=%s id=%s", self.state.role,
                         event.peer.host, event.peer.role, ",".join(event.peer.listen),
                         event.peer.id)  # fmt: skip
            elif isinstance(event, Takeover):
                peer = event.peer
                log.warning(
                    "balancer=standby state=taking-over reason=%s peer=%s peer_listen=%s "
                    "silent_ms=%d", event.reason, peer.host if peer else "-",
                    ",".join(peer.listen) if peer else "-", event.silent * 1000,
                )  # fmt: skip
                self._wake.set()
                if self.state.stepping_down:  # still draining: serve at once instead
                    self.on_drain_takeover()
            elif isinstance(event, TwoActives):
                self.counters["two_actives"] += 1
                log.error("balancer=active state=two-actives peer=%s peer_listen=%s id=%s: "
                          "both serve (a partition, or a second balancer without --standby); "
                          "the one started later steps down", event.peer.host,
                          ",".join(event.peer.listen), event.peer.id)  # fmt: skip
            elif isinstance(event, StepDown):
                self.counters["step_downs"] += 1
                log.warning("balancer=active state=stepping-down reason=two-actives peer=%s "
                            "peer_listen=%s started=%.3f peer_started=%.3f: the later one "
                            "stops serving, drains and becomes a standby", event.peer.host,
                            ",".join(event.peer.listen), event.started,
                            event.peer_started)  # fmt: skip
                self.on_step_down()
            elif isinstance(event, ActiveBack):
                log.warning("balancer=standby state=standby reason=active-heard-again peer=%s",
                            event.peer.host)  # fmt: skip
        if events:
            self._publish()

    def _apply(self, only: Iterable[tuple[str, str]] | None = None) -> list[Applied]:
        applied = self.copy.apply(self.engines(), only)
        for change in applied:
            if change.changed:
                log.info("%s", change)
        return applied

    def _dropped(self, reason: str, detail: str) -> None:
        count_drop(self.counters, "balancer pair datagram", reason, detail)

    def _publish(self) -> None:
        self.on_view(self.view())


def _sent(data: bytes) -> tuple[object, int]:
    """An opened datagram's sender stream and counter (its envelope, authenticated by the
    seal): the order the active sent its parts in."""
    _, _, _, _, sender, epoch_ms, stream, counter, _ = HEADER.unpack_from(data)
    return (sender, epoch_ms, stream), counter


def view_part(view: PairView) -> dict[str, object]:
    """The view's part of the supervisor's document (``supervisor.publish_part``)."""
    return {"pair": view.to_json()}


def read_view(data: bytes) -> PairView | None:
    """The view in the supervisor's document (``view_part``), or None before it wrote one."""
    try:
        doc = json.loads(data or b"{}")
        return PairView.from_json(doc["pair"]) if isinstance(doc, dict) and "pair" in doc else None
    except (ValueError, KeyError, TypeError):
        return None
