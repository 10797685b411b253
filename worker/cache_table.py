"""One node's entries of one cluster cache: canonical JSON texts with a version and an expiry.
Pure: time comes in as `now` (wall-clock seconds, since expiries travel between nodes).

Values are stored as the canonical text of worker/values.py (the sessions' codec: JSON-safe
types only, never pickle), so "is this the value I read?" (compare-and-set) is a string
comparison and a value handed out is always a fresh copy. Each entry carries a version — a
(counter, writer) pair that only grows per key — so copies arriving from other nodes in any
order settle on the newest write (cluster modes, replication/cache.py). A delete leaves a
tombstone with its own version for the same reason; tombstones are not entries: `get`,
`keys` and `size` never see them, and `expire` forgets them after `tombstone_ttl`.

A table may be given a `merge` (distributed mode's sessions table): a put then stores the
merge of the value it finds and the one it brings, so puts that cross on their way lose
nothing, and the merge decides the expiry too (the value kept, not the put, says how long it
lives); copies from other nodes still settle by version (they come from the key's primary,
whose put merged). Such a table has no compare-and-set: what it stores is not the text given.
The app caches have no merge: a put replaces.

Limits (defaults as for sessions): `max_entries` live entries (a put of a new key beyond it
raises CacheFull; existing keys can always be replaced), `max_value_bytes` per value text
(CacheValueTooLarge).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypedDict

from .sessions import DEFAULT_MAX_ACTIVE_SESSIONS, DEFAULT_MAX_SESSION_BYTES

Version = tuple[int, str]  # (counter, writer id): compared as a tuple, the writer breaks ties
TOMBSTONE_TTL = 600.0  # s a delete is remembered: longer than any copy can be in flight
MAX_OPS = 10_000  # write ids remembered, so a retried write is recognised, not applied twice
# the largest value text a cluster cache can hold: the cache frames carry at most this much
# (replication/cache_codec.py), so a bigger max_value_bytes would make values no copy can carry
MAX_VALUE_TEXT = 1 << 20
KEY_OPS = 8  # write ids an entry carries (a retry comes within a few writes of the key)
# (stored text, incoming text, now, the put's ttl) → (the text to store, its ttl): a table
# whose values are merged rather than replaced by a put (distributed mode's session entries,
# session_entry.py); the ttl is the merge's to decide, as the text it keeps may not be the put's
Merge = Callable[[str, str, float, float | None], tuple[str, float | None]]


class TableLimits(TypedDict, total=False):
    """The limits of a table an app chose (``cluster_cache``), passed on as keywords."""

    max_entries: int
    max_value_bytes: int


class CacheError(Exception):
    """Base of the cache errors."""


class CacheFull(CacheError):
    """A new key would pass max_entries (entries are never evicted to make room)."""


class CacheValueTooLarge(CacheError, ValueError):
    """A value's canonical text passes max_value_bytes."""


class CacheUnavailable(CacheError, ConnectionError):
    """The cache's shared copy cannot be reached now (no owner answered in time, or the Redis
    store is down): retry later. The session middleware answers an uncaught one with 503."""


class CacheWriteRefused(CacheUnavailable):
    """A write the request may not make: its retry record could not be read, so an earlier
    attempt of it may have written already (replication/replay.py, Unverified). A 503 like
    CacheUnavailable: the retry, once the record can be read, is answered or runs once."""


