"""Deltas out, deltas in, snapshots, anti-entropy, touches and replica expiry. Pure.

The Replicator sits beside the worker's SessionStore (itself pure) and keeps what the store
does not: a SessionMeta per session (merge.py), session tombstones, this node's Lamport clock
and delta sequence number, a short log of which session each recent delta touched (to answer
"what changed since seq N"), and per-origin ordering (ordering.py). The asyncio node calls it
and moves its answers over sockets; time always comes in as `now`.

Rules it implements (see docs/cluster.md):
- An invalidated session is dead everywhere and stays dead: random parts are never reused, so
  an invalidation beats any concurrent or late write ("tombstone wins").
- A delta for a session this node lacks that does not create it means a missed creation: the
  session is pulled from the delta's origin (`want`), whose copy already includes the delta.
- Last-access times travel in batched touches, not deltas; a replica keeps the maximum.
- Replicas never expire a session whose owner (the route in its id) is alive: the owner does
  and tells everyone. When the owner is gone, replicas expire it after max_inactive + `slack`
  (the touch delay); 2 x max_inactive is the last resort either way.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from worker.delta import SessionDelta, SessionState
from worker.session_ids import split_session_id
from worker.sessions import SessionStore

from .codec import DeltaMsg, Pull, StateChunk
from .ledger import Ledger, RecordedResponse
from .merge import ZERO, Replica, SessionMeta, Stamp, filter_remote, merge, stamp_local
from .ordering import Sequencer

TOMBSTONE_TTL = 3600.0
MAX_TOMBSTONES = 100_000


def _rp(session_id: str) -> str:
    parts = split_session_id(session_id)
    assert parts is not None, session_id
    return parts[0]


@dataclass(frozen=True, slots=True)
class Received:
    status: str  # applied | buffered | duplicate
    sync_since: int | None = None  # start a sync with the origin from this seq
    want: tuple[str, ...] = ()  # random parts to pull from the origin


@dataclass(frozen=True, slots=True)
class Answer:
    """What a pull gets: the snapshot, and (anti-entropy) what we want back from the asker."""

    seq: int
    sessions: tuple[Replica, ...]
    dead: tuple[tuple[str, Stamp], ...]
    responses: tuple[tuple[str, RecordedResponse], ...]
    want: tuple[str, ...] = ()


class Replicator:
    def __init__(
        self,
        store: SessionStore,
        member_id: str,
        *,
        ledger: Ledger | None = None,
        counters: Counter[str] | None = None,
        log_capacity: int = 10_000,
    ) -> None:
        self.store, self.me = store, member_id
        self.ledger = ledger if ledger is not None else Ledger()
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.lamport = 0
        self.seq = 0
        self.meta: dict[str, SessionMeta] = {}
        self.dead: OrderedDict[str, tuple[Stamp, float]] = OrderedDict()
        self.order: Sequencer[DeltaMsg] = Sequencer()
        self._log: deque[tuple[int, str]] = deque(maxlen=log_capacity)
        self._announced: dict[str, float] = {}  # last access the cluster already knows
        self._wanted: set[str] = set()

    # -- this node's writes -----------------------------------------------------------------
    def local(
        self,
        delta: SessionDelta,
        now: float,
        request_id: str | None = None,
        response: RecordedResponse | None = None,
    ) -> DeltaMsg:
        """Stamp and number a delta this node's store just committed; returns what to send.
        `request_id` and `response`: the request's recorded response, when this is its last
        delta; it is kept here, attached to this write, and travels with the delta."""
        rp = _rp(delta.session_id)
        self.lamport += 1
        self.seq += 1
        stamp = (self.lamport, self.me)
        meta = self.meta.get(rp)
        base = meta.version if meta is not None else ZERO
        if delta.invalidated:
            self._kill(rp, stamp, now)
        else:
            self.meta[rp] = stamp_local(meta, delta, stamp)
            self._seen_access(rp, delta.at)
        if delta.replaces is not None:  # a rotation: the old id is dead, like an invalidation
            old = _rp(delta.replaces)
            self._kill(old, stamp, now)
            self._log.append((self.seq, old))
        self._log.append((self.seq, rp))
        if request_id is None or response is None:
            return DeltaMsg(1, self.seq, delta, stamp, base)
        response = response.attached(rp, stamp)
        self.ledger.put(request_id, response, now)
        return DeltaMsg(1, self.seq, delta, stamp, base, request_id, response)

    # -- others' writes ---------------------------------------------------------------------
    def receive(self, origin: str, msg: DeltaMsg, now: float) -> Received:
        self.lamport = max(self.lamport, msg.stamp[0])
        if msg.request_id is not None and msg.response is not None:
            # Kept at once, even if the delta waits for an earlier one: the ack that follows
            # tells the writer this member has the request, and a retry arriving here must
            # find its record (a replay is right whether or not the write is applied yet).
            record = msg.response.attached(_rp(msg.delta.session_id), msg.stamp)
            self.ledger.put(msg.request_id, record, now)
        offer = self.order.offer(origin, msg.seq, msg)
        if offer.duplicate:
            self.counters["deltas_duplicate"] += 1
            return Received("duplicate")
        if not offer.deliver:
            self.counters["deltas_buffered"] += 1
            if offer.sync_since is not None and offer.sync_since > 1:
                self.counters["gaps"] += 1
            return Received("buffered", offer.sync_since)
        want = [rp for m in offer.deliver if (rp := self._apply(m, now)) is not None]
        return Received("applied", offer.sync_since, tuple(want))

    def _apply(self, msg: DeltaMsg, now: float) -> str | None:
        """Apply one delivered delta; returns a random part to fetch if it was unknown."""
        delta, stamp = msg.delta, msg.stamp
        rp = _rp(delta.session_id)
        if delta.replaces is not None:
            # a rotation ends the old id here too, whatever happens to the new one below
            old = _rp(delta.replaces)
            if old not in self.dead:
                self._kill(old, stamp, now, drop_state=True)
        if rp in self.dead:
            self.counters["deltas_after_invalidate"] += 1
            return None
        state = self.store.get_state(rp)
        if state is None and rp in self.meta:  # the store expired it; not yet reconciled
            self._kill(rp, stamp, now)
            return None
        self.counters["deltas_applied"] += 1
        if delta.invalidated:
            if state is not None:
                self.store.apply(delta)
            self._kill(rp, stamp, now)
            return None
        if state is None:
            if delta.created is None:
                self.counters["deltas_unknown_session"] += 1
                if rp in self._wanted:
                    return None
                self._wanted.add(rp)
                return rp
            self.store.apply(delta)
            new_state = self.store.get_state(rp)
            assert new_state is not None
            self.meta[rp] = SessionMeta.fresh(new_state, stamp)
        else:
            meta = self.meta.get(rp) or self._bare_meta(state)
            filtered, new_meta, lost = filter_remote(meta, delta, stamp)
            if meta.version > msg.base:  # the writer had not seen everything we have
                self.counters["concurrent_writes"] += 1
                self.counters["writes_overridden"] += lost
            self.store.apply(filtered)
            self.meta[rp] = new_meta
        self._seen_access(rp, delta.at)
        return None

    def unwant(self, rps: tuple[str, ...]) -> None:
        """A fetch of these sessions ended (answered or not): they may be asked for again."""
        self._wanted.difference_update(rps)

    def abandon(self, origin: str, now: float) -> None:
        """A sync with `origin` cannot finish: apply what was buffered, in order (CRDT-safe)."""
        for msg in self.order.abandon(origin):
            self._apply(msg, now)

    # -- snapshots: answering pulls and merging answers ------------------------------------
    def answer(self, pull: Pull, now: float) -> Answer:
        for rp, stamp in pull.dead:
            if rp not in self.dead:
                self._kill(rp, stamp, now, drop_state=True)
        want: list[str] = []
        if pull.ids is not None:
            rps = list(dict.fromkeys(pull.ids))
        elif pull.digest is not None:
            theirs = dict(pull.digest)
            rps = [rp for rp, fp in self.digest() if theirs.get(rp) != fp]
            want = [
                rp for rp, fp in theirs.items() if rp not in self.dead and self._differs(rp, fp)
            ]
            rps += [rp for rp in theirs if rp in self.dead]  # for the tombstones below
        elif pull.since is not None and self._log_covers(pull.since):
            rps = list(dict.fromkeys(rp for s, rp in self._log if s >= pull.since))
        else:
            rps = list(self.dead) + [rp for rp, _ in self.digest()]
        sessions = tuple(r for rp in rps if (r := self.replica(rp)) is not None)
        dead = tuple((rp, self.dead[rp][0]) for rp in rps if rp in self.dead)
        if pull.ids is not None or pull.digest is not None:
            # A session's writes must not arrive without their records: the asker may have
            # missed the deltas that carried them (their writer died before sending them on).
            have = dict(pull.have)
            responses = [
                item
                for replica in sessions
                for item in self.ledger.for_session(
                    replica.state.random_part, now, have.get(replica.state.random_part, ZERO)
                )
            ]
        else:  # the asker may have missed whole deltas: every record rides along
            responses = self.ledger.items(now)
        return Answer(self.seq, sessions, dead, tuple(responses), tuple(want))

    def merge_chunk(self, chunk: StateChunk, now: float) -> int:
        """Merge a snapshot chunk; returns how many sessions it changed here."""
        for rp, stamp in chunk.dead:
            if rp not in self.dead:
                self._kill(rp, stamp, now, drop_state=True)
        for request_id, record in chunk.responses:
            self.ledger.put(request_id, record, now)
        changed = 0
        for remote in chunk.sessions:
            rp = remote.state.random_part
            self._wanted.discard(rp)
            if rp in self.dead:
                continue
            if rp in self.meta and self.store.get_state(rp) is None:
                self._kill(rp, remote.meta.version, now)  # the store expired it meanwhile
                continue
            local = self.replica(rp)
            merged = merge(local, remote)
            if local is None or merged != local:
                self.store.install(merged.state)
                self.meta[rp] = merged.meta
                changed += 1
            self._seen_access(rp, remote.state.last_accessed)
            self.lamport = max(self.lamport, merged.meta.version[0])
        self.counters["sessions_merged"] += changed
        return changed

    def synced(self, origin: str, seq: int, now: float) -> Received:
        """The last chunk of a sync with `origin` arrived; deliver what waited behind it."""
        offer = self.order.synced(origin, seq)
        want = [rp for m in offer.deliver if (rp := self._apply(m, now)) is not None]
        return Received("applied", offer.sync_since, tuple(want))

    def replica(self, rp: str) -> Replica | None:
        state = self.store.get_state(rp)
        if state is None:
            return None
        meta = self.meta.get(rp)
        if meta is None:
            return Replica(state, self._bare_meta(state))
        if meta.attrs.keys() != state.attributes.keys():  # defensive: stamps cover exactly
            attrs = {n: meta.attrs.get(n, ZERO) for n in state.attributes}
            removed = {n: s for n, s in meta.removed.items() if n not in attrs}
            meta = SessionMeta(attrs, removed, meta.id_stamp, meta.max_inactive_stamp)
        return Replica(state, meta)

    # -- digests ----------------------------------------------------------------------------
    def digest(self) -> list[tuple[str, str]]:
        """(random part, fingerprint) of every live replicated session."""
        out = []
        for state in self.store.states():
            meta = self.meta.get(state.random_part)
            if meta is not None:
                out.append((state.random_part, meta.fingerprint))
        return out

    def versions(self, rps: Iterable[str]) -> tuple[tuple[str, Stamp], ...]:
        """This node's version of each of `rps` it holds (a Pull's `have`)."""
        out = []
        for rp in rps:
            meta = self.meta.get(rp)
            if meta is not None and self.store.get_state(rp) is not None:
                out.append((rp, meta.version))
        return tuple(out)

    def digest_hash(self) -> str:
        """One fingerprint of the whole digest, order-independent (XOR of per-session hashes)."""
        acc = 0
        for rp, fp in self.digest():
            h = hashlib.blake2b(f"{rp}:{fp}".encode(), digest_size=8).digest()
            acc ^= int.from_bytes(h, "big")
        return f"{acc:016x}"

    def dead_list(self) -> tuple[tuple[str, Stamp], ...]:
        return tuple((rp, v[0]) for rp, v in self.dead.items())

    # -- touches ----------------------------------------------------------------------------
    def touches(self) -> list[tuple[str, float]]:
        """Last-access times this node advanced since it last said so (read-only requests)."""
        out = []
        for state in self.store.states():
            rp = state.random_part
            if rp in self.meta and state.last_accessed > self._announced.get(rp, float("-inf")):
                out.append((rp, state.last_accessed))
                self._announced[rp] = state.last_accessed
        return out

    def receive_touch(self, items: tuple[tuple[str, float], ...]) -> None:
        for rp, at in items:
            state = self.store.get_state(rp)
            if state is None:
                continue
            if at > state.last_accessed:
                self.store.install(replace(state, last_accessed=at))
            self._seen_access(rp, at)

    # -- expiry and housekeeping -----------------------------------------------------------
    def expire_replicas(self, now: float, live_routes: set[str], slack: float) -> list[str]:
        """Expire replicas whose owner is gone (1x + slack) or that idled 2x; ids returned."""
        gone = []
        for state in self.store.states():
            route, limit = state.route, state.max_inactive
            if route == self.store.route or limit <= 0 or state.random_part not in self.meta:
                continue
            idle = now - state.last_accessed
            if (route not in live_routes and idle > limit + slack) or idle > 2 * limit + slack:
                self.store.apply(SessionDelta(state.id, now, invalidated=True))
                self._kill(state.random_part, (self.lamport, self.me), now)
                gone.append(state.id)
        self.counters["replicas_expired"] += len(gone)
        return gone

    def reconcile(self, now: float) -> list[str]:
        """Sessions the store dropped by itself (expired when a request asked for them):
        returns ids to announce as invalidated (the random part is what names them)."""
        vanished = [rp for rp in self.meta if self.store.get_state(rp) is None]
        for rp in vanished:
            del self.meta[rp]
            self._announced.pop(rp, None)
        while self.dead and (
            len(self.dead) > MAX_TOMBSTONES
            or now - next(iter(self.dead.values()))[1] > TOMBSTONE_TTL
        ):
            self.dead.popitem(last=False)
        return [f"{rp}.{self.store.route}" for rp in vanished if rp not in self.dead]

    # -- internals --------------------------------------------------------------------------
    def _kill(self, rp: str, stamp: Stamp, now: float, *, drop_state: bool = False) -> None:
        if drop_state and (state := self.store.get_state(rp)) is not None:
            self.store.apply(SessionDelta(state.id, now, invalidated=True))
        self.meta.pop(rp, None)
        self._announced.pop(rp, None)
        self._wanted.discard(rp)
        self.dead[rp] = (stamp, now)
        self.dead.move_to_end(rp)

    def _seen_access(self, rp: str, at: float) -> None:
        if at > self._announced.get(rp, float("-inf")):
            self._announced[rp] = at

    def _differs(self, rp: str, fingerprint: str) -> bool:
        meta = self.meta.get(rp)
        return meta is None or meta.fingerprint != fingerprint

    def _log_covers(self, since: int) -> bool:
        return since > self.seq or (bool(self._log) and self._log[0][0] <= since)

    @staticmethod
    def _bare_meta(state: SessionState) -> SessionMeta:
        return SessionMeta({n: ZERO for n in state.attributes})
