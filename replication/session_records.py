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
answers from its ledger when its table holds no such entry. A rebalance moves entries, not
the ledgers: a member that became an owner later has only what the entry carries.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from worker.cache_table import CacheTable
from worker.caches import CacheStats

from .cache import Caches, ModeBackend, Pin
from .cache_codec import CacheReply, CacheReq
from .ledger import Ledger
from .session_entry import (
    LOOSE_PREFIX,
    EntryFormatError,
    decode_entry,
    encode_loose,
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
