"""Cluster messages and their one wire form: JSON with a fixed schema per type. Never pickle.

Every message is a JSON object whose `t` names its type; the field set of each type is fixed
and every field is checked (type, range, shape) on the way in, so a message a peer sends is
either exactly one of the dataclasses below or a CodecError naming the field. Session content
reuses the worker's strict wire forms (SessionDelta / SessionState.from_wire). Envelopes are
authenticated before they get here (seal.py); this is the second line, not the first.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyjk.lbfactor import MAX_LBFACTOR
from worker.delta import SessionDelta, SessionState, WireFormatError
from worker.names import NAME_RE
from worker.session_ids import check_route

from . import cache_codec
from .cache_codec import CacheReply, CacheReq
from .election import Advert
from .ledger import RecordedResponse, RecordError
from .member_info import MemberInfo
from .merge import Replica, SessionMeta, Stamp
from .seal import Kind, Opener, SealError

MEMBER_ID_RE = re.compile(r"[0-9a-f]{32}")
RANDOM_PART_RE = re.compile(r"[0-9A-F]{32}")
FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")
CLUSTER_NAME_RE = NAME_RE  # one pattern for every name (worker/names.py)
REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")  # what the worker accepts in the header
MAX_ITEMS = 1_000_000
MAX_INT = (1 << 63) - 1
MAX_BODY = 1 << 20  # the ceiling for recorded bodies on the wire; the ledger's bound is lower


class CodecError(ValueError):
    """A message that is not valid JSON or does not follow its type's schema."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    cluster: str
    member: MemberInfo
    seq: int  # the member's newest delta sequence number
    digest: str  # 16 hex: a fingerprint of every live session the member holds
    shutdown: bool = False
    election: Advert | None = None  # cluster singletons (election.py), as "svc" on the wire


