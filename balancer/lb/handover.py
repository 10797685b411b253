"""What a standby balancer needs of the active's lb state (balancer/pair.py, --standby): pure.

Per lb and member, what a status page or the engine changed and a fresh balancer would not
know from the files, as a short JSON entry:

    a   activation (ACT/DIS/STP: set on the status page)     s  state (OK, ERR, ERR/REC, ...)
    f   lbfactor      d  distance      v  lb_value (the pick's counter)
    e1  seconds since the first error of the streak, e2 since the last one (or null)
    r   the last error's reason      h  the health check holds it down
    ss  seconds since its slow start began (or null)
    x   the other fields the status page edited (route, redirect, domain, retries, ...)
        that differ from the files, by name; absent when none does

and per lb, under the member name "" (no member is named so), the lb's settings the status
page edited (sticky_session, method, retries, ...) that differ from the files, by name.
A field not sent is the files' value: an edit undone on the active is undone on the standby.

Error and slow-start times travel as ages, not as clock readings: each balancer's monotonic
clock is its own. A datagram carries at most ``PART_BUDGET`` bytes of entries (one Ethernet
MTU after sealing, so no IP fragmentation on a real network); a bigger state is split into
parts sent together every heartbeat, each useful alone (entries are independent). Past
``MAX_PARTS`` parts (some 600 members) the rest is not sent: the caller counts and logs it,
and those members start on the standby as the files say. The standby checks every entry
as the status page checks its form (balancer/status/commands.py's parsers and bounds: only what
the page could have set is taken), skips and counts an entry it cannot read (``BadEntry``; the
beat still counts as the active heard, and a key it does not know is ignored: an active of a
newer version), and applies each part as it arrives (``LbStateCopy``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from balancer.config.model import MAX_LBFACTOR, Activation, Lock, Method
from balancer.lb.controls import MEMBER_EDITS
from balancer.lb.engine import LbEngine
from balancer.lb.member import Member, State
from balancer.lb.settings import LbSettings
from balancer.status.commands import INT_MAX, LB_FIELDS, MEMBER_FIELDS, field_value
from replication.codec import MAX_PARTS  # the parts a balancer heartbeat may say it has

PART_BUDGET = 1200  # bytes of JSON entries per datagram (1500 MTU - IP/UDP - seal - envelope)
MAX_REASON = 64  # characters of an error reason carried
_STATES = {s.value: s for s in State}
_ACTIVATIONS = {a.value: a for a in Activation}
# the status page's member edits the base entry does not carry: in "x" when edited
CARRIED_EDITS = tuple(n for n in MEMBER_EDITS if n not in ("activation", "lbfactor", "distance"))
# the lb settings the status page edits (its LB_PARAMS): no other one travels, so a forged
# beat cannot set what the page cannot (a session cookie's name goes into a response header)
CARRIED_SETTINGS = tuple(LB_FIELDS)
SETTINGS_KEY = ""  # the member name an lb's settings entry is sent under


class BadEntry(ValueError):
    """An lb state entry that does not follow the schema (it alone is skipped)."""


# -- the lb state, out --------------------------------------------------------------------------


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


def member_entry(m: Member, now: float) -> dict[str, Any]:
    """What a standby needs of one member; ``now`` is the same monotonic clock as the member's
    times."""
    entry = {
        "a": m.activation.value, "s": m.state.value, "f": m.lbfactor, "d": m.distance,
        "v": m.lb_value, "e1": _age(now, m.first_error_time), "e2": _age(now, m.last_error_time),
        "r": m.last_error_reason[:MAX_REASON], "h": bool(m.health_down),
        "ss": _age(now, m.slow_start_since),
    }  # fmt: skip
    files = Member.from_config(m.config, now)
    edits = {k: getattr(m, k) for k in CARRIED_EDITS if getattr(m, k) != getattr(files, k)}
    if edits:
        entry["x"] = edits
    return entry


def _settings_json(value: object) -> object:
    return value.value if isinstance(value, Method | Lock) else value


def settings_entry(engine: LbEngine) -> dict[str, Any]:
    """The lb's settings that differ from the files (the status page edited them)."""
    settings, files = engine.settings, LbSettings.from_config(engine.config)
    return {
        name: _settings_json(getattr(settings, name))
        for name in CARRIED_SETTINGS
        if getattr(settings, name) != getattr(files, name)
    }


Entries = list[tuple[str, str, dict[str, Any]]]  # (lb, member, entry)


def lb_entries(engines: Mapping[str, LbEngine], now: float) -> Entries:
    out: Entries = []
    for lb, engine in engines.items():
        out.append((lb, SETTINGS_KEY, settings_entry(engine)))
        out += [(lb, m.name, member_entry(m, now)) for m in engine.members]
    return out


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
    edits: tuple[tuple[str, object], ...] = ()  # CARRIED_EDITS that differ from the files


