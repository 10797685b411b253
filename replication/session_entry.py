"""A session in distributed mode as one entry of the internal sessions cache. Pure, no clock.

`[replication] mode = "distributed"` keeps each session as one entry of a distributed cache
(replication/cache.py) keyed by the session's random part: the text is the canonical JSON
(worker/values.py, never pickle) of

    {"i": "<session id>", "s": <the session's wire state, or null once it ended>,
     "r": {"<request id>": <recorded response>, ...}}

- `i` comes first so the entry's route — the member that must be its primary (the cache's
  pin) — is read from the text's head without decoding the rest (`route_of`);
- `s` null: the session ended (invalidated, or rotated to a new id). The entry lives on until
  the exactly-once ttl so that a retry of the request that ended it is still answered from `r`;
- `r`: the recorded responses of the session's last writes (exactly-once): they travel with the
  session in every copy, so any member that holds the session holds the records of the writes
  it contains — the same rule as the all-to-all records (docs/cluster.md, Exactly once).

A request that created (or ended) a session also leaves its record under its request id,
`rid/<request id>` → `{"q": "<request id>", "r": <record>}`: its retry may come without the new
cookie, so it is found by the id alone. Such an entry has no route (no pin): its owners are
the hash's, which every member computes alike.

An entry's text is built when its request commits, but two requests of one session may be in
flight at once (a browser's parallel calls): their puts may land in either order, and neither
text has the other's record. So the member that stores a put merges it into the entry it holds
(`merge_entries`, the sessions table's merge hook) instead of overwriting it: the records are
the newest of both plus the put's own (the young ones left out go to the member's ledger), the
state is the newer of the two by `last_accessed` (which grows strictly with each commit of the
session, on any node: a commit takes its clock, or just past the old value when its clock is
behind), and an ended session stays ended (ids are never reused). The kept state also decides
the entry's expiry, and where its copies go (its id's route).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker import values
from worker.delta import SessionState, WireFormatError

from .ledger import RecordedResponse, RecordError

SESSIONS_CACHE = "pyjk.sessions"  # the internal cache's name (apps cannot take "pyjk.")
# recorded responses an entry carries (the newest, and the put's own): a retry is mostly of the
# last write or two, and each copy of the entry carries them all, so more would cost bytes on
# every write; the records that fall out are kept by every owner (session_records.py), so a
# retry of an older one — three or more requests of one session in flight — is still answered
MAX_RECORDS = 2
LOOSE_PREFIX = "rid/"  # keys of the records of session-creating requests (random parts: hex)
_HEAD_RE = re.compile(r'\{"i":"[0-9A-F]+\.([^"\\]{1,63})"')


class EntryFormatError(ValueError):
    """A sessions-cache entry that does not follow the schema (a bug, or a forged copy)."""


@dataclass(frozen=True, slots=True)
class SessionEntry:
    session_id: str
    state: SessionState | None  # None: the session ended; the records stay for retries
    records: dict[str, RecordedResponse] = field(default_factory=dict)


def loose_key(request_id: str) -> str:
    return f"{LOOSE_PREFIX}{request_id}"


def encode_loose(request_id: str, record: RecordedResponse) -> str:
    return values.encode("value", {"q": request_id, "r": record.to_wire()})


def decode_loose(text: str, request_id: str, max_body: int) -> RecordedResponse:
    try:
        wire = values.decode(text)
        if type(wire) is not dict or set(wire) != {"q", "r"} or wire["q"] != request_id:
            raise EntryFormatError(f"{loose_key(request_id)}: expected the keys q, r")
        return RecordedResponse.from_wire(wire["r"], max_body)
    except (ValueError, TypeError, RecordError) as exc:
        if isinstance(exc, EntryFormatError):
            raise
        raise EntryFormatError(str(exc)[:200]) from None


def route_of(text: str) -> str | None:
    """The route of the session id an entry's text starts with (None: not an entry of ours)."""
    head = _HEAD_RE.match(text)
    return None if head is None else head.group(1)


def encode_entry(entry: SessionEntry) -> str:
    wire = {
        "i": entry.session_id,
        "s": None if entry.state is None else entry.state.to_wire(),
        "r": {rid: record.to_wire() for rid, record in entry.records.items()},
    }
    return values.encode("value", wire)


