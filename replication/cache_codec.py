"""The cluster caches' two frame kinds and their fixed wire schema (codec.py dispatches here).

`CacheReq` asks a member to act on one cache key (or list its keys); `CacheReply` answers it on
the same connection, matched by `n`. Every field is always present (null where unused) and
checked: a value text must be the canonical JSON the sessions' codec makes (worker/values.py),
so a forged frame cannot plant a value a local put could not have stored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from worker.cache_table import KEY_OPS, MAX_VALUE_TEXT, Entry
from worker.names import NAME_RE
from worker.values import decode, encode

WRITER_RE = re.compile(r"[0-9a-f]{32}|local")
OP_ID_RE = re.compile(r"[0-9a-f]{32}")
MAX_KEY = 256
MAX_TEXT = MAX_VALUE_TEXT  # cluster_cache refuses a max_value_bytes above it
MAX_KEYS = 100_000
MAX_INT = (1 << 63) - 1
MAX_ERROR = 200
# get: the entry; put/cas/del: a write at the primary; copy: take this entry (backups,
# rebalance, replicated mode); evict: forget your copy (invalidated mode); keys: your live keys
OPS = frozenset({"get", "put", "cas", "del", "copy", "evict", "keys"})


class CacheWireError(ValueError):
    """A cache frame that does not follow its schema (codec.py turns it into a CodecError)."""


@dataclass(frozen=True, slots=True)
class CacheReq:
    n: int
    cache: str
    op: str
    key: str | None = None  # None only for keys
    text: str | None = None  # put, cas: the new value; copy: the entry's text (None: deleted)
    expected: str | None = None  # cas: the value it must have (None: absent)
    version: tuple[int, str] | None = None  # copy
    expires: float | None = None  # copy
    ttl: float | None = None  # put, cas
    op_id: str | None = None  # put, cas, del, copy: the write's id (a retry is not re-applied)
    op_ids: tuple[str, ...] = ()  # copy: the ids of the key's last writes (Entry.ops)

    def entry(self) -> Entry:
        assert self.version is not None
        return Entry(self.text, self.version, self.expires, self.op_ids)


@dataclass(frozen=True, slots=True)
class CacheReply:
    n: int
    ok: bool  # the write was applied / the key was found; False with `error`: refused
    text: str | None = None  # get: the entry's text
    version: tuple[int, str] | None = None  # get: the entry's version (None: no entry)
    expires: float | None = None
    keys: tuple[str, ...] | None = None
    error: str | None = None  # e.g. "unknown cache", "full: ..." (the put raises it)
    op_ids: tuple[str, ...] = ()  # get: the ids of the key's last writes (Entry.ops)

    def entry(self) -> Entry | None:
        if self.version is None:
            return None
        return Entry(self.text, self.version, self.expires, self.op_ids)


_REQ = {"t", "n", "c", "op", "k", "v", "x", "ver", "exp", "ttl", "id", "ids"}
_REPLY = {"t", "n", "ok", "v", "ver", "exp", "keys", "err", "ids"}


def to_wire(msg: CacheReq | CacheReply) -> dict[str, Any]:
    ver = None if msg.version is None else list(msg.version)
    if isinstance(msg, CacheReq):
        return {"t": "cache", "n": msg.n, "c": msg.cache, "op": msg.op, "k": msg.key,
                "v": msg.text, "x": msg.expected, "ver": ver, "exp": msg.expires,
                "ttl": msg.ttl, "id": msg.op_id, "ids": list(msg.op_ids)}  # fmt: skip
    return {"t": "cache-re", "n": msg.n, "ok": msg.ok, "v": msg.text, "ver": ver,
            "exp": msg.expires, "keys": None if msg.keys is None else list(msg.keys),
            "err": msg.error, "ids": list(msg.op_ids)}  # fmt: skip


def from_wire(wire: dict[str, Any]) -> CacheReq | CacheReply:
    kind = wire["t"]
    keys = _REQ if kind == "cache" else _REPLY
    if set(wire) != keys:
        raise CacheWireError(f"{kind}: fields must be {sorted(keys)}; check "
                             f"{sorted(set(wire) ^ keys)}")  # fmt: skip
    n = wire["n"]
    if type(n) is not int or not 1 <= n <= MAX_INT:
        raise CacheWireError(f"{kind}.n: expected an integer >= 1")
    text = value_text(wire["v"], f"{kind}.v")
    version = _version(wire["ver"], f"{kind}.ver")
    expires = _number(wire["exp"], f"{kind}.exp")
    ids = wire["ids"]
    if type(ids) is not list or len(ids) > KEY_OPS:
        raise CacheWireError(f"{kind}.ids: expected a list of at most {KEY_OPS} write ids")
    for op in ids:
        if type(op) is not str or not OP_ID_RE.fullmatch(op):
            raise CacheWireError(f"{kind}.ids: expected {OP_ID_RE.pattern}")
    op_ids = tuple(ids)
    if kind == "cache-re":
        if type(wire["ok"]) is not bool:
            raise CacheWireError("cache-re.ok: expected true or false")
        listed = wire["keys"]
        if listed is not None:
            if type(listed) is not list or len(listed) > MAX_KEYS:
                raise CacheWireError(f"cache-re.keys: expected a list of at most {MAX_KEYS}")
            listed = tuple(_key(k, "cache-re.keys") for k in listed)
        err = wire["err"]
        if err is not None and (type(err) is not str or len(err) > MAX_ERROR):
            raise CacheWireError(f"cache-re.err: expected a text of at most {MAX_ERROR}")
        return CacheReply(n, wire["ok"], text, version, expires, listed, err, op_ids)
    cache, op = wire["c"], wire["op"]
    if type(cache) is not str or not NAME_RE.fullmatch(cache):
        raise CacheWireError(f"cache.c: expected {NAME_RE.pattern}")
    if op not in OPS:
        raise CacheWireError(f"cache.op: expected one of {sorted(OPS)}, found {str(op)[:20]!r}")
    key = None if op == "keys" else _key(wire["k"], "cache.k")
    if op == "keys" and wire["k"] is not None:
        raise CacheWireError("cache.k: a keys request names no key")
    if op == "copy" and version is None:
        raise CacheWireError("cache.ver: a copy carries its version")
    if op in ("put", "cas") and text is None:
        raise CacheWireError("cache.v: a put carries its value")
    ttl = _number(wire["ttl"], "cache.ttl")
    if ttl is not None and ttl <= 0:
        raise CacheWireError("cache.ttl: expected a number of seconds > 0")
    op_id = wire["id"]
    if op_id is not None and (type(op_id) is not str or not OP_ID_RE.fullmatch(op_id)):
        raise CacheWireError(f"cache.id: expected {OP_ID_RE.pattern}")
    expected = value_text(wire["x"], "cache.x")
    return CacheReq(n, cache, op, key, text, expected, version, expires, ttl, op_id, op_ids)


def _key(v: object, where: str) -> str:
    if type(v) is not str or not 1 <= len(v) <= MAX_KEY:
        raise CacheWireError(f"{where}: expected a key of 1 to {MAX_KEY} characters")
    return v


def value_text(v: object, where: str) -> str | None:
    """A value text: None, or exactly the canonical JSON of a JSON-safe value."""
    if v is None:
        return None
    if type(v) is not str or len(v) > MAX_TEXT:
        raise CacheWireError(f"{where}: expected a JSON text of at most {MAX_TEXT} bytes")
    try:
        canonical = encode("value", decode(v))
    except (ValueError, TypeError, RecursionError, json.JSONDecodeError):
        raise CacheWireError(f"{where}: not a JSON value the sessions' codec accepts") from None
    if canonical != v:
        raise CacheWireError(f"{where}: not in canonical form")
    return v


def _version(v: object, where: str) -> tuple[int, str] | None:
    if v is None:
        return None
    if type(v) is not list or len(v) != 2 or type(v[0]) is not int or type(v[1]) is not str:
        raise CacheWireError(f"{where}: expected [counter, writer]")
    if not 1 <= v[0] <= MAX_INT or not WRITER_RE.fullmatch(v[1]):
        raise CacheWireError(f"{where}: version out of range")
    return (v[0], v[1])


def _number(v: object, where: str) -> float | None:
    if v is None:
        return None
    if type(v) not in (int, float) or not math.isfinite(v):  # type: ignore[arg-type]
        raise CacheWireError(f"{where}: expected a finite number")
    return float(v)  # type: ignore[arg-type]
