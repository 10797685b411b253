"""The active/standby balancer pair, pure: who serves, and what the status page shows of it.

Both balancers of a pair run with ``--cluster FILE`` and heartbeat on that cluster's sealed
multicast channel as *balancers* (``replication.codec.BalancerBeat``: workers count and ignore
them, so a balancer is never a replica, a cache owner or a singleton owner). The active one's
heartbeats carry its lb state (balancer/lb/handover.py); balancer/standby.py is the I/O.

``PairState`` decides: a standby serves once no active was heard for ``drop_time`` (or at once
on the active's shutdown heartbeat), and, never having heard one, ``drop_time`` after its own
start. Two actives heard at once (a partition that healed, or a second balancer started
without ``--standby``; with SO_REUSEPORT both may even hold one port and split its traffic)
are counted (``two_actives`` episodes) and resolved by one rule both compute alike from the
heartbeats: the balancer whose process started later (the ``start`` its heartbeats carry; the
same start: the larger id) steps down (``StepDown``: it stops serving and becomes a standby,
balancer/standby.py); the one started first keeps serving. Only when the other's ``--listen``
cover all of this one's (``covers``: on two hosts by port; on one host by address and port,
a wildcard taking any): two actives that serve different ports both keep serving, and one
that would leave a port of its own unserved stays, counted as two actives. An active whose
listens share no socket with this balancer's (``overlaps``) is another service's: a standby
neither waits for it nor copies its lb state.

A stepping-down balancer is a standby from the decision on: it beats as one while it drains and
takes over (``Takeover``) if the active falls silent meanwhile. A balancer that leaves
(``leave``: SIGTERM, the shutdown heartbeat sent) decides nothing more: its stop is final, a
standby that takes over meanwhile must not turn it into a step-down.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from replication.codec import BALANCER_ROLES

ACTIVE, STANDBY = BALANCER_ROLES  # as a balancer heartbeat says them
# balancers remembered at once: the view travels in the supervisor's document in the shared
# table (with the serve flag a warm standby's takeover writes): a bounded list keeps it far
# below that document's size (each peer at most 16 listens of ~270 bytes)
MAX_PEERS = 8


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    role: str
    host: str
    listen: tuple[str, ...]
    heard_ago: float  # s


@dataclass(frozen=True, slots=True)
class PairView:
    """What the status page and /metrics show of the pair."""

    role: str
    peers: tuple[Peer, ...]
    takeovers: int
    two_actives: int  # episodes of another active heard while this one was active
    other_active: bool  # one is heard right now
    drop_time: float = 0.0  # s: a peer heard longer ago is not counted as present
    step_downs: int = 0  # times this balancer stepped down as the later of two actives

    def present(self, role: str) -> int:
        """Peers of ``role`` heard within ``drop_time`` (``pyjk_balancer_peers``)."""
        return sum(1 for p in self.peers if p.role == role and p.heard_ago <= self.drop_time)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "takeovers": self.takeovers, "two_actives": self.two_actives,
            "other_active": self.other_active, "drop_time": self.drop_time,
            "step_downs": self.step_downs,
            "peers": [[p.id, p.role, p.host, list(p.listen), p.heard_ago] for p in self.peers],
        }  # fmt: skip

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> PairView:
        peers = tuple(Peer(i, r, h, tuple(lst), float(a)) for i, r, h, lst, a in v["peers"])
        return cls(str(v["role"]), peers, int(v["takeovers"]), int(v["two_actives"]),
                   bool(v["other_active"]), float(v.get("drop_time", 0.0)),
                   int(v.get("step_downs", 0)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Takeover:
    reason: str  # "active-silent", "active-shutdown", "no-active"
    peer: Peer | None
    silent: float  # s since the active was last heard (or since this one started)


@dataclass(frozen=True, slots=True)
class TwoActives:
    peer: Peer


@dataclass(frozen=True, slots=True)
class StepDown:
    """This active started after another active it hears (or at the same time, with the
    larger id): it stops serving and becomes a standby."""

    peer: Peer
    started: float  # Unix seconds: this balancer's start
    peer_started: float  # the other active's, as its heartbeat says


@dataclass(frozen=True, slots=True)
class PeerHeard:
    """A balancer heard for the first time (or again after it was forgotten)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class ActiveBack:
    """An active was heard again while the standby waited for the ports: it stays standby."""

    peer: Peer


PairEvent = PeerHeard | Takeover | TwoActives | ActiveBack | StepDown


@dataclass(slots=True)
class _Heard:
    role: str
    host: str
    listen: tuple[str, ...]
    last: float
    shutdown: bool = False


