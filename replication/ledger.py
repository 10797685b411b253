"""Exactly once: responses recorded under the balancer's request id, replicated. Pure.

The balancer sends `X-Pyjk-Request-Id`, the same for every retry of one client request. When a
request changed a session, its response (status, a few headers, the body up to a bound) is
recorded under that id and travels with the request's last delta; a node that later receives
the same id — the original node or any replica — answers with the record instead of running
the handler again, so a retry after a lost response does not apply the change twice.

A record is attached to the write it answered: the session (random part) of that last delta
and the delta's stamp. A session's state can reach a member without the delta — a snapshot, an
anti-entropy answer, a lookup — and a member that holds a write must hold its record too, or a
retry would run the request again on top of its own effect. So every answer carrying a session
also carries the records attached to it that the asker may lack (`for_session`: those newer
than the asker's version of the session), and a delta's record is kept as soon as the delta is
received, even while the delta waits to be applied in order.

Bounded three ways: entries older than `ttl` are forgotten, at most `max_entries` are kept,
and the recorded bodies together stay under `max_bytes` (oldest evicted first). A response
that cannot be recorded (streamed, or a body over `max_body`) is simply not recorded.
Taking a record from an aiohttp response and replaying it as one is `replay.py`'s.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from .merge import ZERO, Stamp

# What a replay must repeat: the type of the body, the session cookie, redirects, caching.
RECORDED_HEADERS = ("Content-Type", "Set-Cookie", "Location", "Cache-Control", "Retry-After")
MAX_HEADERS = 16
MAX_HEADER_VALUE = 4096


class RecordError(ValueError):
    """A recorded response from the wire that does not follow the schema."""


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    at: float
    # The write this response answered (the request's last delta): its session's random part
    # and its stamp. Not part of the response (nor of its wire form): it decides which answers
    # carry the record along with the session (see the module docstring).
    session: str | None = field(default=None, compare=False)
    stamp: Stamp | None = field(default=None, compare=False)

    def attached(self, session: str, stamp: Stamp) -> RecordedResponse:
        return replace(self, session=session, stamp=stamp)

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers)

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": [[k, v] for k, v in self.headers],
            "body": base64.b64encode(self.body).decode("ascii"),
            "at": self.at,
        }

    @classmethod
    def from_wire(cls, wire: object, max_body: int) -> RecordedResponse:
        if type(wire) is not dict or set(wire) != {"status", "headers", "body", "at"}:
            raise RecordError("recorded response: expected keys status, headers, body, at")
        status, headers, body, at = wire["status"], wire["headers"], wire["body"], wire["at"]
        if type(status) is not int or not 100 <= status <= 599:
            raise RecordError(f"recorded response: status {status!r} is not 100..599")
        if type(at) not in (int, float) or not math.isfinite(at):
            raise RecordError("recorded response: 'at' is not a finite number")
        if type(headers) is not list or len(headers) > MAX_HEADERS:
            raise RecordError(f"recorded response: headers must be a list of <= {MAX_HEADERS}")
        pairs = []
        for pair in headers:
            if type(pair) is not list or len(pair) != 2 or not all(type(p) is str for p in pair):
                raise RecordError("recorded response: each header is a [name, value] pair")
            name, value = pair
            if name not in RECORDED_HEADERS or not header_value_ok(value):
                raise RecordError(f"recorded response: header {name!r} is not allowed here")
            pairs.append((name, value))
        if type(body) is not str or len(body) > 4 * (max_body // 3 + 1):
            raise RecordError("recorded response: body must be base64 within the size bound")
        try:
            raw = base64.b64decode(body.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise RecordError("recorded response: body is not valid base64") from None
        if len(raw) > max_body:
            raise RecordError(f"recorded response: body over {max_body} bytes")
        return cls(status, tuple(pairs), raw, float(at))


def header_value_ok(value: str) -> bool:
    """Whether a header value may be recorded (and so be replayed): short, visible ASCII."""
    return len(value) <= MAX_HEADER_VALUE and all(32 <= ord(c) < 127 or c == "\t" for c in value)


class Ledger:
    """Recorded responses by request id, bounded by age, count and bytes."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_entries: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        max_body: int = 16 * 1024,
    ) -> None:
        self.ttl, self.max_entries, self.max_bytes, self.max_body = (
            ttl, max_entries, max_bytes, max_body,
        )  # fmt: skip
        self._entries: OrderedDict[str, RecordedResponse] = OrderedDict()
        self._bytes = 0
        self._by_session: dict[str, dict[str, None]] = {}  # random part -> request ids

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, request_id: str, now: float) -> RecordedResponse | None:
        self.expire(now)
        record = self._entries.get(request_id)
        # expire() stops at the first young entry, and the order is only nearly by age
        return None if record is None or now - record.at > self.ttl else record

    def put(self, request_id: str, record: RecordedResponse, now: float) -> None:
        if len(record.body) > self.max_body or now - record.at > self.ttl:
            return
        old = self._entries.get(request_id)
        if old is not None and record == old:
            # The same record again (distributed mode: every copy of an entry carries its
            # newest records) stays where it is: moved to the end, an old record would sit
            # behind younger ones, outliving its ttl and evicted after them under max_entries.
            if record.session is not None and (record.session, record.stamp) != (
                old.session, old.stamp,
            ):  # fmt: skip
                self._attach(request_id, record)  # it learns the write it answered
            return
        if old is not None:
            self._drop(request_id)
        self._entries[request_id] = record
        self._bytes += record.size
        if record.session is not None:
            self._by_session.setdefault(record.session, {})[request_id] = None
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))
        self.expire(now)

    def expire(self, now: float) -> None:
        # Insertion order is nearly time order (records from peers arrive a little late), so
        # the scan stops at the first entry still young enough.
        while self._entries:
            request_id, record = next(iter(self._entries.items()))
            if now - record.at <= self.ttl:
                break
            self._drop(request_id)

    def items(self, now: float) -> list[tuple[str, RecordedResponse]]:
        self.expire(now)
        return list(self._entries.items())

    def for_session(
        self, session: str, now: float, newer_than: Stamp = ZERO
    ) -> list[tuple[str, RecordedResponse]]:
        """Records attached to writes of `session` stamped after `newer_than`, oldest first:
        what a member holding that version of the session may lack."""
        self.expire(now)
        out = []
        for request_id in self._by_session.get(session, ()):
            record = self._entries[request_id]
            if record.stamp is not None and record.stamp > newer_than:
                out.append((request_id, record))
        return out

    def _attach(self, request_id: str, record: RecordedResponse) -> None:
        """Replace an equal record (same size) in place by one that names its write."""
        self._unindex(request_id, self._entries[request_id].session)
        self._entries[request_id] = record  # an existing key keeps its place
        assert record.session is not None
        self._by_session.setdefault(record.session, {})[request_id] = None

    def _drop(self, request_id: str) -> None:
        record = self._entries.pop(request_id)
        self._bytes -= record.size
        self._unindex(request_id, record.session)

    def _unindex(self, request_id: str, session: str | None) -> None:
        """Forget that `request_id`'s record belongs to `session` (if it named one)."""
        if session is None:
            return
        ids = self._by_session.get(session)
        if ids is not None:
            ids.pop(request_id, None)
            if not ids:
                del self._by_session[session]
