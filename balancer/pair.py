"""The active/standby balancer pair, pure: the lb state a standby needs, and who serves.

Both balancers of a pair run with ``--cluster FILE`` and heartbeat on that cluster's sealed
multicast channel as *balancers* (``replication.codec.BalancerBeat``: workers count and ignore
them, so a balancer is never a replica, a cache owner or a singleton owner). The active one's
heartbeats carry, per lb and member, what a status page or the lb engine changed and a fresh
balancer would not know from the files:

    a   activation (ACT/DIS/STP: set on the status page)     s  state (OK, ERR, ERR/REC, ...)
    f   lbfactor      d  distance      v  lb_value (the pick's counter)
    e1  seconds since the first error of the streak, e2 since the last one (or null)
    r   the last error's reason      h  the health check holds it down
    ss  seconds since its slow start began (or null)

Error and slow-start times travel as ages, not as clock readings: each balancer's monotonic
clock is its own. A datagram carries at most ``PART_BUDGET`` bytes of entries (one Ethernet
MTU after sealing, so no IP fragmentation on a real network); a bigger state is split into
parts sent together every heartbeat, each useful alone (entries are independent). Past
``MAX_PARTS`` parts (some 600 members) the rest is not sent: counted (``lb_state_capped``) and
logged once, and those members start on the standby as the files say.

``PairState`` decides: a standby serves once no active was heard for ``drop_time`` (or at once
on the active's shutdown heartbeat), and, never having heard one, ``drop_time`` after its own
start. Two actives heard at once (a partition, or a second balancer started without
``--standby``) are not resolved here: they are made visible (``two_actives`` episodes, log).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from balancer.config.model import Activation
from balancer.lb.engine import LbEngine
from balancer.lb.member import Member, State

ACTIVE = "active"
STANDBY = "standby"
PART_BUDGET = 1200  # bytes of JSON entries per datagram (1500 MTU - IP/UDP - seal - envelope)
MAX_PARTS = 64  # replication.codec.MAX_PARTS
MAX_REASON = 64  # characters of an error reason carried
_STATES = {s.value: s for s in State}
_ACTIVATIONS = {a.value: a for a in Activation}


class BadEntry(ValueError):
    """An lb state entry that does not follow the schema (the whole part is dropped)."""


# -- the lb state, out --------------------------------------------------------------------------


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


def member_entry(m: Member, now: float) -> dict[str, Any]:
    """What a standby needs of one member; ``now`` is the same monotonic clock as the member's
    times."""
    return {
        "a": m.activation.value, "s": m.state.value, "f": m.lbfactor, "d": m.distance,
        "v": m.lb_value, "e1": _age(now, m.first_error_time), "e2": _age(now, m.last_error_time),
        "r": m.last_error_reason[:MAX_REASON], "h": bool(m.health_down),
        "ss": _age(now, m.slow_start_since),
    }  # fmt: skip


Entries = list[tuple[str, str, dict[str, Any]]]  # (lb, member, entry)


def lb_entries(engines: Mapping[str, LbEngine], now: float) -> Entries:
    return [(lb, m.name, member_entry(m, now)) for lb, e in engines.items() for m in e.members]


def _size(lb: str, name: str, entry: Mapping[str, Any]) -> int:
    return len(json.dumps({lb: {name: entry}}, separators=(",", ":")))


def split_state(
    entries: Iterable[tuple[str, str, dict[str, Any]]],
    budget: int = PART_BUDGET,
    max_parts: int = MAX_PARTS,
) -> tuple[list[dict[str, dict[str, Any]]], int]:
    """The entries packed into parts of at most ``budget`` bytes of JSON each, and how many
    did not fit in ``max_parts`` (capped). An entry larger than the budget alone gets a part of
    its own (names are at most 63 bytes, so it is never much larger)."""
    parts: list[dict[str, dict[str, Any]]] = []
    used = budget + 1
    capped = 0
    for lb, name, entry in entries:
        size = _size(lb, name, entry)
        if used + size > budget:
            if len(parts) == max_parts:
                capped += 1
                continue
            parts.append({})
            used = 2
        parts[-1].setdefault(lb, {})[name] = entry
        used += size
    return parts or [{}], capped


# -- the lb state, in ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    activation: Activation
    state: State
    lbfactor: int
    distance: int
    lb_value: int
    first_error_age: float | None
    last_error_age: float | None
    reason: str
    health_down: bool
    slow_start_age: float | None


def _int(v: object, low: int, high: int, key: str) -> int:
    if type(v) is not int or not low <= v <= high:
        raise BadEntry(f"{key}: expected an integer {low}..{high}, found {str(v)[:20]!r}")
    return v


def _opt_age(v: object, key: str) -> float | None:
    if v is None:
        return None
    if type(v) not in (int, float) or not math.isfinite(v) or not 0 <= v < 1e9:  # type: ignore[operator, arg-type]
        raise BadEntry(f"{key}: expected seconds >= 0 or null, found {str(v)[:20]!r}")
    return float(v)  # type: ignore[arg-type]


def parse_entry(v: object) -> Entry:
    if type(v) is not dict or set(v) != {"a", "s", "f", "d", "v", "e1", "e2", "r", "h", "ss"}:
        raise BadEntry("expected an object with a, s, f, d, v, e1, e2, r, h, ss")
    activation, state = _ACTIVATIONS.get(v["a"]), _STATES.get(v["s"])
    if activation is None or state is None:
        raise BadEntry(f"unknown activation {str(v['a'])[:8]!r} or state {str(v['s'])[:8]!r}")
    if type(v["r"]) is not str or len(v["r"]) > MAX_REASON or type(v["h"]) is not bool:
        raise BadEntry("r: expected a short string, h: true or false")
    return Entry(
        activation, state, _int(v["f"], 1, 100_000, "f"), _int(v["d"], 0, 1 << 31, "d"),
        _int(v["v"], -(1 << 62), 1 << 62, "v"), _opt_age(v["e1"], "e1"), _opt_age(v["e2"], "e2"),
        v["r"], v["h"], _opt_age(v["ss"], "ss"),
    )  # fmt: skip


def parse_part(lbs: Mapping[str, Any]) -> dict[tuple[str, str], Entry]:
    """Every entry of one part, or BadEntry naming the first that is not one."""
    out: dict[tuple[str, str], Entry] = {}
    for lb, members in lbs.items():
        if type(members) is not dict:
            raise BadEntry(f"lb {lb[:64]!r}: expected an object of members")
        for name, raw in members.items():
            try:
                out[(lb, name)] = parse_entry(raw)
            except BadEntry as exc:
                raise BadEntry(f"lb {lb[:64]!r} member {name[:64]!r}: {exc}") from None
    return out


def _at(now: float, age: float | None) -> float | None:
    return None if age is None else now - age


def apply_entry(member: Member, entry: Entry, now: float) -> None:
    """Make ``member`` as the active had it ``age`` seconds ago (``now``: this balancer's
    monotonic clock, minus how long ago the entry arrived)."""
    member.activation = entry.activation
    member.state = entry.state
    member.lbfactor = entry.lbfactor
    member.distance = entry.distance
    member.lb_value = entry.lb_value
    member.first_error_time = _at(now, entry.first_error_age)
    member.last_error_time = _at(now, entry.last_error_age)
    member.last_error_reason = entry.reason
    member.health_down = entry.health_down
    member.slow_start_since = _at(now, entry.slow_start_age)


@dataclass(slots=True)
class LbStateCopy:
    """The newest entry of every (lb, member) the active sent, with when it arrived."""

    entries: dict[tuple[str, str], tuple[Entry, float]] = field(default_factory=dict)

    def take(self, part: Mapping[tuple[str, str], Entry], now: float) -> None:
        for key, entry in part.items():
            self.entries[key] = (entry, now)

    def apply(
        self, engines: Mapping[str, LbEngine], only: Iterable[tuple[str, str]] | None = None
    ) -> list[Applied]:
        """Apply what is known to the members present (``only`` those, e.g. the entries of
        the part just received: an active sends every member every heartbeat); one
        ``Applied`` per member applied."""
        wanted = None if only is None else set(only)
        lbs = engines if wanted is None else {lb: engines[lb] for lb, _ in wanted if lb in engines}
        applied = []
        for lb, engine in lbs.items():
            touched = False
            for member in engine.members:
                key = (lb, member.name)
                known = self.entries.get(key)
                if known is None or (wanted is not None and key not in wanted):
                    continue
                entry, received = known
                before = (member.activation, member.state)
                apply_entry(member, entry, received)  # its ages count from its arrival
                changed = before != (member.activation, member.state)
                applied.append(Applied(lb, member.name, entry.activation, entry.state, changed))
                touched = True
            if touched:
                engine.update_multipliers()
        return applied


@dataclass(frozen=True, slots=True)
class Applied:
    lb: str
    member: str
    activation: Activation
    state: State
    changed: bool  # the activation or the state differs from what the member had

    def __str__(self) -> str:
        return (f"lb={self.lb} member={self.member} activation={self.activation.value} "
                f"state={self.state.value} source=active")  # fmt: skip


# -- who serves ---------------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "takeovers": self.takeovers, "two_actives": self.two_actives,
            "other_active": self.other_active,
            "peers": [[p.id, p.role, p.host, list(p.listen), p.heard_ago] for p in self.peers],
        }  # fmt: skip

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> PairView:
        peers = tuple(Peer(i, r, h, tuple(lst), float(a)) for i, r, h, lst, a in v["peers"])
        return cls(str(v["role"]), peers, int(v["takeovers"]), int(v["two_actives"]),
                   bool(v["other_active"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Takeover:
    reason: str  # "active-silent", "active-shutdown", "no-active"
    peer: Peer | None
    silent: float  # s since the active was last heard (or since this one started)


@dataclass(frozen=True, slots=True)
class TwoActives:
    peer: Peer


@dataclass(frozen=True, slots=True)
class PeerHeard:
    """A balancer heard for the first time (or again after it was forgotten)."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class ActiveBack:
    """An active was heard again while the standby waited for the ports: it stays standby."""

    peer: Peer