class PairState:
    def __init__(
        self, me: str, *, standby: bool, drop_time: float, now: float,
        started: float = 0.0, step_downs: int = 0, listen: tuple[str, ...] | None = None,
        peer_silent: bool = False, host: str | None = None, frequency: float = 0.0,
    ) -> None:  # fmt: skip
        self.me = me
        self.role = STANDBY if standby else ACTIVE
        self.drop_time = drop_time
        # peer_silent: restarted after a step-down whose active fell silent during the drain;
        # its drop_time has passed already, but what it knew is the previous image's: it
        # listens two heartbeat intervals first (an active that came back is heard then,
        # not fought over the ports)
        wait = min(drop_time, 2 * frequency)
        self.started = now - drop_time + wait if peer_silent else now
        self.listen = listen  # None: not known (every peer's is taken to overlap)
        self.host = host  # its heartbeats' host: a peer on the same one shares its addresses
        self.left = False  # leave(): this balancer stops for good and decides nothing more
        self.started_at = started  # Unix seconds, as its heartbeats say: who steps down
        self.takeovers = 0
        self.two_actives = 0
        self.step_downs = step_downs  # carried over the step-down's restart as a standby
        self.stepping_down = False  # decided: this active stops serving
        self.stepped_for: str | None = None  # the active it stepped down for (its id)
        self.taking_over = False  # the standby decided and waits for the ports
        self._heard: dict[str, _Heard] = {}
        self._split: set[str] = set()  # other actives heard while this one is active

    def heard(
        self, sender: str, role: str, host: str, listen: tuple[str, ...], now: float,
        *, shutdown: bool = False, started: float = 0.0,
    ) -> list[PairEvent]:  # fmt: skip
        if sender == self.me:
            return []
        known = self._heard.get(sender)
        if known is None:
            # a balancer restarted (kill -9, then again: a new random id) replaces its older
            # entry: the same host, role and listens. Not any other of that host: two actives
            # of one machine on different ports would push each other out on every beat
            same = (host, role, listen)
            for old in [s for s, h in self._heard.items() if (h.host, h.role, h.listen) == same]:
                del self._heard[old]
                self._split.discard(old)
        if known is None and len(self._heard) >= MAX_PEERS:  # the longest silent makes room
            oldest = min(self._heard, key=lambda s: self._heard[s].last)
            del self._heard[oldest]
            self._split.discard(oldest)
        self._heard[sender] = _Heard(role, host, listen, now, shutdown)
        if role != ACTIVE:
            self._split.discard(sender)  # it stepped down: the episode ends
        if self.left:  # stopping for good: a peer's beats change nothing here any more
            if shutdown:
                del self._heard[sender]
            return []
        events: list[PairEvent] = []
        if (known is None or known.role != role) and not shutdown:
            events.append(PeerHeard(self._peer(sender, now)))
        # an active serving none of this balancer's sockets is another service's: not counted,
        # not waited for, not a reason to stay standby
        if role == ACTIVE and not shutdown and self.relevant(host, listen):
            if self.role == ACTIVE and sender not in self._split:
                self._split.add(sender)
                self.two_actives += 1
                events.append(TwoActives(self._peer(sender, now)))
            if (self.role == ACTIVE and not self.stepping_down
                    and (self.started_at, self.me) > (started, sender)
                    and covers(self.listen, listen, same_host=host == self.host)):  # fmt: skip
                # only when the other serves every one of its sockets (else one would go
                # unserved: two actives then, logged and counted). From here on a standby:
                # it beats as one while it drains, and takes over if the active falls
                # silent before the drain ends
                self.role, self.stepping_down = STANDBY, True
                self.stepped_for = sender
                self._split.clear()  # no other active while it is not one
                self.step_downs += 1
                events.append(StepDown(self._peer(sender, now), self.started_at, started))
            elif self.taking_over:
                self.taking_over = False
                events.append(ActiveBack(self._peer(sender, now)))
        elif shutdown:  # the sender stops: it is off the page at once
            self._split.discard(sender)
            mine = role == ACTIVE and self.relevant(host, listen)
            last_active = mine and not self._actives(now)
            if last_active and self.role == STANDBY and not self.taking_over:
                events.append(self._takeover("active-shutdown", sender, now, now))
            del self._heard[sender]
        return events

    def leave(self) -> None:
        """This balancer stops for good (SIGTERM): no more decisions from peers' beats."""
        self.left = True

    def tick(self, now: float) -> list[PairEvent]:
        for sender in [s for s in self._split if not self._alive(s, now)]:
            self._split.discard(sender)
        for sender in [s for s, h in self._heard.items() if now - h.last > 10 * self.drop_time]:
            del self._heard[sender]  # long gone: off the status page
        if self.role != STANDBY or self.taking_over or self.left or self._actives(now):
            return []
        heard = [(h.last, s) for s, h in self._heard.items() if self._active_of_mine(h)]
        if heard:
            last, sender = max(heard)
            return [self._takeover("active-silent", sender, last, now)]
        if now - self.started >= self.drop_time:
            return [self._takeover("no-active", None, self.started, now)]
        return []

    def due_in(self, now: float) -> float | None:
        """Seconds until ``tick`` would decide a takeover if nothing is heard meanwhile (None:
        none pending): the standby ticks then rather than on its next heartbeat, so the
        takeover does not wait up to one heartbeat interval past drop_time."""
        if self.role != STANDBY or self.taking_over or self.left:
            return None
        lasts = [h.last for h in self._heard.values() if self._active_of_mine(h) and not h.shutdown]
        since = max(lasts) if lasts else self.started
        return max(0.0, since + self.drop_time - now)

    def serving(self) -> None:
        """The ports are bound: this balancer is the active one now."""
        self.role, self.taking_over = ACTIVE, False
        self.takeovers += 1

    def view(self, now: float) -> PairView:
        peers = tuple(self._peer(s, now) for s in sorted(self._heard))
        return PairView(self.role, peers, self.takeovers, self.two_actives, bool(self._split),
                        self.drop_time, self.step_downs)  # fmt: skip

    def _alive(self, sender: str, now: float) -> bool:
        h = self._heard.get(sender)
        return h is not None and not h.shutdown and now - h.last <= self.drop_time

    def relevant(self, host: str, listen: tuple[str, ...]) -> bool:
        """Whether a peer's listens share a socket with this balancer's: only such an active
        is waited for, fought with, and has its lb state copied."""
        return overlaps(self.listen, listen, same_host=host == self.host)

    def _active_of_mine(self, h: _Heard) -> bool:
        return h.role == ACTIVE and self.relevant(h.host, h.listen)

    def _actives(self, now: float) -> list[str]:
        return [s for s, h in self._heard.items()
                if self._active_of_mine(h) and self._alive(s, now)]  # fmt: skip

    def _takeover(self, reason: str, sender: str | None, since: float, now: float) -> Takeover:
        self.taking_over = True
        peer = self._peer(sender, now) if sender in self._heard else None
        return Takeover(reason, peer, now - since)

    def _peer(self, sender: str | None, now: float) -> Peer:
        h = self._heard[sender or ""]
        return Peer(sender or "", h.role, h.host, h.listen, round(now - h.last, 3))


