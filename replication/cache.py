"""The app's cluster caches in their modes, over the sealed TCP channel (the I/O shell).

Each cache of the app (worker/caches.py) is bound to a `ModeBackend` that keeps this node's
entries in a pure CacheTable and asks the members through `CacheReq` frames (cache_codec.py):

- **distributed**: each key lives on `owners` members, ranked by rendezvous hashing over the
  live members (placement.py); the first is the primary. Writes (put, delete, compare-and-set)
  go to the primary, which applies them to its table (so a compare-and-set is atomic there),
  copies the entry to the other owners and waits for their replies before it answers: an
  acknowledged write is on every live owner, and losing fewer than `owners` members loses none.
  Reads are served by an owner: this node when it is one, else the primary (then the next
  owner). A primary that lacks the key (a rebalance still bringing it) first fetches the newest
  entry from the other owners. Each write carries an id: a retried write (the primary died
  before answering) is recognised by the new primary, which got the id with the copy, and is
  not applied twice.
- **replicated**: the same with every member an owner (writes through the primary, copies to
  all); reads are local.
- **invalidated**: no data is shared. A write applies here, then every other member evicts
  its copy and answers before the write returns, so no member reads the old value afterwards
  (it has none). Compare-and-set compares with this node's copy.

When members join or leave, `view_changed` rebalances: every member plans (placement.rebalance)
the move of the keys it holds from the last view to the new one; the planned source copies
each moving key to its new owners (paced by a RateLimit in bytes/s), then copies this member
no longer owns are dropped. Versions settle copies that cross live writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from worker.cache_table import (
    CacheError,
    CacheFull,
    CacheTable,
    CacheUnavailable,
    CacheValueTooLarge,
    CacheWriteRefused,
    Entry,
)
from worker.caches import CacheStats, ClusterCache, limits_of

from .cache_codec import CacheReply, CacheReq
from .member_info import MemberInfo
from .placement import Placement, RateLimit, rebalance

log = logging.getLogger("pyjk.cluster")

ALL = 1 << 16  # replicated: "owners" larger than any cluster
Request = Callable[[MemberInfo, CacheReq], Awaitable[CacheReply]]
Pin = Callable[[str], str | None]  # an entry's text → the member id that must be its primary


class CacheRemoteError(CacheError):
    """A member refused a cache request (e.g. its copy is full); says which and why."""


class Caches:
    """Every cache of the app on this member, and the frames between members."""

    def __init__(
        self,
        me: str,
        members: Callable[[], Mapping[str, MemberInfo]],
        request: Request,
        *,
        timeout: float,
        rate: float,
        counters: Counter[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.me, self.members, self.request = me, members, request
        self.timeout, self.clock = timeout, clock
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.bucket = RateLimit(rate=rate, burst=max(rate / 4, 64 * 1024))
        self.backends: dict[str, ModeBackend] = {}
        self._view: frozenset[str] = frozenset({me})
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rebalancing = False
        # why the request being served may not write the app's caches (None: it may); the
        # session backend that can tell sets it (dist_sessions: an unread retry record)
        self.write_refusal: Callable[[], str | None] = lambda: None

    def install(self, caches: Mapping[str, ClusterCache]) -> None:
        for name, cache in caches.items():
            table = CacheTable(name, writer=self.me, **limits_of(cache))
            backend = ModeBackend(self, cache.mode, cache.owners, table, cache.stats, app=True)
            self.backends[name] = backend
            cache.bind(backend)

    # -- views -------------------------------------------------------------------------------
    def view(self) -> frozenset[str]:
        return frozenset(self.members()) | {self.me}

    def start(self) -> None:
        if self.backends:
            self._task = asyncio.create_task(self._rebalancer(), name="cache-rebalance")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def view_changed(self) -> None:
        self._wanted.set()

    async def _rebalancer(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            new = self.view()
            if new == self._view:
                continue
            self.rebalancing = True
            try:
                for backend in self.backends.values():
                    await backend.rebalance(self._view, new)
                self._view = new
            except Exception:
                log.exception("cache rebalance failed; retrying")
                self._wanted.set()
                await asyncio.sleep(0.5)
            finally:
                self.rebalancing = self._wanted.is_set()

    # -- frames from members -----------------------------------------------------------------
    def handle(self, peer: MemberInfo, req: CacheReq) -> Awaitable[CacheReply] | CacheReply:
        backend = self.backends.get(req.cache)
        if backend is None:
            self.counters["cache_unknown"] += 1
            return CacheReply(req.n, False, error=f"unknown cache {req.cache!r}")
        if req.op in ("put", "cas", "del"):
            return backend.serve_write(req)
        return backend.serve(req)

    def describe(self) -> list[dict[str, Any]]:
        return [b.describe() for b in self.backends.values()]

    def expire(self) -> int:
        """Forget expired entries and old tombstones (the node's housekeeping timer): keys
        with a TTL that nobody reads again must not pile up."""
        now = self.clock()
        return sum(b.table.expire(now) for b in self.backends.values())

    # -- sending -----------------------------------------------------------------------------
    async def ask(self, member: str, req: CacheReq) -> CacheReply:
        info = self.members().get(member)
        if info is None:
            raise ConnectionError(f"member {member} is not in the view")
        self.counters["cache_requests_out"] += 1
        async with asyncio.timeout(self.timeout):
            return await self.request(info, req)

    async def copy_to(self, members: tuple[str, ...], req: CacheReq) -> int:
        """Send `req` to each member and wait; how many answered."""
        if not members:
            return 0
        results = await asyncio.gather(*(self.ask(m, req) for m in members), return_exceptions=True)
        ok = sum(1 for r in results if isinstance(r, CacheReply))
        self.counters["cache_copies_missed"] += len(members) - ok
        return ok


class ModeBackend:
    """One cache bound to its mode (worker.caches.CacheBackend)."""

    def __init__(
        self,
        caches: Caches,
        mode: str,
        owners: int,
        table: CacheTable,
        stats: CacheStats,
        *,
        pin: Pin | None = None,
        strict: bool = False,
        app: bool = False,
    ) -> None:
        self.caches, self.mode, self.table, self.stats = caches, mode, table, stats
        self.owners = ALL if mode in ("replicated", "invalidated", "local") else owners
        # pin: the member an entry's text names as its primary (sessions: the route's node);
        # strict: a write is acknowledged only once every owner of the current view has it;
        # app: one of the app's caches, whose writes a request may be refused (write_refusal)
        self.pin, self.strict, self.app = pin, strict, app

    # -- placement ---------------------------------------------------------------------------
    def owners_of(
        self, key: str, view: frozenset[str] | None = None, text: str | None = None
    ) -> tuple[str, ...]:
        """The key's owners in `view` (default: the live view), primary first; a pinned cache
        pins by `text` (a write's new value) or else by the entry held here."""
        members = self.caches.view() if view is None else view
        pinned = self.pinned(key, text)
        return Placement(members, self.owners).owners_of(f"{self.table.name}/{key}", pinned)

    def other_owners(self, key: str, text: str | None) -> tuple[str, ...]:
        """The key's owners in the live view other than this member (pinned by `text`)."""
        return tuple(m for m in self.owners_of(key, text=text) if m != self.caches.me)

    def pinned(self, key: str, text: str | None = None) -> str | None:
        if self.pin is None:
            return None
        if text is None and (entry := self.table.entry(key)) is not None:
            text = entry.text
        return None if text is None else self.pin(text)

    def request(self, op: str, key: str | None = None, **fields: Any) -> CacheReq:
        return CacheReq(0, self.table.name, op, key, **fields)

    # -- the app's calls (CacheBackend) ------------------------------------------------------
    async def get(self, key: str, fresh: bool = False) -> str | None:
        """This node's copy when it holds one, else the newest the owners hold. ``fresh``: the
        newest copy unless this node is the key's primary (whose copy is the one a
        compare-and-set is checked against) — a backup's copy can lag behind the primary."""
        now = self.caches.clock()
        if self.mode in ("invalidated", "local") or (self.mode == "replicated" and not fresh):
            return self.table.get(key, now)
        owners = self.owners_of(key)
        me = self.caches.me
        if (
            me in owners
            and (not fresh or owners[0] == me)
            and (text := self.table.get(key, now)) is not None
        ):
            return text
        # not an owner, or an owner still waiting for its copy: ask the others, best first
        entry = await self.fetch(key, tuple(m for m in owners if m != self.caches.me))
        if entry is None or not entry.live(now):
            return None
        return entry.text

    async def put(self, key: str, text: str, ttl: float | None) -> None:
        await self.put_stored(key, text, ttl)

    async def put_stored(self, key: str, text: str, ttl: float | None) -> str:
        """Put, and return the text the primary stored: a table with a merge (sessions) may
        keep another text than `text` — with another route in it, so other owners."""
        reply = await self._write(self.request("put", key, text=text, ttl=ttl))
        return text if reply.text is None else reply.text

    async def delete(self, key: str) -> bool:
        return (await self._write(self.request("del", key))).ok

    async def compare_and_set(
        self, key: str, expected: str | None, text: str, ttl: float | None
    ) -> bool:
        req = self.request("cas", key, text=text, expected=expected, ttl=ttl)
        return (await self._write(req)).ok

    async def keys(self) -> list[str]:
        now = self.caches.clock()
        if self.mode != "distributed":
            return self.table.keys(now)
        found = set(self.table.keys(now))
        others = tuple(self.caches.members())
        replies = await asyncio.gather(
            *(self.caches.ask(m, self.request("keys")) for m in others), return_exceptions=True
        )
        for reply in replies:
            if isinstance(reply, CacheReply) and reply.keys is not None:
                found.update(reply.keys)
        return sorted(found)

    # -- writes ------------------------------------------------------------------------------
    async def _write(self, req: CacheReq) -> CacheReply:
        if self.app and (why := self.caches.write_refusal()) is not None:
            # an earlier attempt of this request may have made this write (its retry record
            # could not be read): refused as its session writes are, a 503
            self.caches.counters["cache_writes_unverified"] += 1
            raise CacheWriteRefused(f"cache {self.table.name!r} key {req.key!r}: {why}")
        req = CacheReq(0, req.cache, req.op, req.key, req.text, req.expected, None, None,
                       req.ttl, secrets.token_hex(16))  # fmt: skip
        if self.mode in ("invalidated", "local"):
            return self._raise(await self.serve_write(req))
        deadline = self.caches.clock() + 2 * self.caches.timeout
        while True:
            assert req.key is not None
            primary = self.owners_of(req.key, text=req.text)[0]
            if primary == self.caches.me:
                return self._raise(await self.serve_write(req))
            try:
                return self._raise(await self.caches.ask(primary, req))
            except (ConnectionError, TimeoutError) as exc:
                # the primary died or the view changed: the same write (same id) goes to the
                # next primary, which recognises it if the first one applied and copied it
                self.caches.counters["cache_write_retries"] += 1
                if self.caches.clock() > deadline:
                    raise CacheUnavailable(
                        f"cache {self.table.name!r} key {req.key!r}: no primary answered"
                    ) from exc
                await asyncio.sleep(0.05)

    def _raise(self, reply: CacheReply) -> CacheReply:
        if reply.error is not None:
            problem = f"cache {self.table.name!r}: {reply.error}"
            if reply.error.startswith("full"):
                raise CacheFull(problem)
            if reply.error.startswith("too large"):
                raise CacheValueTooLarge(problem)
            raise CacheRemoteError(problem)
        return reply

    async def serve_write(self, req: CacheReq) -> CacheReply:
        """Apply a write here (this member is the key's primary, or the mode writes locally),
        then copy it to the other owners (or evict elsewhere) before answering."""
        assert req.key is not None and req.op_id is not None
        table, now = self.table, self.caches.clock()
        if table.seen(req.op_id):  # a retry of a write applied here already (or copied here)
            self.caches.counters["cache_retries_recognised"] += 1
            return await self._confirm_seen(req)
        others = self.other_owners(req.key, req.text)
        if self.mode == "distributed" and table.entry(req.key) is None and others:
            try:
                entry = await self.fetch(req.key, others)  # a rebalance may still bring it
            except CacheUnavailable:
                # every other owner failed: killed members leave the view as their links
                # fail, so ask the owners of the view as it is now (none: the key is new here)
                others = self.other_owners(req.key, req.text)
                entry = await self.fetch(req.key, others)
            if entry is not None:
                table.apply(req.key, entry)
            if table.seen(req.op_id):
                return await self._confirm_seen(req)
        try:
            if req.op == "del":
                written = table.delete(req.key, now, req.op_id)
            elif req.op == "put":
                assert req.text is not None
                written = table.put(req.key, req.text, now, req.ttl, req.op_id)
            else:
                assert req.text is not None
                written = table.compare_and_set(req.key, req.expected, req.text, now, req.ttl,
                                                req.op_id)  # fmt: skip
        except CacheFull as exc:
            return CacheReply(req.n, False, error=f"full: {exc}")
        except CacheValueTooLarge as exc:
            return CacheReply(req.n, False, error=f"too large: {exc}"[:200])
        except ValueError as exc:  # e.g. a compare-and-set on a table that merges (sessions)
            self.caches.counters["cache_writes_refused"] += 1
            return CacheReply(req.n, False, error=f"refused: {exc}"[:200])
        if written is None:
            return CacheReply(req.n, False)
        if self.mode == "local":  # this node's alone: nothing goes to the others
            return CacheReply(req.n, True)
        if self.mode == "invalidated":
            others = tuple(m for m in self.caches.members())
            await self.caches.copy_to(others, self.request("evict", req.key))
            return CacheReply(req.n, True)
        if written.text is not None and written.text != req.text:
            # placed by the text stored, not the one that came: a merge may have kept the
            # stored entry's id, whose route pins another primary (and so other backups)
            others = self.other_owners(req.key, written.text)
        copy = self._copy_of(req.key, written)
        if await self.caches.copy_to(others, copy) < len(others) and self.strict:
            return await self._copy_again(req, copy)
        return self._written(req, written.text)

    def _written(self, req: CacheReq, stored: str | None) -> CacheReply:
        """A write's acknowledgement; it carries the text stored when that is not the one
        sent (a merge), so the writer places what follows (evictions) by it (`put_stored`)."""
        return CacheReply(req.n, True, None if stored == req.text else stored)

    async def _confirm_seen(self, req: CacheReq) -> CacheReply:
        """A retry of a write applied here: strict, it is acknowledged only once the owners
        confirm the entry — its first attempt may still be copying, or have ended short (the
        writer got 503), or this member got it as a backup and a new owner lacks it. The
        copy is of the entry as it is now (a newer write included): copies settle by version,
        so sending it again is harmless."""
        assert req.key is not None
        entry = self.table.entry(req.key)
        if not self.strict or entry is None:
            return CacheReply(req.n, True)
        copy = self._copy_of(req.key, entry)
        others = self.other_owners(req.key, entry.text)
        if await self.caches.copy_to(others, copy) < len(others):
            return await self._copy_again(req, copy)
        return self._written(req, entry.text)

    async def _copy_again(self, req: CacheReq, copy: CacheReq) -> CacheReply:
        """Strict: an owner did not answer. A dead member's link fails at once and leaves the
        view (Caches.members), so the key's owners are computed again and the copy goes to
        them; the write is refused when still short (the writer answers 503: not
        acknowledged; its retry finds it applied here, by its id or its recorded response)."""
        assert req.key is not None
        for _ in range(2):
            # by the copy's text (the one stored: a merge may have changed its route), as the
            # first attempt; a delete's tombstone has none, so its owners are the hash's
            others = self.other_owners(req.key, copy.text)
            if await self.caches.copy_to(others, copy) == len(others):
                return self._written(req, copy.text)
        self.caches.counters["cache_writes_short"] += 1
        return CacheReply(req.n, False, error="copies: an owner did not confirm the write")

    # -- reads and copies from members -------------------------------------------------------
    def serve(self, req: CacheReq) -> CacheReply:
        table, now = self.table, self.caches.clock()
        if req.op == "keys":
            return CacheReply(req.n, True, keys=tuple(table.keys(now)))
        assert req.key is not None
        if req.op == "get":
            entry = table.entry(req.key)
            if entry is None:
                return CacheReply(req.n, False)
            return CacheReply(req.n, True, entry.text, entry.version, entry.expires,
                              op_ids=entry.ops)  # fmt: skip
        if req.op == "copy":
            self.caches.counters["cache_copies_in"] += 1
            table.apply(req.key, req.entry(), req.op_id)
            return CacheReply(req.n, True)
        table.evict(req.key)  # evict
        self.caches.counters["cache_evictions_in"] += 1
        return CacheReply(req.n, True)

    async def fetch(self, key: str, members: tuple[str, ...]) -> Entry | None:
        """The newest entry the members hold for `key` (asked together, first answers);
        CacheUnavailable when none of them answered."""
        entry, missed = await self.fetch_from(key, members)
        if entry is None and members and missed == len(members):
            raise CacheUnavailable(f"cache {self.table.name!r} key {key!r}: no owner answered")
        return entry

    async def fetch_from(self, key: str, members: tuple[str, ...]) -> tuple[Entry | None, int]:
        """(the newest entry the members hold for `key`, how many of them did not answer): a
        caller that must tell "absent" from "not known" sees that a member that may hold the
        key was not heard (`fetch` calls a key absent as soon as one member says so)."""
        if not members:
            return None, 0
        replies = await asyncio.gather(
            *(self.caches.ask(m, self.request("get", key)) for m in members),
            return_exceptions=True,
        )
        missed = sum(1 for r in replies if not isinstance(r, CacheReply))
        entries = [r.entry() for r in replies if isinstance(r, CacheReply)]
        found = [e for e in entries if e is not None]
        if not found:
            return None, missed
        return max(found, key=lambda e: e.version), missed

    # -- rebalance ---------------------------------------------------------------------------
    async def rebalance(self, old: frozenset[str], new: frozenset[str]) -> None:
        if self.mode in ("invalidated", "local"):
            return
        name = self.table.name
        keys = {f"{name}/{k}": k for k, _ in self.table.items()}
        pins = {}
        if self.pin is not None:
            pins = {placed: p for placed, k in keys.items() if (p := self.pinned(k)) is not None}
        plan = rebalance(Placement(old, self.owners), Placement(new, self.owners), keys, pins)
        me = self.caches.me
        for transfer in plan.sends(me):
            key = keys[transfer.key]
            entry = self.table.entry(key)
            if entry is None:
                continue
            copy = self._copy_of(key, entry)
            size = len(entry.text or "") + len(key) + 64
            now = time.monotonic()
            if (pause := self.caches.bucket.delay(size * len(transfer.to), now)) > 0:
                await asyncio.sleep(pause)
            sent = await self.caches.copy_to(transfer.to, copy)
            self.stats.rebalanced_keys += sent
            self.stats.rebalanced_bytes += sent * size
        # A copy this member no longer owns goes only once every new owner confirmed it holds
        # the key at least as new (and got a copy from here when it did not): members joining
        # see the others one by one, so their views — and plans — may differ for a moment
        for placed in plan.drops.get(me, ()):
            await self._hand_over(keys[placed], new)

    async def _hand_over(self, key: str, view: frozenset[str]) -> None:
        mine = self.table.entry(key)
        owners = self.owners_of(key, view)
        if mine is None or self.caches.me in owners:
            return
        for owner in owners:
            reply = await self.caches.ask(owner, self.request("get", key))
            theirs = reply.entry()
            if theirs is None or theirs.version < mine.version:
                await self.caches.ask(owner, self._copy_of(key, mine))
                self.stats.rebalanced_keys += 1
                self.stats.rebalanced_bytes += len(mine.text or "") + len(key) + 64
        self.table.evict(key)

    def _copy_of(self, key: str, entry: Entry) -> CacheReq:
        return self.request("copy", key, text=entry.text, version=entry.version,
                         expires=entry.expires, op_ids=entry.ops)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        now, me = self.caches.clock(), self.caches.me
        owned = backup = 0
        for key in self.table.keys(now):
            owners = self.owners_of(key)
            if owners and owners[0] == me:
                owned += 1
            else:
                backup += 1
        return {
            "name": self.table.name, "mode": self.mode,
            "owners": None if self.owners == ALL else self.owners,
            "entries": owned + backup, "owned": owned, "backup": backup,
            "rebalancing": self.caches.rebalancing,
            "rebalanced_keys": self.stats.rebalanced_keys,
            "rebalanced_bytes": self.stats.rebalanced_bytes,
        }  # fmt: skip
