"""Sessions in distributed mode: `[replication] mode = "distributed"` (the I/O shell).

The built-in cluster's second way to keep sessions, beside all-to-all replication: each
session — its attributes and the recorded responses of its last writes — is one entry of an
internal distributed cache (replication/cache.py, `SESSIONS_CACHE`) held by `owners` members:
the node whose route the session id carries (pinned primary) and `owners - 1` backups chosen
by rendezvous hashing (placement.py). It plugs into the session middleware like the Redis
store does (worker/backend.py): the worker keeps only the sessions of the requests in flight.

- `load` (SessionLoader): the request's sessions come from the cache. The sticky case — this
  node is the route's node and holds the entry — reads its own table, no network. Otherwise
  (a failover, a stale cookie) the owners are asked and the newest copy wins; if none of them
  has it, every member is asked before the session is called absent, so a session that exists
  is never replaced by a new one. Nobody has it but a member asked did not answer: UNKNOWN
  (503, retried). A state the worker still holds (open, or committed and being written) is
  never replaced by the table's copy. A request id without a record in the session entries
  is looked up under `rid/`; when that record cannot be read the request runs but its writes
  are refused (replay.Unverified, as the Redis store's). A record that fell out of its entry
  (three or more requests of one session in flight) is in the ledger of every owner
  (session_records.py): found here on an owner, asked of the owners after a failover read —
  and on the sticky read too when this node may lack it: the request id is in doubt (an
  earlier attempt could not read its record), or this node restarted under its route less
  than the exactly-once ttl ago and the session is older than its start.
- `committed` + `sink`: each changed session becomes a cache put (new entry text, ttl the
  session's idle timeout), the request's recorded response on the last one; the put goes to the
  primary (this node: a takeover renames the session to this route first), which copies it to
  the backups and waits for their replies (`strict`: to every owner of the current view, or
  the write is refused with 503 and not acknowledged). A retried put keeps its id.
- read-only requests extend the entry's expiry at most once per `touch_interval` (a put in
  the background), so backups do not expire a session that is only read.
- rotation and invalidation write the ended session's entry without state, keeping its
  records until the exactly-once ttl; a retry of a logout is answered from the record.

Rebalance on join/leave, the byte-rate bound and the op ids across a primary change are the
cache's (cache.py). docs/cluster.md, "Sessions in distributed mode", has the guarantees.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from worker.backend import SessionNotSaved
from worker.cache_table import MAX_VALUE_TEXT, CacheError, CacheTable, CacheUnavailable, Entry
from worker.delta import SessionDelta, SessionState
from worker.middleware import SessionManager
from worker.peers import ABSENT, FOUND, UNKNOWN, Lookup
from worker.readiness import Readiness
from worker.session_ids import split_session_id

from .cache import Caches
from .config import ClusterConfig
from .ledger import Ledger, RecordedResponse
from .member_info import MemberInfo
from .placement import Placement
from .planned_writes import Plan, PlannedWrites
from .replay import Unverified, record_of, replay_from
from .session_entry import (
    LOOSE_PREFIX,
    SESSIONS_CACHE,
    EntryFormatError,
    SessionEntry,
    decode_entry,
    encode_entry,
    encode_loose,
    kept_records,
    loose_key,
    merge_entries,
    route_of,
)
from .session_records import RecordLookups, SessionsBackend

log = logging.getLogger("pyjk.cluster")
MAX_LOAD_IDS = 4  # as worker/peers.py: more ids in one request are not worth a read each


class DistributedSessions:
    """SessionLoader, CommitObserver and sink of one node in distributed mode."""

    def __init__(
        self,
        config: ClusterConfig,
        manager: SessionManager,
        readiness: Readiness,
        caches: Caches,
        *,
        spawn: Callable[[Any], None],
        counters: Counter[str],
        clock: Callable[[], float],
    ) -> None:
        self.config, self.manager, self.readiness, self.caches = config, manager, readiness, caches
        self.store, self.spawn, self.counters, self.clock = manager.store, spawn, counters, clock
        self.me = caches.me
        self.started = clock()  # until the exactly-once ttl after it: _may_lack_records
        self.routes: dict[str, str] = {self.store.route: self.me}  # route → member id
        table = CacheTable(SESSIONS_CACHE, writer=self.me,
                           max_entries=self.store.max_active_sessions,
                           max_value_bytes=MAX_VALUE_TEXT, merge=self._merge)  # fmt: skip
        # records read for requests in flight (a replay is answered from here, synchronously)
        # and the records that fell out of the entries this member owns (session_records.py),
        # within [exactly_once]'s bounds, as all-to-all's
        self.ledger = Ledger(
            ttl=config.dedup_ttl, max_entries=config.dedup_max_entries,
            max_bytes=config.dedup_max_bytes, max_body=config.dedup_max_body,
        )  # fmt: skip
        self.backend = SessionsBackend(
            caches, config.owners, table, pin=self._pin, records=self.ledger,
            counters=counters, clock=clock,
        )  # fmt: skip
        caches.backends[SESSIONS_CACHE] = self.backend
        self.table = table
        self._planned: PlannedWrites[tuple[str, str, float | None]] = PlannedWrites(self._write)
        self._unverified = Unverified()  # may run, may not write (replay.py)
        self.lookups = RecordLookups(self.backend, self.ledger, self._unverified, counters,
                                     max_body=config.dedup_max_body, clock=clock)  # fmt: skip

    def install(self) -> None:
        self.manager.sink = self.sink
        self.manager.observer = self
        self.manager.loader = self
        self.caches.write_refusal = self._unverified.cache_refusal

    # -- placement ---------------------------------------------------------------------------
    def learn(self, info: MemberInfo) -> None:
        """A member joined: its route pins its sessions to it (kept after it leaves, so the
        rebalance still knows who the old primary was)."""
        self.routes[info.route] = info.id

    def _pin(self, text: str) -> str | None:
        route = route_of(text)
        return None if route is None else self.routes.get(route)

    def _owners(self, rp: str, route: str | None) -> tuple[str, ...]:
        pinned = self.routes.get(route) if route else None
        placement = Placement(self.caches.view(), self.backend.owners)
        return placement.owners_of(f"{SESSIONS_CACHE}/{rp}", pinned)

    # -- SessionLoader ------------------------------------------------------------------------
    async def load(self, session_ids: Sequence[str], request_id: str | None) -> Lookup:
        self._unverified.serving(request_id)
        # an earlier attempt could not read this id's record: look it up wherever the
        # session is read from (the sticky read included), or the retry would run unchecked
        doubt = self._unverified.in_doubt(request_id)
        if "state-transfer" in self.readiness.waiting_for:
            self.counters["dist_refused_settling"] += 1
            return UNKNOWN  # the view may still lack members: an owner could be missed
        wanted: dict[str, str | None] = {}
        for session_id in session_ids:
            parts = split_session_id(session_id)
            if parts is not None and parts[0] not in wanted:
                wanted[parts[0]] = parts[1]
        found = False
        for rp, route in list(wanted.items())[:MAX_LOAD_IDS]:
            try:
                entry, asked = await self._read(rp, route)
            except CacheError as exc:
                self.counters["dist_load_unknown"] += 1
                log.warning("session read unanswered rp=%s…: %s", rp[:8], exc)
                return UNKNOWN
            except EntryFormatError as exc:
                self.counters["dist_malformed"] += 1
                log.error("session entry refused: %s", exc)
                return UNKNOWN
            if entry is None:
                continue
            now = self.clock()
            if request_id is not None and (record := entry.records.get(request_id)) is not None:
                self.ledger.put(request_id, record, now)
            elif (
                request_id is not None and self.ledger.get(request_id, now) is None
                and (asked or doubt or self._may_lack_records(entry, now))
            ):  # fmt: skip
                # read from other members (a failover): a record that fell out of the entry
                # is kept by its owners (session_records.py) — this node is not one of them;
                # read here: ask the other owners when this node may not have kept it
                await self.lookups.kept(request_id, asked or self._holders(rp, route))
            if entry.state is not None:
                # A state still in the store is the newest: a request has it open, or one
                # committed it and its put is on the way (release forgets it only after the
                # write) — the table may still hold the version before it.
                if self.store.get_state(entry.state.id) is None:
                    self.store.install(entry.state)
                found = True
        if (
            (not found or doubt)
            and request_id is not None
            and self.ledger.get(request_id, self.clock()) is None
        ):
            # No live session named and no record in their entries: the retry of a request
            # that created a session may carry a stale cookie (or none); its record is under
            # its request id. (With a live session named, the first attempt used it, so its
            # record is in that session's entry: the sticky path stays free of round trips.)
            await self.lookups.loose(request_id)
        self.counters["dist_loads"] += 1
        return FOUND if found else ABSENT

    async def _read(
        self, rp: str, route: str | None
    ) -> tuple[SessionEntry | None, tuple[str, ...]]:
        """The session's entry (None: absent), and the members asked for it (none: read
        here, the sticky case)."""
        mine = self.table.entry(rp)
        max_body = self.config.dedup_max_body
        if (
            mine is not None and route == self.store.route and mine.text is not None
            and route_of(mine.text) == route and mine.live(self.clock())
        ):  # fmt: skip
            self.counters["dist_reads_local"] += 1  # sticky: this node is the primary
            return decode_entry(mine.text, max_body), ()
        # a failover or a stale cookie: the owners by the cookie's route and by this node's
        # copy, newest first; then everyone (a session that exists is never called absent)
        self.counters["dist_reads_remote"] += 1
        members = self._holders(rp, route)
        asked = set(members)
        best, missed = await self.backend.fetch_from(rp, members)
        if best is None:
            others = tuple(m for m in self.caches.members() if m not in asked)
            if others:
                self.counters["dist_reads_everyone"] += 1
                best, more = await self.backend.fetch_from(rp, others)
                missed += more
                members += others
        # read again after the awaits: a put may have reached this node's table meanwhile
        mine = self.table.entry(rp)
        if mine is not None and (best is None or mine.version >= best.version):
            best = mine
        if best is None and missed:
            # nobody said "here", but a member that may hold it (a backup after a failover)
            # did not answer: not known, so 503 — never a new empty session over an old one
            raise CacheUnavailable(f"session rp={rp[:8]}…: {missed} member(s) did not answer")
        if best is None or not best.live(self.clock()) or best.text is None:
            return None, members
        if best is not mine:
            self.table.apply(rp, best)  # this node serves it now: the takeover's put comes next
        return decode_entry(best.text, max_body), members

    def _holders(self, rp: str, route: str | None) -> tuple[str, ...]:
        """The other members that may hold the session: its owners by the cookie's route and
        by this node's copy."""
        owners = set(self._owners(rp, route)) | set(self.backend.owners_of(rp))
        return tuple(sorted(owners - {self.me}))

    def _may_lack_records(self, entry: SessionEntry, now: float) -> bool:
        """Whether this node, reading its own copy (the sticky case), may lack a record that
        fell out of the entry: it restarted (same route) less than the exactly-once ttl ago,
        and the session is older than this run — the records its owners kept aside before
        are not in this node's ledger, and the copies it got back carry only the newest."""
        if now - self.started >= self.config.dedup_ttl:
            return False
        return entry.state is None or entry.state.created < self.started

    def release(self, random_parts: Sequence[str]) -> None:
        for rp in random_parts:
            state = self.store.get_state(f"{rp}.{self.store.route}")
            if state is not None:
                self._maybe_touch(rp, state)  # nothing to do right after a write
            self.store.forget(rp)

    def _maybe_touch(self, rp: str, state: SessionState) -> None:
        """A read-only request: extend the entry's expiry on every owner, at most once per
        touch_interval (the primary's put carries the new last access to the backups)."""
        entry, ttl = self.table.entry(rp), self._ttl(state)
        if entry is None or entry.text is None or entry.expires is None or ttl is None:
            return
        if route_of(entry.text) != self.store.route:
            return  # not ours to extend (this node is not the session's primary)
        now = self.clock()
        if entry.expires - now > ttl - self.config.touch_interval:
            return
        self.counters["dist_touches"] += 1
        text = self._text(state, None, now)
        self.spawn(self._put_quietly(rp, text, ttl))

    async def _put_quietly(self, rp: str, text: str, ttl: float | None) -> None:
        try:
            await self.backend.put(rp, text, ttl)
        except CacheError as exc:
            self.counters["dist_touches_failed"] += 1
            log.warning("session touch not confirmed rp=%s…: %s", rp[:8], exc)

    # -- CommitObserver and sink --------------------------------------------------------------
    def replay(self, request_id: str) -> web.StreamResponse | None:
        return replay_from(self.ledger, request_id, self.clock(), self.counters)

    def committed(
        self, deltas: Sequence[SessionDelta], request_id: str | None, response: web.StreamResponse
    ) -> None:
        now = self.clock()
        record = record_of(request_id, response, now, max_body=self.config.dedup_max_body,
                           max_entries=self.config.dedup_max_entries)  # fmt: skip
        writes: list[tuple[str, str, float | None]] = []
        last = len(deltas) - 1
        for i, delta in enumerate(deltas):
            attach = (request_id, record) if i == last and record is not None else None
            writes += self._writes_of(delta, attach, now)
        self._planned.plan(deltas, Plan(writes, refused=self._unverified.refusal(request_id)))

    def _writes_of(
        self,
        delta: SessionDelta,
        attach: tuple[str | None, RecordedResponse] | None,
        now: float,
    ) -> list[tuple[str, str, float | None]]:
        """The puts of one delta (`attach`: the request's record, on its last delta)."""
        parts = split_session_id(delta.session_id)
        assert parts is not None
        rp, request_id = parts[0], None if attach is None else attach[0]
        writes: list[tuple[str, str, float | None]] = []
        state = self.store.get_state(delta.session_id)
        if state is None:
            writes.append((rp, self._ended(delta.session_id, attach, now), self._ttl(None)))
        else:
            writes.append((rp, self._text(state, attach, now), self._ttl(state)))
        if delta.replaces is not None and (old := split_session_id(delta.replaces)):
            # a rotation: the old id ends once the new one is kept (a failed write leaves
            # the old session as it was); its entry keeps no state, and the request's
            # record: a retry of the request still carries the old cookie
            writes.append((old[0], self._ended(delta.replaces, attach, now), self._ttl(None)))
        if (
            attach is not None
            and request_id is not None
            and (delta.created is not None or state is None)
        ):  # its retry may come without the new cookie (or with none): found by its id
            writes.append((loose_key(request_id), encode_loose(request_id, attach[1]),
                           self.config.dedup_ttl))  # fmt: skip
        return writes

    async def sink(self, delta: SessionDelta) -> None:
        plan = self._planned.take(delta)
        if plan is None:
            # not seen at commit (the observer failed, or the expiry sweep): written without
            # a record — a change the store holds is never answered 200 unwritten
            self.counters["dist_writes_unplanned"] += 1
            plan = Plan(self._writes_of(delta, None, self.clock()))
        if plan.refused is not None:
            self.counters["dist_writes_refused"] += 1
        await self._planned.send(plan)

    async def _write(self, writes: list[tuple[str, str, float | None]]) -> None:
        try:
            for rp, text, ttl in writes:
                before = self.backend.owners_of(rp)  # by the route of the copy held here
                # placed by the text the owner stored: its merge may have kept the stored
                # entry's id (an ended one, or a newer state) and so its route and owners
                stored = await self.backend.put_stored(rp, text, ttl)
                if gone := set(before) - set(self.backend.owners_of(rp, text=stored)):
                    self.spawn(self._evict(rp, tuple(gone)))
        except CacheError as exc:
            self.counters["dist_writes_failed"] += 1
            raise SessionNotSaved(f"session write not confirmed by its owners: {exc}") from exc
        self.counters["dist_writes"] += len(writes)

    async def _evict(self, rp: str, members: tuple[str, ...]) -> None:
        """A takeover moved the session's primary (and so its backups): the members that held
        it for the old route drop their copies, which no write reaches any more — a request
        that still names the old route must not read one of them as current."""
        self.counters["dist_evictions"] += 1
        await self.caches.copy_to(members, self.backend.request("evict", rp))

    # -- entries ------------------------------------------------------------------------------
    def _merge(
        self, stored: str, incoming: str, now: float, ttl: float | None
    ) -> tuple[str, float | None]:
        """The sessions table's merge hook: a put on this member (its primary) merges into the
        entry held here (session_entry.merge_entries). A request's text carries only its own
        record and the state it committed; two requests of one session in flight at once
        put in either order, and neither loses the other's record or newer state. The entry
        expires by the state kept, not the put's: a late put of an older commit must not
        cut short a newer state's longer (or endless) idle timeout, nor a touch stretch an
        ended session's records past the exactly-once ttl."""
        merged = merge_entries(stored, incoming, now, self.config.dedup_ttl,
                               self.config.dedup_max_body)  # fmt: skip
        for request_id, record in merged.dropped.items():  # kept aside (session_records.py)
            self.ledger.put(request_id, record, now)
        if merged.problem is not None:
            self.counters["dist_malformed"] += 1
            log.error("session entry merge: %s", merged.problem)
        if merged.entry is None:  # not a session entry (a creating request's record)
            return merged.text, ttl
        return merged.text, self._ttl(merged.entry.state)

    def _with(
        self, attach: tuple[str | None, RecordedResponse] | None, now: float
    ) -> dict[str, RecordedResponse]:
        # only this request's record: the entry's others are kept by the owner's merge
        if attach is None or attach[0] is None:
            return {}
        return kept_records({attach[0]: attach[1]}, now, self.config.dedup_ttl)

    def _text(
        self,
        state: SessionState,
        attach: tuple[str | None, RecordedResponse] | None,
        now: float,
    ) -> str:
        return encode_entry(SessionEntry(state.id, state, self._with(attach, now)))

    def _ended(
        self,
        session_id: str,
        attach: tuple[str | None, RecordedResponse] | None,
        now: float,
    ) -> str:
        return encode_entry(SessionEntry(session_id, None, self._with(attach, now)))

    def _ttl(self, state: SessionState | None) -> float | None:
        """How long an entry with `state` lives from its write (None: for ever)."""
        if state is None:  # ended: kept only for its records, until the exactly-once ttl
            return self.config.dedup_ttl
        # past the idle timeout plus one touch period the session is gone everywhere; the
        # store itself refuses it at its idle timeout (SessionStore.begin)
        if state.max_inactive <= 0:
            return None
        return state.max_inactive + self.config.touch_interval

    # -- observability ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """/cluster-manager's "session_store": the sessions held here by owner and backup
        (apart: `records`, entries that only keep recorded responses — of a session-creating
        request under its id, of an ended session under its own)."""
        now, owned, backup, records = self.clock(), 0, 0, 0
        for key, entry in self.table.items():
            if not entry.live(now):
                continue
            if key.startswith(LOOSE_PREFIX) or not _is_session(entry, now):
                records += 1
            elif self.backend.pinned(key) == self.me:
                owned += 1
            else:
                backup += 1
        stats = self.backend.stats
        return {"mode": "distributed", "owners": self.config.owners, "entries": owned + backup,
                "owned": owned, "backup": backup, "records": records,
                "kept_records": len(self.ledger), "rebalancing": self.caches.rebalancing,
                "rebalanced_keys": stats.rebalanced_keys,
                "rebalanced_bytes": stats.rebalanced_bytes}  # fmt: skip

    def per_route(self) -> Counter[str | None]:
        """Live sessions held here by the route they carry (the members' live_sessions)."""
        now = self.clock()
        out: Counter[str | None] = Counter()
        for _, entry in self.table.items():
            if _is_session(entry, now) and (route := route_of(entry.text or "")) is not None:
                out[route] += 1
        return out


def _is_session(entry: Entry, now: float) -> bool:
    """A live entry with a session in it (not one kept only for its records: an ended
    session's, whose state is null right after its id, or a creating request's)."""
    text = entry.text
    return (
        entry.live(now) and text is not None and route_of(text) is not None
        and ',"s":null,' not in text[:160]
    )  # fmt: skip