WILDCARDS = frozenset({"0.0.0.0", "::"})  # a socket bound to one takes every address's port


def _socket(listen: str) -> tuple[str, str]:
    """A ``--listen`` as its (address, port), the scheme and IPv6 brackets dropped."""
    addr, _, port = listen.removeprefix("https://").rpartition(":")
    return addr.strip("[]"), port


def _takes(theirs: str, mine: str, same_host: bool) -> bool:
    """Whether the other's listen takes (at least) what mine does. On two machines by port
    alone: each names its own address (or both 0.0.0.0) for the same service. On one machine
    127.0.0.1:P and 127.0.0.2:P (or [::1]:P) are separate sockets; a wildcard address takes
    the port on every address (but mine on a wildcard is not served by theirs on one)."""
    (addr_t, port_t), (addr_m, port_m) = _socket(theirs), _socket(mine)
    return port_t == port_m and (not same_host or addr_t == addr_m or addr_t in WILDCARDS)


def overlaps(
    mine: tuple[str, ...] | None, theirs: tuple[str, ...], same_host: bool = False
) -> bool:
    """Whether two balancers' ``--listen`` share a socket (either not known — None, or none
    said — is taken to: a standby rather waits than serves beside an active)."""
    return (
        not mine
        or not theirs
        or any(_takes(t, m, same_host) or _takes(m, t, same_host) for m in mine for t in theirs)
    )


def covers(mine: tuple[str, ...] | None, theirs: tuple[str, ...], same_host: bool = False) -> bool:
    """Whether the other balancer serves every one of mine: only then may this one step down
    without leaving a socket unserved."""
    return mine is None or all(any(_takes(t, m, same_host) for t in theirs) for m in mine)


def peers_text(view: PairView) -> Iterator[str]:
    for p in view.peers:
        where = ",".join(p.listen) or "-"
        yield f"{p.role} at {p.host} (listen {where}), heard {p.heard_ago:.1f}s ago"