@dataclass(frozen=True, slots=True)
class LbEdits:
    """An lb's settings entry: the fields that differ from the files."""

    values: tuple[tuple[str, object], ...]


_KEYS = frozenset({"a", "s", "f", "d", "v", "e1", "e2", "r", "h", "ss"})


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


def _page_values(
    fields: Mapping[str, Callable[[str], object]], v: object, known: Iterable[str]
) -> tuple[tuple[str, object], ...]:
    """The fields of ``known`` in ``v``, each read by the status page's own parser (its
    bounds, its name rule): what the page could not set is refused. A field this balancer
    does not know (a newer active's) is left out."""
    if type(v) is not dict:
        raise BadEntry("expected an object of fields")
    out = []
    for name in known:
        if name in v:
            try:
                out.append((name, field_value(fields, name, v[name])))
            except ValueError as exc:
                raise BadEntry(f"{name}: expected {exc}, found {str(v[name])[:20]!r}") from None
    return tuple(out)


def parse_settings(v: object) -> LbEdits:
    """An lb's settings entry: the fields the status page edits, checked as it checks them."""
    return LbEdits(_page_values(LB_FIELDS, v, CARRIED_SETTINGS))


def parse_entry(v: object) -> Entry:
    if type(v) is not dict or not set(v) >= _KEYS:  # keys a newer active adds are ignored
        raise BadEntry("expected an object with a, s, f, d, v, e1, e2, r, h, ss (and x)")
    a, s = v["a"], v["s"]
    activation = _ACTIVATIONS.get(a) if type(a) is str else None
    state = _STATES.get(s) if type(s) is str else None
    if activation is None or state is None:
        raise BadEntry(f"unknown activation {str(a)[:8]!r} or state {str(s)[:8]!r}")
    if type(v["r"]) is not str or len(v["r"]) > MAX_REASON or type(v["h"]) is not bool:
        raise BadEntry("r: expected a short string, h: true or false")
    return Entry(
        activation, state, _int(v["f"], 1, MAX_LBFACTOR, "f"), _int(v["d"], 0, INT_MAX, "d"),
        _int(v["v"], -(1 << 62), 1 << 62, "v"), _opt_age(v["e1"], "e1"), _opt_age(v["e2"], "e2"),
        v["r"], v["h"], _opt_age(v["ss"], "ss"),
        _page_values(MEMBER_FIELDS, v["x"], CARRIED_EDITS) if "x" in v else (),
    )  # fmt: skip


Part = dict[tuple[str, str], Entry | LbEdits]


def parse_part(lbs: Mapping[str, Any]) -> tuple[Part, list[str]]:
    """Every entry of one part that follows the schema, and why each other one was refused
    (the rest of the part is still good: one entry this balancer cannot read must not make
    the active's beat unheard). Two members of one lb given the same route are both refused:
    the engine tells members apart by route (the status page refuses such an edit too)."""
    out: Part = {}
    refused: list[str] = []
    for lb, members in lbs.items():
        if type(members) is not dict:
            refused.append(f"lb {lb[:64]!r}: expected an object of members")
            continue
        routes: dict[object, list[tuple[str, str]]] = {}
        for name, raw in members.items():
            try:
                entry = parse_settings(raw) if name == SETTINGS_KEY else parse_entry(raw)
            except BadEntry as exc:
                refused.append(f"lb {lb[:64]!r} member {name[:64]!r}: {exc}")
                continue
            out[(lb, name)] = entry
            route = dict(entry.edits).get("route") if isinstance(entry, Entry) else None
            if route is not None:
                routes.setdefault(route, []).append((lb, name))
        for route, keys in routes.items():
            if len(keys) > 1:
                for key in keys:
                    del out[key]
                    refused.append(f"lb {lb[:64]!r} member {key[1][:64]!r}: route {route} "
                                   "is given to another member too")  # fmt: skip
    return out, refused


def entry_wire(entry: Entry | LbEdits, later: float) -> dict[str, Any]:
    """An entry as the active sent it, its ages ``later`` seconds on (a copy carried across a
    step-down's restart, ``LbStateCopy.to_wire``)."""
    if isinstance(entry, LbEdits):
        return {name: _settings_json(value) for name, value in entry.values}

    def age(a: float | None) -> float | None:
        return None if a is None else round(a + later, 3)

    out: dict[str, Any] = {
        "a": entry.activation.value, "s": entry.state.value, "f": entry.lbfactor,
        "d": entry.distance, "v": entry.lb_value, "e1": age(entry.first_error_age),
        "e2": age(entry.last_error_age), "r": entry.reason, "h": entry.health_down,
        "ss": age(entry.slow_start_age),
    }  # fmt: skip
    if entry.edits:
        out["x"] = dict(entry.edits)
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
    files = Member.from_config(member.config, now)
    edited = dict(entry.edits)
    for name in CARRIED_EDITS:  # not sent: the files' value (an edit undone)
        setattr(member, name, edited.get(name, getattr(files, name)))


