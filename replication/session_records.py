"""Distributed mode's exactly-once records beyond the few an entry carries (the I/O shell).

A session's entry carries the records of its newest writes and the one of the put that made it
(session_entry.MAX_RECORDS): a copy goes to every owner on every write, so carrying all of them
would cost bytes on each. But three or more requests of one session may be in flight at once
(a browser's parallel calls), and the retry of the oldest must still be answered, not run
again. So every owner of a session keeps the records that fall out of its entries in a ledger
(replication/ledger.py, bounded as all-to-all's records are: `[exactly_once] ttl`,
`max_entries`, `max_bytes`):

- the primary, the records its merge leaves out (DistributedSessions._merge);
- every other owner, the records of every copy it is sent, taken or (older than its own) not:
  the merge always keeps the put's own record, and a write is acknowledged only once every
  owner confirmed its copy, so the record of an acknowledged write reached every owner.

A retry on an owner is answered from its ledger (no round trip on the sticky path); one on
another member (a failover) asks the session's owners for `rid/<request id>`, which an owner
answers from its ledger when its table holds no such entry (`RecordLookups.kept`). The
records of session-creating requests are entries of their own under `rid/<request id>`,
placed by the hash (`RecordLookups.loose`). A rebalance moves entries, not
the ledgers: a member that became an owner later has only what the entry carries (and so has
the route's node after a restart: it asks the other owners for a while, dist_sessions.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from worker.cache_table import CacheError, CacheTable, Entry
from worker.caches import CacheStats

from .cache import Caches, ModeBackend, Pin
from .cache_codec import CacheReply, CacheReq
from .ledger import Ledger
from .replay import Unverified
from .session_entry import (
    LOOSE_PREFIX,
    EntryFormatError,
    decode_entry,
    decode_loose,
    encode_loose,
    loose_key,
    route_of,
)

log = logging.getLogger("pyjk.cluster")


class SessionsBackend(ModeBackend):
    """The internal sessions cache on one member: distributed, strict, pinned to the route's
    node, and keeping aside the records that fall out of its entries (`records`)."""

    def __init__(
        self,
        caches: Caches,
        owners: int,
        table: CacheTable,
        *,
        pin: Pin,
        records: Ledger,
        counters: Counter[str],
        clock: Callable[[], float],
    ) -> None:
        super().__init__(caches, "distributed", owners, table, CacheStats(), pin=pin, strict=True)
        self.records, self.counters, self.clock = records, counters, clock

    def serve(self, req: CacheReq) -> CacheReply:
        if req.op == "copy" and req.text is not None:
            self.keep(req.text)
        elif (
            req.op == "get" and req.key is not None and req.key.startswith(LOOSE_PREFIX)
            and self.table.entry(req.key) is None
        ):  # fmt: skip
            request_id = req.key[len(LOOSE_PREFIX) :]
            record = self.records.get(request_id, self.clock())
            if record is not None:  # kept aside here (it fell out of the session's entry)
                self.counters["dist_records_served"] += 1
                expires = record.at + self.records.ttl
                return CacheReply(req.n, True, encode_loose(request_id, record),
                                  (1, self.caches.me), expires)  # fmt: skip
        return super().serve(req)

    def keep(self, text: str) -> None:
        """Keep the records a copy of a session entry carries (a later copy may not)."""
        if route_of(text) is None:
            return  # not a session entry (a creating request's record: an entry of its own)
        try:
            entry = decode_entry(text, self.records.max_body)
        except EntryFormatError as exc:
            self.counters["dist_malformed"] += 1
            log.error("session entry copy refused: %s", exc)
            return
        now = self.clock()
        for request_id, record in entry.records.items():
            self.records.put(request_id, record, now)


class RecordLookups:
    """Where a request's exactly-once record is found when the entries its load read lack it:
    a record found goes to `ledger` (the replay answers from it); one that could not be read
    marks the request unverified (it may run, but not write: its first attempt may have)."""

    def __init__(
        self,
        backend: SessionsBackend,
        ledger: Ledger,
        unverified: Unverified,
        counters: Counter[str],
        *,
        max_body: int,
        clock: Callable[[], float],
    ) -> None:
        self.backend, self.ledger, self.unverified = backend, ledger, unverified
        self.counters, self.max_body, self.clock = counters, max_body, clock

    async def loose(self, request_id: str) -> None:
        """A request without a session cookie may be the retry of one that created a session
        (the client never got the cookie): its record is under its request id. An owner that
        lacks it knows it is absent (a write is on every owner before it is acknowledged),
        unless a rebalance may still be bringing it; other members ask the owners."""
        key, backend = loose_key(request_id), self.backend
        me, owners = backend.caches.me, backend.owners_of(key)
        entry = backend.table.entry(key)
        if entry is None and (me not in owners or backend.caches.rebalancing):
            self.counters["dist_loose_lookups"] += 1
            try:
                entry = await backend.fetch(key, tuple(m for m in owners if m != me))
            except CacheError:
                # Only a retry's record was asked for: the request may run, but its writes are
                # refused (as the Redis store's): an earlier attempt may have written
                self.counters["dist_loose_unknown"] += 1
                self.unverified.add(request_id)
                return
        self.unverified.discard(request_id)
        self._remember(request_id, entry)

    async def kept(self, request_id: str, asked: tuple[str, ...]) -> None:
        """Ask the members a session was read from (a failover) for the record of
        `request_id` that fell out of its entry, kept aside by its owners. Not heard from
        all, and not found: unverified."""
        live = self.backend.caches.members()
        members = tuple(m for m in asked if m in live)  # a dead one left the view meanwhile
        self.counters["dist_kept_lookups"] += 1
        entry, missed = await self.backend.fetch_from(loose_key(request_id), members)
        if entry is None and missed:
            self.counters["dist_kept_unknown"] += 1
            self.unverified.add(request_id)
            return
        self.unverified.discard(request_id)
        self._remember(request_id, entry)

    def _remember(self, request_id: str, entry: Entry | None) -> None:
        """Keep the record `entry` holds for `request_id` (a `rid/` entry, None: absent)."""
        if entry is None or entry.text is None or not entry.live(self.clock()):
            return
        try:
            record = decode_loose(entry.text, request_id, self.max_body)
        except EntryFormatError as exc:
            self.counters["dist_malformed"] += 1
            log.error("session record refused: %s", exc)
            return
        self.ledger.put(request_id, record, self.clock())
