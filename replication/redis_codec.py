"""Sessions and recorded responses as Redis keys and fields. Pure: no I/O.

One session is one hash, `<prefix>:{<random part>}`; the braces are a Redis Cluster hash tag,
so the session and the records of its writes (`<prefix>:{<random part>}:r:<request id>`) sit
in one slot and one script writes them together. Fields:

- `m:id` (full id, route included), `m:created`, `m:max_inactive` (seconds; <= 0: never
  expires) — the session's metadata;
- `a:<name>` — one field per attribute, its canonical JSON text (worker/values.py), so a
  request writes only the attributes it changed (HSET/HDEL) and concurrent requests merge
  attribute by attribute, as the built-in store does.

The key's TTL is `max_inactive` from the last access (load and write scripts set it). A
request's last delta's recorded response (exactly once) is a plain string key with the ledger's
TTL, written by the same script as the delta; when the request created (or ended) the session,
a copy also goes under `<prefix>:r:<request id>`, where a retry without the new cookie finds it.

Everything read back is checked: a hash or record that does not follow this schema raises
StoreFormatError (the caller refuses the request, logs and counts it); nothing is ever
unpickled or evaluated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker import values
from worker.delta import SessionDelta, SessionState
from worker.session_ids import split_session_id

from .ledger import RecordedResponse, RecordError

META_ID, META_CREATED, META_MAX_INACTIVE = b"m:id", b"m:created", b"m:max_inactive"
ATTR = b"a:"

# KEYS[1] the session hash, KEYS[2] its record key for this request (or an unused name).
# ARGV: mode ("c" create, "u" update, "d" delete), record ("" or JSON), record TTL ms,
# number of field/value pairs to set, the pairs, number of fields to delete, the fields.
# An update of a session that is gone (invalidated or expired meanwhile) writes nothing: a
# late write must not bring back half a session. Returns 1 when written, 0 when gone.
WRITE_SCRIPT = """
local mode = ARGV[1]
if mode == 'd' then
  redis.call('DEL', KEYS[1])
elseif mode == 'u' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
else
  local n = tonumber(ARGV[4])
  if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n)) end
  local i = 5 + 2 * n
  local d = tonumber(ARGV[i])
  if d > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, i + 1, i + d)) end
  local mi = tonumber(redis.call('HGET', KEYS[1], 'm:max_inactive'))
  if mi and mi > 0 then
    redis.call('PEXPIRE', KEYS[1], math.ceil(mi * 1000))
  else
    redis.call('PERSIST', KEYS[1])
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

# KEYS[1] the session hash, KEYS[2] a record key. Returns {hash fields, record or false}; a
# read is an access, so the session's TTL starts again (as Tomcat's lastAccessedTime).
LOAD_SCRIPT = """
local h = redis.call('HGETALL', KEYS[1])
if #h > 0 then
  local mi = tonumber(redis.call('HGET', KEYS[1], 'm:max_inactive'))
  if mi and mi > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(mi * 1000)) end
end
return {h, redis.call('GET', KEYS[2])}
"""


class StoreFormatError(ValueError):
    """A value read from the store that does not follow the schema; says which key and why."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"malformed value in the session store: key {key!r}: {problem}")


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def session(self, random_part: str) -> str:
        return f"{self.prefix}:{{{random_part}}}"

    def record(self, random_part: str, request_id: str) -> str:
        return f"{self.prefix}:{{{random_part}}}:r:{request_id}"

    def loose_record(self, request_id: str) -> str:
        return f"{self.prefix}:r:{request_id}"

    # the app's cluster caches (redis_cache.py): one hash tag per cache, so a cache's entries
    # and its index share a slot and one script changes both atomically
    def cache_entry(self, cache: str, key: str) -> str:
        return f"{self.prefix}:c:{{{cache}}}:k:{key}"

    def cache_index(self, cache: str) -> str:
        return f"{self.prefix}:c:{{{cache}}}:i"


@dataclass(frozen=True, slots=True)
class Write:
    """One delta as the write script's keys and arguments (script), or a plain SET of a
    record with its TTL in milliseconds (not script: keys (key,), args (text, ttl_ms))."""

    keys: tuple[str, ...]
    args: tuple[str | bytes, ...]
    script: bool = True

    @property
    def size(self) -> int:
        """Bytes of keys and arguments sent (the script text aside): the bench's bytes/write."""
        return sum(len(k) for k in self.keys) + sum(len(a) for a in self.args)