def check_value_size(cache: str, key: str, text: str, max_value_bytes: int) -> None:
    """CacheValueTooLarge when `text` passes the cache's max_value_bytes."""
    if len(text) > max_value_bytes:
        raise CacheValueTooLarge(
            f"cache {cache!r} key {key!r}: the value is {len(text)} bytes as JSON, "
            f"the limit (max_value_bytes) is {max_value_bytes}"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    text: str | None  # canonical JSON; None: a tombstone (deleted)
    version: Version
    expires: float | None = None  # wall-clock time; None: never
    # ids of the key's last writes (newest last): they travel with every copy of the entry —
    # backups, rebalance, a fetch — so a retried write reaching a member that got the key
    # any of those ways is recognised there, not applied twice
    ops: tuple[str, ...] = ()

    def live(self, now: float) -> bool:
        return self.text is not None and (self.expires is None or now < self.expires)


class CacheTable:
    def __init__(
        self,
        name: str,
        *,
        writer: str,
        max_entries: int = DEFAULT_MAX_ACTIVE_SESSIONS,
        max_value_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        tombstone_ttl: float = TOMBSTONE_TTL,
        merge: Merge | None = None,
    ) -> None:
        if max_entries < 1 or max_value_bytes < 1:
            raise ValueError("max_entries and max_value_bytes must be at least 1")
        self.name, self.writer = name, writer
        self.max_entries, self.max_value_bytes = max_entries, max_value_bytes
        self.tombstone_ttl = tombstone_ttl
        self.merge = merge  # None: a put replaces the value (the app caches' semantics)
        self._entries: dict[str, Entry] = {}
        self._live = 0  # entries with a text (expired ones count until expire() or a read)
        self._clock = 0  # the highest version counter seen (a Lamport clock per table)
        self._ops: OrderedDict[str, None] = OrderedDict()  # ids of the writes applied here

    # -- reads --------------------------------------------------------------------------------
    def get(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry.text is None:
            return None
        if not entry.live(now):
            self._bury(key, entry, now)
            return None
        return entry.text

    def entry(self, key: str) -> Entry | None:
        """The stored entry, tombstone or expired included (for replication)."""
        return self._entries.get(key)

    def keys(self, now: float) -> list[str]:
        return [k for k, e in self._entries.items() if e.live(now)]

    def size(self, now: float) -> int:
        return sum(1 for e in self._entries.values() if e.live(now))

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every stored entry with its key, tombstones included (state transfer)."""
        return iter(list(self._entries.items()))

    # -- local writes -------------------------------------------------------------------------
    def put(
        self, key: str, text: str, now: float, ttl: float | None = None, op: str | None = None
    ) -> Entry:
        """Store `text` under a new version; the entry written (to ship to other nodes).
        `op`: the write's id, remembered so that a retry of it is recognised (`seen`).
        With a `merge`, a live value is merged with `text` (the returned entry has the
        merged text and the merge's ttl): puts of one key that cross on their way land in
        either order alike."""
        if self.merge is not None and (stored := self.get(key, now)) is not None:
            text, ttl = self.merge(stored, text, now, ttl)
        self._check(key, text, now)
        expires = None if ttl is None else now + ttl
        entry = Entry(text, self._next(key, now), expires, self._ops_after(key, op))
        self._store(key, entry)
        self.remember(op)
        return entry

    def delete(self, key: str, now: float, op: str | None = None) -> Entry | None:
        """Remove `key`; the tombstone written, or None when there was nothing live."""
        if self.get(key, now) is None:
            return None
        entry = Entry(None, self._next(key, now), now + self.tombstone_ttl,
                      self._ops_after(key, op))  # fmt: skip
        self._store(key, entry)
        self.remember(op)
        return entry

    def compare_and_set(
        self,
        key: str,
        expected: str | None,
        text: str,
        now: float,
        ttl: float | None = None,
        op: str | None = None,
    ) -> Entry | None:
        """Put `text` only if the live value's text is `expected` (None: only if absent);
        the entry written, or None when the value was something else. Not on a table with a
        merge: it would store a merged text, not `text` (ValueError)."""
        if self.merge is not None:
            raise ValueError(
                f"cache {self.name!r}: compare-and-set is refused on a table that merges its "
                "puts (it would store a merge, not the text given)"
            )
        if self.get(key, now) != expected:
            return None
        return self.put(key, text, now, ttl, op)

    def seen(self, op: str) -> bool:
        """Whether the write `op` was applied here (written here, or copied with its id)."""
        return op in self._ops

    def remember(self, op: str | None) -> None:
        if op is None:
            return
        self._ops[op] = None
        self._ops.move_to_end(op)
        while len(self._ops) > MAX_OPS:
            self._ops.popitem(last=False)

    # -- copies from other nodes --------------------------------------------------------------
    def apply(self, key: str, entry: Entry, op: str | None = None) -> bool:
        """Take a copy written elsewhere if it is newer than ours; True if it was taken. A copy
        is never refused for the limits: the writer checked them, and refusing it here would
        leave this node's copy stale."""
        mine = self._entries.get(key)
        self._clock = max(self._clock, entry.version[0])
        for known in (*entry.ops, op):
            self.remember(known)
        if mine is not None and mine.version >= entry.version:
            return False
        self._store(key, entry)
        return True

    def evict(self, key: str) -> bool:
        """Forget `key` without a tombstone (invalidation, or a copy this node no longer owns)."""
        entry = self._entries.pop(key, None)
        if entry is not None and entry.text is not None:
            self._live -= 1
        return entry is not None

    def expire(self, now: float) -> int:
        """Turn expired entries into tombstones and forget old tombstones; how many live
        entries expired."""
        expired = 0
        for key, entry in list(self._entries.items()):
            if entry.text is None:
                if entry.expires is not None and now >= entry.expires:
                    del self._entries[key]
            elif not entry.live(now):
                self._bury(key, entry, now)
                expired += 1
        return expired

    # -- inside -------------------------------------------------------------------------------
    def _check(self, key: str, text: str, now: float) -> None:
        check_value_size(self.name, key, text, self.max_value_bytes)
        if self.get(key, now) is None and self._live >= self.max_entries:
            self.expire(now)  # expired entries are not what fills it
            if self._live >= self.max_entries:
                raise CacheFull(
                    f"cache {self.name!r}: {self._live} entries, the limit (max_entries) is "
                    f"{self.max_entries}; key {key!r} not stored"
                )

    def _next(self, key: str, now: float) -> Version:
        # A hybrid clock: at least the wall clock in ms, so a write on a member that has not
        # yet received the key's last copy (a rebalance in progress) still outranks it
        mine = self._entries.get(key)
        counter = max(self._clock + 1, (mine.version[0] + 1) if mine else 0, int(now * 1000))
        self._clock = counter
        return (counter, self.writer)

    def _ops_after(self, key: str, op: str | None) -> tuple[str, ...]:
        before = self._entries.get(key)
        ops = before.ops if before is not None else ()
        return ops if op is None else (*ops, op)[-KEY_OPS:]

    def _store(self, key: str, entry: Entry) -> None:
        old = self._entries.get(key)
        self._live += (entry.text is not None) - (old is not None and old.text is not None)
        self._entries[key] = entry

    def _bury(self, key: str, entry: Entry, now: float) -> None:
        # an expiry is a delete every node reaches alone; same version, so no copy outranks it
        self._store(key, Entry(None, entry.version, now + self.tombstone_ttl, entry.ops))