@dataclass(frozen=True, slots=True)
class BalancerBeat:
    """A heartbeat of a balancer of an active/standby pair (balancer/standby.py). A balancer
    is never a cluster member: workers count and ignore these (no session, cache or singleton
    ever lands on a balancer). ``lbs`` is the active's lb state, checked entry by entry by
    balancer/pair.py; a big state travels as ``parts`` datagrams, this one being ``part``."""

    cluster: str
    id: str  # 32 hex: the sealing sender's id
    role: str  # "active" or "standby"
    start: float  # Unix seconds when the balancer started
    host: str  # the multicast interface it sends from (an IP literal)
    listen: tuple[str, ...]  # its --listen addresses, as given
    part: int = 1
    parts: int = 1
    lbs: dict[str, Any] | None = None  # lb name -> member name -> entry (balancer/pair.py)
    shutdown: bool = False


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on every connection (and the reply to it); doubles as a TCP heartbeat."""

    cluster: str
    member: MemberInfo
    seq: int
    to: str | None = None  # the member id this connection is meant for (None: a probe)
    reply: bool = False
    shutdown: bool = False
    # A probe from a reader of the membership that is no member (a balancer's dynamic lb with
    # static_members): answered, never added. Optional on the wire (absent = false).
    observer: bool = False
    election: Advert | None = None  # as in Heartbeat: static members have no multicast


@dataclass(frozen=True, slots=True)
class DeltaMsg:
    n: int  # request number on this connection (for the ack)
    seq: int  # the origin's sequence number
    delta: SessionDelta
    stamp: Stamp
    base: Stamp  # the session's version the writer had before this write
    request_id: str | None = None
    response: RecordedResponse | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    n: int


@dataclass(frozen=True, slots=True)
class Pull:
    """Ask for sessions: all (everything None), those changed since a sequence number, those
    named, or those whose fingerprint differs from `digest` (anti-entropy)."""

    n: int
    since: int | None = None
    ids: tuple[str, ...] | None = None
    digest: tuple[tuple[str, str], ...] | None = None
    dead: tuple[tuple[str, Stamp], ...] = ()
    # the asker's version of sessions it holds: of their recorded responses, only those of
    # newer writes come back (sessions not listed come with all of theirs)
    have: tuple[tuple[str, Stamp], ...] = ()


@dataclass(frozen=True, slots=True)
class StateChunk:
    n: int
    final: bool
    seq: int  # the sender's sequence number when it took the snapshot
    sessions: tuple[Replica, ...] = ()
    dead: tuple[tuple[str, Stamp], ...] = ()
    # on the wire [request id, response], or [request id, response, random part, stamp] when
    # the record is attached to its write (RecordedResponse.session / .stamp)
    responses: tuple[tuple[str, RecordedResponse], ...] = ()


@dataclass(frozen=True, slots=True)
class Touch:
    items: tuple[tuple[str, float], ...]


Message = (
    BalancerBeat
    | Heartbeat
    | Hello
    | DeltaMsg
    | Ack
    | Pull
    | StateChunk
    | Touch
    | CacheReq
    | CacheReply
)
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


# -- encoding ---------------------------------------------------------------------------------
def _recorded(request_id: str, record: RecordedResponse) -> list[Any]:
    if record.session is None or record.stamp is None:
        return [request_id, record.to_wire()]
    return [request_id, record.to_wire(), record.session, list(record.stamp)]


def _member(m: MemberInfo) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "id": m.id, "route": m.route, "host": m.host, "port": m.port, "start": m.start
    }  # fmt: skip
    if m.http_port:
        wire["http"] = [m.http_host, m.http_port]
        wire["lbfactor"] = m.lbfactor
    if m.leaving:
        wire["leaving"] = True
    return wire


def _meta(meta: SessionMeta) -> dict[str, Any]:
    return {
        "attrs": {k: list(v) for k, v in meta.attrs.items()},
        "removed": {k: list(v) for k, v in meta.removed.items()},
        "id": list(meta.id_stamp),
        "mi": list(meta.max_inactive_stamp),
    }


def to_wire(msg: Message) -> dict[str, Any]:
    if isinstance(msg, Heartbeat):
        hb = {
            "t": "hb",
            "cluster": msg.cluster,
            "member": _member(msg.member),
            "seq": msg.seq,
            "digest": msg.digest,
            "shutdown": msg.shutdown,
        }
        if msg.election is not None:
            hb["svc"] = advert_to_wire(msg.election)
        return hb
    if isinstance(msg, BalancerBeat):
        return {"t": "lb", "cluster": msg.cluster, "id": msg.id, "role": msg.role,
                "start": msg.start, "host": msg.host, "listen": list(msg.listen),
                "part": [msg.part, msg.parts], "lbs": msg.lbs or {},
                "shutdown": msg.shutdown}  # fmt: skip
    if isinstance(msg, Hello):
        hello = {
            "t": "hello",
            "cluster": msg.cluster,
            "member": _member(msg.member),
            "seq": msg.seq,
            "to": msg.to,
            "reply": msg.reply,
            "shutdown": msg.shutdown,
        }
        if msg.observer:
            hello["observer"] = True
        if msg.election is not None:
            hello["svc"] = advert_to_wire(msg.election)
        return hello
    if isinstance(msg, DeltaMsg):
        wire = {"t": "delta", "n": msg.n, "seq": msg.seq, "delta": msg.delta.to_wire(),
                "stamp": list(msg.stamp), "base": list(msg.base)}  # fmt: skip
        if msg.request_id is not None and msg.response is not None:
            wire["rid"], wire["resp"] = msg.request_id, msg.response.to_wire()
        return wire
    if isinstance(msg, Ack):
        return {"t": "ack", "n": msg.n}
    if isinstance(msg, Pull):
        pull = {
            "t": "pull", "n": msg.n, "since": msg.since,
            "ids": None if msg.ids is None else list(msg.ids),
            "digest": None if msg.digest is None else [list(d) for d in msg.digest],
            "dead": [[rp, list(s)] for rp, s in msg.dead],
        }  # fmt: skip
        if msg.have:
            pull["have"] = [[rp, list(s)] for rp, s in msg.have]
        return pull
    if isinstance(msg, StateChunk):
        return {
            "t": "state", "n": msg.n, "final": msg.final, "seq": msg.seq,
            "sessions": [{"state": r.state.to_wire(), "meta": _meta(r.meta)} for r in msg.sessions],
            "dead": [[rp, list(s)] for rp, s in msg.dead],
            "responses": [_recorded(rid, r) for rid, r in msg.responses],
        }  # fmt: skip
    if isinstance(msg, Touch):
        return {"t": "touch", "items": [[rp, at] for rp, at in msg.items]}
    if isinstance(msg, CacheReq | CacheReply):
        return cache_codec.to_wire(msg)
    raise TypeError(f"not a cluster message: {type(msg).__name__}")


def encode(msg: Message) -> bytes:
    return _ENCODER.encode(to_wire(msg)).encode("ascii")


# -- decoding ---------------------------------------------------------------------------------
class _Obj:
    """One JSON object with an exact key set; accessors check types and name the field."""

    def __init__(self, where: str, value: object, keys: set[str]) -> None:
        if type(value) is not dict:
            raise CodecError(f"{where}: expected an object, found {type(value).__name__}")
        if set(value) != keys:
            odd = sorted(set(value) ^ keys)
            raise CodecError(f"{where}: fields must be {sorted(keys)}; check {odd}")
        self.where, self.d = where, value

    def fail(self, name: str, problem: str) -> CodecError:
        return CodecError(f"{self.where}.{name}: {problem}")

    def integer(self, name: str, low: int = 0) -> int:
        v = self.d[name]
        if type(v) is not int or not low <= v <= MAX_INT:
            raise self.fail(name, f"expected an integer >= {low}, found {v!r}")
        return v

    def number(self, name: str) -> float:
        return _num(self.d[name], f"{self.where}.{name}")

    def flag(self, name: str) -> bool:
        if type(self.d[name]) is not bool:
            raise self.fail(name, "expected true or false")
        return bool(self.d[name])

    def text(self, name: str, pattern: re.Pattern[str]) -> str:
        v = self.d[name]
        if type(v) is not str or not pattern.fullmatch(v):
            raise self.fail(name, f"expected {pattern.pattern}, found {str(v)[:80]!r}")
        return v

    def items(self, name: str, *, nullable: bool = False) -> list[Any] | None:
        v = self.d[name]
        if v is None and nullable:
            return None
        if type(v) is not list or len(v) > MAX_ITEMS:
            raise self.fail(name, f"expected a list of at most {MAX_ITEMS} items")
        return v


def _num(v: object, where: str) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):  # type: ignore[arg-type]
        raise CodecError(f"{where}: expected a finite number, found {v!r}")
    return float(v)  # type: ignore[arg-type]


def _stamp(v: object, where: str) -> Stamp:
    if type(v) is not list or len(v) != 2 or type(v[0]) is not int or type(v[1]) is not str:
        raise CodecError(f"{where}: expected a stamp [counter, member id]")
    if not 0 <= v[0] <= MAX_INT or not (v[1] == "" or MEMBER_ID_RE.fullmatch(v[1])):
        raise CodecError(f"{where}: stamp out of range")
    if (v[0] == 0) != (v[1] == ""):
        raise CodecError(f"{where}: only the zero stamp may lack a member id")
    return (v[0], v[1])


_MEMBER_KEYS = {"id", "route", "host", "port", "start"}
_MEMBER_OPTIONAL = ({"http", "lbfactor"}, {"leaving"})  # each group present whole or not at all


def _ip(o: _Obj, name: str, host: object) -> str:
    try:
        ipaddress.ip_address(host if type(host) is str else "")
    except ValueError:
        raise o.fail(name, f"expected an IP address, found {str(host)[:60]!r}") from None
    return host  # type: ignore[return-value]


def _member_info(v: object, where: str) -> MemberInfo:
    keys = set(_MEMBER_KEYS)
    if type(v) is dict:
        for group in _MEMBER_OPTIONAL:
            if group & v.keys():
                keys |= group
    o = _Obj(where, v, keys)
    host = _ip(o, "host", o.d["host"])
    route = o.d["route"]
    try:
        check_route(route)
    except (TypeError, ValueError) as exc:
        raise o.fail("route", str(exc)) from None
    start = o.number("start")
    if start <= 0:
        raise o.fail("start", "expected a positive time")
    port = o.integer("port", 1)
    if port > 65535:
        raise o.fail("port", f"{port} is not a TCP port")
    http_host, http_port, lbfactor = "", 0, 1
    if "http" in o.d:
        http = o.d["http"]
        if type(http) is not list or len(http) != 2:
            raise o.fail("http", "expected [IP address, port]")
        http_host = _ip(o, "http", http[0])
        if type(http[1]) is not int or not 0 < http[1] <= 65535:
            raise o.fail("http", f"{str(http[1])[:20]} is not a TCP port")
        http_port = http[1]
        lbfactor = o.integer("lbfactor", 1)
        if lbfactor > MAX_LBFACTOR:
            raise o.fail("lbfactor", f"expected 1..{MAX_LBFACTOR}, found {lbfactor}")
    leaving = o.flag("leaving") if "leaving" in o.d else False
    return MemberInfo(o.text("id", MEMBER_ID_RE), route, host, port, start, http_host, http_port,
                      lbfactor, leaving)  # fmt: skip


def _random_part(v: object, where: str) -> str:
    if type(v) is not str or not RANDOM_PART_RE.fullmatch(v):
        raise CodecError(f"{where}: expected a session id's 32-hex random part")
    return v


def _dead(items: list[Any], where: str) -> tuple[tuple[str, Stamp], ...]:
    out = []
    for i, item in enumerate(items):
        if type(item) is not list or len(item) != 2:
            raise CodecError(f"{where}[{i}]: expected [random part, stamp]")
        out.append((_random_part(item[0], f"{where}[{i}]"), _stamp(item[1], f"{where}[{i}]")))
    return tuple(out)


def _names(v: object, where: str) -> dict[str, Stamp]:
    if type(v) is not dict:
        raise CodecError(f"{where}: expected an object of attribute stamps")
    if "" in v:
        raise CodecError(f"{where}: attribute names must not be empty")
    return {k: _stamp(s, f"{where}[{k[:40]!r}]") for k, s in v.items()}


def _replica(v: object, where: str) -> Replica:
    o = _Obj(where, v, {"state", "meta"})
    m = _Obj(f"{where}.meta", o.d["meta"], {"attrs", "removed", "id", "mi"})
    try:
        state = SessionState.from_wire(o.d["state"])
    except WireFormatError as exc:
        raise CodecError(f"{where}.state: {exc}") from None
    attrs, removed = (
        _names(m.d["attrs"], f"{where}.meta.attrs"),
        _names(m.d["removed"], f"{where}.meta.removed"),
    )
    if set(attrs) != set(state.attributes) or set(attrs) & set(removed):
        raise CodecError(f"{where}.meta: stamps must cover exactly the attributes present")
    meta = SessionMeta(attrs, removed, _stamp(m.d["id"], f"{where}.meta.id"),
                       _stamp(m.d["mi"], f"{where}.meta.mi"))  # fmt: skip
    return Replica(state, meta)


def _response(v: object, where: str) -> RecordedResponse:
    try:
        return RecordedResponse.from_wire(v, MAX_BODY)
    except RecordError as exc:
        raise CodecError(f"{where}: {exc}") from None


_FIELDS = {
    "hb": {"t", "cluster", "member", "seq", "digest", "shutdown"},
    "hello": {"t", "cluster", "member", "seq", "to", "reply", "shutdown"},
    "delta": {"t", "n", "seq", "delta", "stamp", "base"},
    "ack": {"t", "n"},
    "pull": {"t", "n", "since", "ids", "digest", "dead"},
    "state": {"t", "n", "final", "seq", "sessions", "dead", "responses"},
    "touch": {"t", "items"},
    "lb": {"t", "cluster", "id", "role", "start", "host", "listen", "part", "lbs", "shutdown"},
}
BALANCER_ROLES = ("active", "standby")  # balancer/pair.py's ACTIVE, STANDBY
MAX_LISTEN = 16
MAX_PARTS = 64
# A balancer's --listen as it says it (balancer/__main__.py ``Listen``, whose parse_listen
# refuses anything else at start): a DNS name (underscores too, as resolvers allow), an IPv4
# address, or a bracketed IPv6 address with its zone (``[fe80::1%eth0]``).
LISTEN_RE = re.compile(
    r"(https://)?(\[[0-9A-Fa-f:.]{2,45}(%[0-9A-Za-z_.-]{1,64})?\]|[0-9A-Za-z_.-]{1,253})"
    r":[0-9]{1,5}"
)


def from_wire(wire: object) -> Message:
    kind = wire.get("t") if type(wire) is dict else None
    if kind in ("cache", "cache-re"):  # the cluster caches' frames (cache_codec.py)
        try:
            return cache_codec.from_wire(wire)  # type: ignore[arg-type]
        except cache_codec.CacheWireError as exc:
            raise CodecError(str(exc)) from None
    if type(kind) is not str or kind not in _FIELDS:
        raise CodecError(f"message: unknown or missing type {str(kind)[:20]!r}")
    keys = _FIELDS[kind]
    if kind == "delta" and type(wire) is dict and "rid" in wire:
        keys = keys | {"rid", "resp"}
    if kind == "pull" and type(wire) is dict and "have" in wire:
        keys = keys | {"have"}
    if kind == "hello" and type(wire) is dict and "observer" in wire:
        keys = keys | {"observer"}
    if kind in ("hb", "hello") and type(wire) is dict and "svc" in wire:
        keys = keys | {"svc"}
    o = _Obj(kind, wire, keys)
    if kind == "lb":
        return _balancer_beat(o)
    if kind in ("hb", "hello"):
        cluster = o.text("cluster", CLUSTER_NAME_RE)
        member = _member_info(o.d["member"], f"{kind}.member")
        advert = advert_from_wire(o.d["svc"], f"{kind}.svc") if "svc" in o.d else None
        if kind == "hb":
            return Heartbeat(cluster, member, o.integer("seq"), o.text("digest", FINGERPRINT_RE),
                             o.flag("shutdown"), advert)  # fmt: skip
        to = None if o.d["to"] is None else o.text("to", MEMBER_ID_RE)
        observer = o.flag("observer") if "observer" in o.d else False
        return Hello(cluster, member, o.integer("seq"), to, o.flag("reply"), o.flag("shutdown"),
                     observer, advert)  # fmt: skip
    if kind == "delta":
        try:
            delta = SessionDelta.from_wire(o.d["delta"])
        except WireFormatError as exc:
            raise CodecError(f"delta.delta: {exc}") from None
        rid = resp = None
        if "rid" in o.d:
            rid = o.text("rid", REQUEST_ID_RE)
            resp = _response(o.d["resp"], "delta.resp")
        stamp, base = _stamp(o.d["stamp"], "delta.stamp"), _stamp(o.d["base"], "delta.base")
        return DeltaMsg(o.integer("n", 1), o.integer("seq", 1), delta, stamp, base, rid, resp)
    if kind == "ack":
        return Ack(o.integer("n", 1))
    if kind == "pull":
        since = None if o.d["since"] is None else o.integer("since")
        ids = o.items("ids", nullable=True)
        digest = o.items("digest", nullable=True)
        if digest is not None:
            for i, d in enumerate(digest):
                if type(d) is not list or len(d) != 2:
                    raise CodecError(f"pull.digest[{i}]: expected [random part, fingerprint]")
                _random_part(d[0], f"pull.digest[{i}]")
                if type(d[1]) is not str or not FINGERPRINT_RE.fullmatch(d[1]):
                    raise CodecError(f"pull.digest[{i}]: bad fingerprint")
        return Pull(
            o.integer("n", 1), since,
            None if ids is None else tuple(_random_part(x, "pull.ids") for x in ids),
            None if digest is None else tuple((d[0], d[1]) for d in digest),
            _dead(o.items("dead") or [], "pull.dead"),
            _dead(o.items("have") or [], "pull.have") if "have" in o.d else (),
        )  # fmt: skip
    if kind == "state":
        responses = []
        for i, item in enumerate(o.items("responses") or []):
            where = f"state.responses[{i}]"
            if type(item) is not list or len(item) not in (2, 4) or type(item[0]) is not str:
                raise CodecError(
                    f"{where}: expected [request id, response] or [request id, response, "
                    "random part, stamp]"
                )
            if not REQUEST_ID_RE.fullmatch(item[0]):
                raise CodecError(f"{where}: bad request id")
            record = _response(item[1], where)
            if len(item) == 4:
                stamp = _stamp(item[3], f"{where}.stamp")
                if stamp == (0, ""):
                    raise CodecError(f"{where}.stamp: a write's stamp is never zero")
                record = record.attached(_random_part(item[2], f"{where}.session"), stamp)
            responses.append((item[0], record))
        sessions = o.items("sessions") or []
        return StateChunk(
            o.integer("n", 1),
            o.flag("final"),
            o.integer("seq"),
            tuple(_replica(s, f"state.sessions[{i}]") for i, s in enumerate(sessions)),
            _dead(o.items("dead") or [], "state.dead"),
            tuple(responses),
        )
    items = []
    for i, item in enumerate(o.items("items") or []):
        if type(item) is not list or len(item) != 2:
            raise CodecError(f"touch.items[{i}]: expected [random part, time]")
        items.append((_random_part(item[0], f"touch.items[{i}]"), _num(item[1], "touch.items")))
    return Touch(tuple(items))


def _balancer_beat(o: _Obj) -> BalancerBeat:
    role = o.d["role"]
    if role not in BALANCER_ROLES:
        raise o.fail("role", f"expected one of {BALANCER_ROLES}, found {str(role)[:20]!r}")
    start = o.number("start")
    if start <= 0:
        raise o.fail("start", "expected a positive time")
    listen = o.items("listen") or []
    if len(listen) > MAX_LISTEN or not all(
        type(x) is str and LISTEN_RE.fullmatch(x) for x in listen
    ):
        raise o.fail("listen", f"expected at most {MAX_LISTEN} [https://]HOST:PORT strings")
    part = o.d["part"]
    if (type(part) is not list or len(part) != 2 or type(part[0]) is not int
            or type(part[1]) is not int or not 1 <= part[0] <= part[1] <= MAX_PARTS):  # fmt: skip
        raise o.fail("part", f"expected [part, parts] with 1 <= part <= parts <= {MAX_PARTS}")
    lbs = o.d["lbs"]
    if type(lbs) is not dict:
        raise o.fail("lbs", "expected an object")
    return BalancerBeat(
        o.text("cluster", CLUSTER_NAME_RE), o.text("id", MEMBER_ID_RE), role, start,
        _ip(o, "host", o.d["host"]), tuple(listen), part[0], part[1], lbs, o.flag("shutdown"),
    )  # fmt: skip


# -- cluster singletons: the optional "svc" field of heartbeats and hellos -------------------
SINGLETON_NAME_RE = NAME_RE
MAX_SINGLETONS = 256


def advert_to_wire(advert: Advert) -> dict[str, Any]:
    return {"runs": sorted(advert.runs), "owns": dict(sorted(advert.owns.items())),
            "epochs": dict(sorted(advert.epochs.items())),
            "seen": {k: list(v) for k, v in sorted(advert.seen.items())}}  # fmt: skip


def advert_from_wire(v: object, where: str) -> Advert:
    o = _Obj(where, v, {"runs", "owns", "epochs", "seen"})
    runs = o.items("runs") or []
    if len(runs) > MAX_SINGLETONS:
        raise o.fail("runs", f"at most {MAX_SINGLETONS} names")
    for i, name in enumerate(runs):
        if type(name) is not str or not SINGLETON_NAME_RE.fullmatch(name):
            raise CodecError(f"{where}.runs[{i}]: expected {SINGLETON_NAME_RE.pattern}")
    seen = o.d["seen"]
    if type(seen) is not dict or len(seen) > MAX_SINGLETONS:
        raise o.fail("seen", f"expected an object of at most {MAX_SINGLETONS} claims")
    claims = {}
    for name, claim in seen.items():
        if not SINGLETON_NAME_RE.fullmatch(name):
            raise o.fail("seen", f"bad singleton name {name[:70]!r}")
        if (type(claim) is not list or len(claim) != 2 or type(claim[0]) is not str
                or not MEMBER_ID_RE.fullmatch(claim[0]) or type(claim[1]) is not int
                or not 1 <= claim[1] <= MAX_INT):  # fmt: skip
            raise CodecError(f"{where}.seen[{name!r}]: expected [member id, epoch >= 1]")
        claims[name] = (claim[0], claim[1])
    return Advert(frozenset(runs), _epochs(o.d["owns"], f"{where}.owns"),
                  _epochs(o.d["epochs"], f"{where}.epochs"), claims)  # fmt: skip


def _epochs(v: object, where: str) -> dict[str, int]:
    if type(v) is not dict or len(v) > MAX_SINGLETONS:
        raise CodecError(f"{where}: expected an object of at most {MAX_SINGLETONS} epochs")
    for name, epoch in v.items():
        if not SINGLETON_NAME_RE.fullmatch(name):
            raise CodecError(f"{where}: bad singleton name {name[:70]!r}")
        if type(epoch) is not int or not 1 <= epoch <= MAX_INT:
            raise CodecError(f"{where}[{name!r}]: expected an epoch >= 1, found {epoch!r}")
    return dict(v)


def decode(data: bytes) -> Message:
    try:
        wire = json.loads(data.decode("utf-8"), parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"message: not JSON ({str(exc)[:80]})") from None
    return from_wire(wire)


def _refuse(token: str) -> Any:
    raise ValueError(f"{token} is not allowed")


def open_datagram(opener: Opener, data: bytes, now: float) -> Heartbeat | BalancerBeat:
    """A multicast datagram → the Heartbeat (a worker's) or BalancerBeat (a balancer's) it
    seals, or SealError / CodecError (the caller counts the reason). The sender id inside must
    be the envelope's: a member cannot speak for another with its own key stream."""
    opened = opener.open(data, now)
    if opened.kind is not Kind.HEARTBEAT:
        raise SealError("malformed", "a frame envelope in a datagram")
    msg = decode(opened.payload)
    if isinstance(msg, BalancerBeat) and msg.id == opened.sender.hex():
        return msg
    if not isinstance(msg, Heartbeat) or msg.member.id != opened.sender.hex():
        raise CodecError("not a heartbeat from its sender")
    return msg


def open_group_datagram(
    opener: Opener, data: bytes, now: float, dropped: Callable[[str, str], None]
) -> Heartbeat | BalancerBeat | None:
    """As ``open_datagram``, or None after ``dropped(reason, detail)``: what every reader of
    the group (a worker, a balancer's dynamic lb, a balancer pair) does with a bad one."""
    try:
        return open_datagram(opener, data, now)
    except SealError as exc:
        dropped(exc.reason, str(exc))
    except CodecError as exc:
        dropped("malformed", str(exc))
    return None


def open_heartbeat(opener: Opener, data: bytes, now: float) -> Heartbeat:
    """As ``open_datagram``, for a reader that knows no balancer heartbeats: one is a
    CodecError."""
    msg = open_datagram(opener, data, now)
    if not isinstance(msg, Heartbeat):
        raise CodecError("a balancer's heartbeat, not a member's")
    return msg
