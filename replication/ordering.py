"""Per-origin ordering of replicated deltas: deliver in sequence, notice gaps. Pure.

Every node numbers the deltas it originates 1, 2, 3, ... (its `seq`). A replica delivers an
origin's deltas in that order. Tomcat does not (tomcat-cluster.md §2.5, §10 #11), and never
notices what it missed (§2.4, §10 #12); here a replica *syncs* with an origin — pulls the
sessions the origin changed since the first missing number, or all of them — whenever:

- it never synced with this origin (first contact, e.g. state transfer at start) and the origin
  has sent deltas before (its advertised seq > 0);
- a delta arrives past the expected number (frames were lost: connection reset, partition);
- a new connection from the origin announces a seq at or past the expected number (whatever
  the old connection carried after that was lost with it);
- a seq a heartbeat advertised is still not received `patience` later (the delta path is cut
  while heartbeats still flow). The lag is timed per advertised seq: under a steady stream of
  writes every heartbeat shows some delta still in flight, which is no gap as long as each
  advertised seq arrives in time.

While a sync with an origin runs, its deltas are buffered; when the snapshot arrives (taken at
the origin's seq S), buffered deltas up to S are dropped (the snapshot has them) and the rest
are delivered in order. Buffers are bounded: past `max_buffer` the oldest are dropped, which
only costs another sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Origin(Generic[T]):
    expected: int | None = None  # next seq to deliver; None until the first sync
    syncing: bool = False
    buffer: dict[int, T] = field(default_factory=dict)
    behind_since: float | None = None  # when a heartbeat advertised behind_seq, not yet here
    behind_seq: int = 0


@dataclass(frozen=True, slots=True)
class Offer(Generic[T]):
    deliver: tuple[T, ...] = ()  # apply these, in this order
    sync_since: int | None = None  # start a sync from this seq (1: everything)
    duplicate: bool = False


class Sequencer(Generic[T]):
    def __init__(self, *, max_buffer: int = 10_000) -> None:
        self.max_buffer = max_buffer
        self._origins: dict[str, _Origin[T]] = {}
        self.dropped = 0  # buffered items dropped on overflow

    def offer(self, origin: str, seq: int, item: T) -> Offer[T]:
        o = self._origins.setdefault(origin, _Origin())
        if o.expected is not None and seq < o.expected:
            return Offer(duplicate=True)
        if o.syncing or o.expected is None or seq > o.expected:
            self._buffer(o, seq, item)
            if o.syncing:
                return Offer()
            o.syncing = True
            return Offer(sync_since=1 if o.expected is None else o.expected)
        o.expected = seq + 1
        return Offer(deliver=(item, *self._drain(o)))

    def contact(self, origin: str, seq: int) -> int | None:
        """A new connection from `origin` whose Hello says it has sent up to `seq`."""
        o = self._origins.setdefault(origin, _Origin())
        return self._check(o, seq)

    def advertised(self, origin: str, seq: int, now: float, patience: float) -> int | None:
        """A heartbeat saying `origin` has sent up to `seq`; sync if behind for `patience`."""
        o = self._origins.setdefault(origin, _Origin())
        if o.syncing:
            return None
        if o.expected is None:
            return self._check(o, seq)
        if seq < o.expected:
            o.behind_since = None
            return None
        if o.behind_since is not None and o.behind_seq < o.expected:
            o.behind_since = None  # what the earlier heartbeat advertised came: only in flight
        if o.behind_since is None:
            o.behind_since, o.behind_seq = now, seq
            return None
        if now - o.behind_since < patience:
            return None
        return self._check(o, seq)

    def synced(self, origin: str, seq: int) -> Offer[T]:
        """The snapshot for a sync arrived, taken when the origin's seq was `seq`."""
        o = self._origins.setdefault(origin, _Origin())
        o.syncing, o.behind_since = False, None
        o.expected = max(o.expected or 1, seq + 1)
        for stale in [s for s in o.buffer if s < o.expected]:
            del o.buffer[stale]
        deliver = self._drain(o)
        if o.buffer:  # another hole after the snapshot: sync again from it
            o.syncing = True
            return Offer(deliver=deliver, sync_since=o.expected)
        return Offer(deliver=deliver)

    def abandon(self, origin: str) -> tuple[T, ...]:
        """The sync cannot finish (origin gone or silent): hand back what was buffered."""
        o = self._origins.get(origin)
        if o is None:
            return ()
        items = tuple(o.buffer[s] for s in sorted(o.buffer))
        o.buffer.clear()
        o.syncing, o.behind_since = False, None
        return items

    def forget(self, origin: str) -> None:
        """The origin shut down for good (its id never comes back)."""
        self._origins.pop(origin, None)

    def syncing(self, origin: str) -> bool:
        o = self._origins.get(origin)
        return o is not None and o.syncing

    def known(self, origin: str) -> bool:
        """True once a sync with `origin` completed (or it had sent nothing when first seen)."""
        o = self._origins.get(origin)
        return o is not None and o.expected is not None

    def expected(self, origin: str) -> int | None:
        o = self._origins.get(origin)
        return None if o is None else o.expected

    # -- internals -----------------------------------------------------------------------------
    def _check(self, o: _Origin[T], seq: int) -> int | None:
        if o.syncing:
            return None
        if o.expected is None:
            if seq == 0:  # it never sent anything: nothing to fetch
                o.expected = 1
                return None
            o.syncing = True
            return 1
        if seq >= o.expected:
            o.syncing = True
            return o.expected
        return None

    def _buffer(self, o: _Origin[T], seq: int, item: T) -> None:
        o.buffer[seq] = item
        while len(o.buffer) > self.max_buffer:
            del o.buffer[min(o.buffer)]
            self.dropped += 1

    def _drain(self, o: _Origin[T]) -> tuple[T, ...]:
        out = []
        assert o.expected is not None
        while o.expected in o.buffer:
            out.append(o.buffer.pop(o.expected))
            o.expected += 1
        return tuple(out)