def apply_settings(engine: LbEngine, edits: LbEdits) -> None:
    """The lb's settings as the active has them: its edits, the files' values elsewhere."""
    files = LbSettings.from_config(engine.config)
    edited = dict(edits.values)
    for name in CARRIED_SETTINGS:
        setattr(engine.settings, name, edited.get(name, getattr(files, name)))


@dataclass(slots=True)
class LbStateCopy:
    """The newest entry of every (lb, member) the active sent, with when it arrived.

    ``window``: an entry not sent again within this many seconds of the newest part (the
    cluster's drop_time; the active sends every member every heartbeat) is of a member the
    active no longer has, or of an older active: it is forgotten, not applied at a takeover.
    """

    entries: dict[tuple[str, str], tuple[Entry | LbEdits, float]] = field(default_factory=dict)
    window: float = math.inf
    _sent: dict[tuple[str, str], tuple[object, int]] = field(default_factory=dict)
    _origin: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def take(
        self,
        part: Mapping[tuple[str, str], Entry | LbEdits],
        now: float,
        sent: tuple[object, int] | None = None,
        origin: str | None = None,
    ) -> None:
        """``sent``: (the sender's stream, its datagram counter): a datagram overtaken by a
        newer one of the same sender (reordered on the way) does not overwrite what that
        newer one said. ``origin``: the sending balancer's id (``to_wire`` may keep only
        one's)."""
        for key, entry in part.items():
            if sent is not None:
                newest = self._sent.get(key)
                if newest is not None and newest[0] == sent[0] and newest[1] > sent[1]:
                    continue
                self._sent[key] = sent
            self.entries[key] = (entry, now)
            self._origin[key] = origin
        if self.window < math.inf:
            stale = [k for k, (_, at) in self.entries.items() if now - at > self.window]
            for key in stale:
                del self.entries[key]
                self._sent.pop(key, None)
                self._origin.pop(key, None)

    def to_wire(self, now: float, origin: str | None = None) -> dict[str, dict[str, Any]]:
        """Every entry known (``origin``: only that balancer's), as the active sends them,
        aged to ``now`` (``parse_part`` reads it back): what a balancer restarting after a
        step-down carries to its next image."""
        out: dict[str, dict[str, Any]] = {}
        for (lb, name), (entry, at) in self.entries.items():
            if origin is not None and self._origin.get((lb, name)) != origin:
                continue
            out.setdefault(lb, {})[name] = entry_wire(entry, max(0.0, now - at))
        return out

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
            key = (lb, SETTINGS_KEY)
            known = self.entries.get(key)
            if known is not None and (wanted is None or key in wanted):
                assert isinstance(known[0], LbEdits)
                apply_settings(engine, known[0])
            touched = False
            taking = {}
            for member in engine.members:
                key = (lb, member.name)
                known = self.entries.get(key)
                if known is not None and (wanted is None or key in wanted):
                    taking[member.name] = known
            clash = _route_clashes(engine, taking)
            for member in engine.members:
                known = taking.get(member.name)
                if known is None or member.name in clash:
                    continue
                entry, received = known
                assert isinstance(entry, Entry)
                before = (member.activation, member.state)
                apply_entry(member, entry, received)  # its ages count from its arrival
                changed = before != (member.activation, member.state)
                applied.append(Applied(lb, member.name, entry.activation, entry.state, changed))
                touched = True
            if touched:
                engine.update_multipliers()
        return applied


def _route_clashes(
    engine: LbEngine, taking: Mapping[str, tuple[Entry | LbEdits, float]]
) -> set[str]:
    """Members whose entry would give them a route another member has (or would have): not
    applied, as the status page refuses such an edit (the engine tells members apart by
    route; two parts may each carry one of two clashing edits)."""
    routes: dict[str, list[str]] = {}
    for m in engine.members:
        known = taking.get(m.name)
        route = m.route
        if known is not None:
            assert isinstance(known[0], Entry)
            route = str(dict(known[0].edits).get("route", m.config.route or m.name))
        routes.setdefault(route, []).append(m.name)
    return {n for names in routes.values() if len(names) > 1 for n in names if n in taking}


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