def decode_entry(text: str, max_body: int) -> SessionEntry:
    try:
        wire = values.decode(text)
        if type(wire) is not dict or set(wire) != {"i", "s", "r"} or type(wire["r"]) is not dict:
            raise EntryFormatError("expected the keys i, s, r")
        session_id = wire["i"]
        if type(session_id) is not str or route_of(text) is None:
            raise EntryFormatError("i: expected a session id")
        state = None if wire["s"] is None else SessionState.from_wire(wire["s"])
        if state is not None and state.id != session_id:
            raise EntryFormatError("s.id differs from i")
        records = {rid: RecordedResponse.from_wire(w, max_body) for rid, w in wire["r"].items()}
    except (ValueError, TypeError, RecordError, WireFormatError) as exc:
        if isinstance(exc, EntryFormatError):
            raise
        raise EntryFormatError(str(exc)[:200]) from None
    return SessionEntry(session_id, state, records)


@dataclass(frozen=True, slots=True)
class Merged:
    """What `merge_entries` decided a member keeps."""

    text: str  # the text to store
    entry: SessionEntry | None  # the session entry `text` holds (None: not one, as it came)
    problem: str | None = None  # why the stored text was dropped unread (None: it was merged)
    # records of either entry, still young, that the kept text no longer carries: the
    # member keeps them aside (a retry of their request is still answered)
    dropped: dict[str, RecordedResponse] = field(default_factory=dict)


def merge_entries(stored: str, incoming: str, now: float, ttl: float, max_body: int) -> Merged:
    """What a member keeps when a put of `incoming` finds `stored` under the same key. Any
    order of the puts gives the same state, and loses no record — a late put of an older
    commit loses nothing of a newer one:

    - records: both entries' (the incoming one's on a shared id), young and newest only
      (`kept_records`: `ttl` is the exactly-once ttl), and always the incoming put's own —
      the copy the primary sends for this write then carries its record to every owner,
      even when newer records landed first; the young records left out are `dropped` (the
      owners keep them aside). So the state is the same in any order of the puts, and the
      records differ only by the last put's own: nothing young is lost in any order;
    - state: ended (None) when either has ended (of two ended ids, the greater: either order
      alike); else the one accessed last (each commit of a session moves its last access
      strictly forward, on any node: worker/sessions.py), a tie — two lines of commits that
      never saw each other — going to the greater state text, never to the arrival order;
    - a text that is not a session entry (a creating request's record, `rid/…`) is stored
      as it comes; a stored text that cannot be read loses to the incoming one (reported).

    The kept entry (`Merged.entry`) decides the expiry too (the caller's): the state that was
    kept, not the one that came, says how long the session lives.
    """
    if route_of(incoming) is None:
        return Merged(incoming, None)
    try:
        new = decode_entry(incoming, max_body)
    except EntryFormatError:
        return Merged(incoming, None)  # our own writes are well formed: not ours to judge here
    try:
        old = decode_entry(stored, max_body)
    except EntryFormatError as exc:
        return Merged(incoming, new, f"stored entry unreadable, replaced: {exc}")
    if new.state is None and old.state is None:
        session_id, state = max(old.session_id, new.session_id), None
    elif new.state is None or old.state is None:
        ended = new if new.state is None else old
        session_id, state = ended.session_id, None
    else:
        kept = max(old.state, new.state, key=_recency)
        session_id, state = kept.id, kept
    every = {**old.records, **new.records}
    records = {**kept_records(every, now, ttl), **kept_records(new.records, now, ttl)}
    dropped = {rid: r for rid, r in kept_records(every, now, ttl, None).items()
               if rid not in records}  # fmt: skip
    merged = SessionEntry(session_id, state, dict(sorted(records.items(), key=_age)))
    if merged == new:
        return Merged(incoming, new, dropped=dropped)
    return Merged(encode_entry(merged), merged, dropped=dropped)


def _age(item: tuple[str, RecordedResponse]) -> tuple[float, str]:
    return item[1].at, item[0]


def _recency(state: SessionState) -> tuple[float, str]:
    # a total order: the state text breaks a tie of last access, so no order of arrival does
    return state.last_accessed, values.encode("value", state.to_wire())


def kept_records(
    records: dict[str, RecordedResponse], now: float, ttl: float, most: int | None = MAX_RECORDS
) -> dict[str, RecordedResponse]:
    """The records still worth carrying: younger than `ttl`, the newest `most` (None: all),
    oldest first."""
    young = sorted(((r.at, rid) for rid, r in records.items() if now - r.at <= ttl), reverse=True)
    return {rid: records[rid] for _, rid in sorted(young[:most])}