def write_of(
    keys: Keys,
    delta: SessionDelta,
    *,
    request_id: str | None = None,
    record: RecordedResponse | None = None,
    record_ttl: float = 300.0,
) -> Write:
    """The write script call for `delta` (and the request's record, when it is the last)."""
    parts = split_session_id(delta.session_id)
    assert parts is not None
    random_part = parts[0]
    record_key = keys.record(random_part, request_id or "-")
    record_text = "" if record is None else record_text_of(record)
    ttl_ms = str(max(1, int(record_ttl * 1000)))
    if delta.invalidated:
        return Write((keys.session(random_part), record_key), ("d", record_text, ttl_ms, "0", "0"))
    sets: list[str | bytes] = []
    if delta.created is not None:
        sets += [META_CREATED, _number(delta.created)]
    if delta.max_inactive is not None:
        sets += [META_MAX_INACTIVE, _number(delta.max_inactive)]
    if delta.created is not None or delta.new_id is not None:
        sets += [META_ID, delta.new_id or delta.session_id]
    for name, text in delta.set_attributes:
        sets += [ATTR + name.encode(), text]
    removes = [ATTR + name.encode() for name in delta.removed_attributes]
    mode = "c" if delta.created is not None else "u"
    args: list[str | bytes] = [mode, record_text, ttl_ms, str(len(sets) // 2), *sets]
    args += [str(len(removes)), *removes]
    return Write((keys.session(random_part), record_key), tuple(args))


def loose_record_write(
    keys: Keys, request_id: str, record: RecordedResponse, record_ttl: float
) -> Write:
    """The copy of a record a retry without the session's cookie finds (a plain SET)."""
    ttl_ms = str(max(1, int(record_ttl * 1000)))
    return Write((keys.loose_record(request_id),), (record_text_of(record), ttl_ms), False)


def record_text_of(record: RecordedResponse) -> str:
    return json.dumps(record.to_wire(), separators=(",", ":"))


def record_from(key: str, raw: bytes, max_body: int) -> RecordedResponse:
    try:
        wire = json.loads(raw)
        return RecordedResponse.from_wire(wire, max_body)
    except (ValueError, RecordError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise StoreFormatError(key, f"recorded response: {exc}") from None


def state_from(
    key: str, random_part: str, fields: Mapping[bytes, bytes], now: float
) -> SessionState:
    """The session a hash holds, checked field by field; its last access is `now` (a load is
    an access; Redis keeps the idle time, as the key's TTL)."""
    attributes: dict[str, str] = {}
    for field, raw in fields.items():
        if not field.startswith(ATTR):
            continue
        try:
            name, text = field[len(ATTR) :].decode(), raw.decode("ascii")
            values.check_name(name)
            canonical = values.encode(name, values.decode(text))
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError, JSON, AttributeValueError
            raise StoreFormatError(
                key, f"field {field!r}: not an attribute's JSON: {exc}"
            ) from None
        if canonical != text:
            raise StoreFormatError(key, f"field {field!r}: not canonical JSON")
        attributes[name] = text
    unknown = [f for f in fields if not f.startswith(ATTR)]
    unknown = [f for f in unknown if f not in (META_ID, META_CREATED, META_MAX_INACTIVE)]
    if unknown:
        raise StoreFormatError(key, f"unknown field {unknown[0]!r}")
    session_id = _meta(key, fields, META_ID).decode("ascii", "replace")
    parts = split_session_id(session_id)
    if parts is None or parts[0] != random_part:
        raise StoreFormatError(key, f"m:id {session_id!r} is not a session id of this key")
    created = _float(key, fields, META_CREATED)
    max_inactive = _float(key, fields, META_MAX_INACTIVE)
    return SessionState(session_id, created, max(created, float(now)), max_inactive, attributes)


def pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """HGETALL's flat reply (as a script returns it) as a dict."""
    if len(flat) % 2:
        raise ValueError("odd HGETALL reply")
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _meta(key: str, fields: Mapping[bytes, bytes], name: bytes) -> bytes:
    raw = fields.get(name)
    if raw is None:
        raise StoreFormatError(key, f"field {name.decode()!r} is missing")
    return raw


def _float(key: str, fields: Mapping[bytes, bytes], name: bytes) -> float:
    raw = _meta(key, fields, name)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise StoreFormatError(key, f"field {name.decode()!r}: {raw!r} is not a finite number")
    return value


def _number(value: float) -> str:
    return repr(float(value))