PairEvent = PeerHeard | Takeover | TwoActives | ActiveBack


@dataclass(slots=True)
class _Heard:
    role: str
    host: str
    listen: tuple[str, ...]
    last: float
    shutdown: bool = False


class PairState:
    def __init__(self, me: str, *, standby: bool, drop_time: float, now: float) -> None:
        self.me = me
        self.role = STANDBY if standby else ACTIVE
        self.drop_time = drop_time
        self.started = now
        self.takeovers = 0
        self.two_actives = 0
        self.taking_over = False  # the standby decided and waits for the ports
        self._heard: dict[str, _Heard] = {}
        self._split: set[str] = set()  # other actives heard while this one is active

    def heard(
        self, sender: str, role: str, host: str, listen: tuple[str, ...], now: float,
        *, shutdown: bool = False,
    ) -> list[PairEvent]:  # fmt: skip
        if sender == self.me:
            return []
        known = self._heard.get(sender)
        self._heard[sender] = _Heard(role, host, listen, now, shutdown)
        events: list[PairEvent] = []
        if (known is None or known.role != role) and not shutdown:
            events.append(PeerHeard(self._peer(sender, now)))
        if role == ACTIVE and not shutdown:
            if self.role == ACTIVE and sender not in self._split:
                self._split.add(sender)
                self.two_actives += 1
                events.append(TwoActives(self._peer(sender, now)))
            elif self.taking_over:
                self.taking_over = False
                events.append(ActiveBack(self._peer(sender, now)))
        elif shutdown:  # the sender stops: it is off the page at once
            self._split.discard(sender)
            last_active = role == ACTIVE and not self._actives(now)
            if last_active and self.role == STANDBY and not self.taking_over:
                events.append(self._takeover("active-shutdown", sender, now, now))
            del self._heard[sender]
        return events

    def tick(self, now: float) -> list[PairEvent]:
        for sender in [s for s in self._split if not self._alive(s, now)]:
            self._split.discard(sender)
        for sender in [s for s, h in self._heard.items() if now - h.last > 10 * self.drop_time]:
            del self._heard[sender]  # long gone: off the status page
        if self.role != STANDBY or self.taking_over or self._actives(now):
            return []
        heard = [(h.last, s) for s, h in self._heard.items() if h.role == ACTIVE]
        if heard:
            last, sender = max(heard)
            return [self._takeover("active-silent", sender, last, now)]
        if now - self.started > self.drop_time:
            return [self._takeover("no-active", None, self.started, now)]
        return []

    def serving(self) -> None:
        """The ports are bound: this balancer is the active one now."""
        self.role, self.taking_over = ACTIVE, False
        self.takeovers += 1

    def view(self, now: float) -> PairView:
        peers = tuple(self._peer(s, now) for s in sorted(self._heard))
        return PairView(self.role, peers, self.takeovers, self.two_actives, bool(self._split))

    def _alive(self, sender: str, now: float) -> bool:
        h = self._heard.get(sender)
        return h is not None and not h.shutdown and now - h.last <= self.drop_time

    def _actives(self, now: float) -> list[str]:
        return [s for s, h in self._heard.items() if h.role == ACTIVE and self._alive(s, now)]

    def _takeover(self, reason: str, sender: str | None, since: float, now: float) -> Takeover:
        self.taking_over = True
        peer = self._peer(sender, now) if sender in self._heard else None
        return Takeover(reason, peer, now - since)

    def _peer(self, sender: str | None, now: float) -> Peer:
        h = self._heard[sender or ""]
        return Peer(sender or "", h.role, h.host, h.listen, round(now - h.last, 3))


def peers_text(view: PairView) -> Iterator[str]:
    for p in view.peers:
        where = ",".join(p.listen) or "-"
        yield f"{p.role} at {p.host} (listen {where}), heard {p.heard_ago:.1f}s ago"
