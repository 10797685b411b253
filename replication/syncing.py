"""Pulling snapshots: state transfer at start, gap recovery, anti-entropy, missing sessions.

All four are the same exchange — a Pull on this node's link to a member, answered by
StateChunks on that connection and merged as they arrive (merge is a join, so partial or
repeated snapshots are harmless):

- *sync* with an origin (ordering.py decided it is needed): a full snapshot on first contact,
  else the sessions it changed since the first missing seq. Readiness is held ("resync") while
  any sync runs; a sync that fails or outlasts `state_transfer_timeout` is abandoned (what was
  buffered is applied) and retried when the next heartbeat shows the gap again.
- *state transfer*: at start, after two heartbeat periods (Tomcat waits the same), readiness
  stays held ("state-transfer") until every member seen then has been synced, or
  `state_transfer_timeout` ran out — which is logged either way.
- *anti-entropy*: every `anti_entropy_interval`, with each member whose heartbeat digest has
  differed from ours twice in a row (static members: always), send our digest; the member
  answers with what differs and pulls back what we have newer.
- *fetch*: sessions a delta referred to but this node lacks.
- *lookup*: sessions a request names but this node lacks (worker/peers.py): every member is
  asked at once, the request waits until one had them, all answered, or the time ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from worker.peers import ABSENT, FOUND, UNKNOWN, Lookup

from .channel import Endpoint
from .codec import Pull, StateChunk
from .ledger import RecordedResponse
from .member_info import MemberInfo
from .membership import ALIVE
from .merge import Replica, Stamp
from .replicator import Answer, Received

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("pyjk.cluster")
MAX_DIGEST_TOMBSTONES = 10_000
# Lookups in flight at once; past it a request is told UNKNOWN (503) rather than adding cluster
# traffic: a flood of made-up session ids must not turn into a flood of pulls.
MAX_LOOKUPS = 256


class Syncer:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.progress = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._mismatch: dict[str, int] = {}
        self._lookups = 0

    @property
    def running(self) -> bool:
        return bool(self._running)

    @property
    def timeout(self) -> float:
        return self.node.config.state_transfer_timeout or 60.0

    # -- syncs with an origin ------------------------------------------------------------------
    def start(self, member: MemberInfo, since: int) -> None:
        if member.id in self._running:
            return
        task = asyncio.create_task(self._sync(member, since), name=f"sync-{member.route}")
        self._running[member.id] = task
        self.node.update_readiness()

    async def _sync(self, member: MemberInfo, since: int) -> None:
        node = self.node
        full = since <= 1  # first contact: everything it holds, whoever wrote it
        node.counters["syncs_started"] += 1
        started = node.clock()
        received: Received | None = None
        try:
            pull = Pull(1, since=None if full else since)
            merged, seq = await self._pull(member, pull)
            received = node.replicator.synced(member.id, seq, node.clock())
            node.counters["syncs_done"] += 1
            log.info(
                "synced with member=%s route=%s kind=%s sessions_changed=%d took_ms=%.0f",
                member.id, member.route, "full" if full else f"since-{since}", merged,
                1000 * (node.clock() - started),
            )  # fmt: skip
        except (TimeoutError, ConnectionError) as exc:
            node.counters["syncs_failed"] += 1
            log.warning("sync with member=%s route=%s failed: %r", member.id, member.route, exc)
            node.replicator.abandon(member.id, node.clock())
        finally:
            if self._running.get(member.id) is asyncio.current_task():
                del self._running[member.id]
            node.update_readiness()
            self.progress.set()
        if received is not None:
            self.follow_up(member, received)

    async def _pull(self, member: MemberInfo, pull: Pull) -> tuple[int, int]:
        """Send `pull`, merge every chunk; (sessions changed, the snapshot's seq)."""
        node = self.node
        queue = node.channel.link(member).pull(pull)
        changed = 0
        async with asyncio.timeout(self.timeout):
            while True:
                chunk = await queue.get()
                if chunk is None:
                    raise ConnectionError(f"link to {member.route} lost during a pull")
                changed += node.replicator.merge_chunk(chunk, node.clock())
                if chunk.final:
                    return changed, chunk.seq

    def follow_up(self, peer: MemberInfo, received: Received) -> None:
        if received.sync_since is not None:
            self.start(peer, received.sync_since)
        if received.want:
            self.node.spawn(self.fetch(peer, received.want))

    async def fetch(self, member: MemberInfo, rps: tuple[str, ...]) -> None:
        node = self.node
        node.counters["fetches"] += 1
        try:
            await self._pull(member, Pull(1, ids=rps, have=node.replicator.versions(rps)))
        except (TimeoutError, ConnectionError) as exc:
            log.warning("fetch of %d sessions from %s failed: %r", len(rps), member.route, exc)
        finally:
            node.replicator.unwant(rps)

    async def lookup(self, rps: tuple[str, ...], timeout: float) -> Lookup:
        """Ask every member for the sessions `rps` and merge the answers (within `timeout`):
        FOUND once one is held here, ABSENT when every member answered (or is gone) without
        it, UNKNOWN when a member did not answer in time."""
        node = self.node
        rps = self._worth_asking(rps)
        members = [m.info for m in node.membership.members()]
        if not rps or not members:
            return ABSENT
        if not self._admit("lookups"):
            return UNKNOWN
        node.counters["lookups"] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        asks = {asyncio.ensure_future(self._ask(m, rps)) for m in members}
        pending = asks
        try:
            while pending and not self._holds_any(rps):
                done, pending = await asyncio.wait(
                    pending, timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                if not done:
                    break
        finally:
            self._lookups -= 1
            for task in pending:
                task.cancel()
        if self._holds_any(rps):
            result = FOUND
            log.info("session found on a member ids=%s", ",".join(rps))
        else:
            result = UNKNOWN if pending else ABSENT
        node.counters[f"lookups_{result}"] += 1
        return result

    async def refresh(self, rps: tuple[str, ...], timeout: float) -> Lookup:
        """Before a takeover: ask the live members for versions of `rps` newer than ours and
        merge them (within `timeout`). A writer that died mid-broadcast can leave its last
        write on some survivors only — one of them may even have answered the client's retry
        from its ledger — so the survivor taking the session over must not serve its older
        copy. FOUND when every live member answered (or is gone), UNKNOWN otherwise."""
        node = self.node
        # A member whose link just failed is gone or cut off: it cannot answer now, and waiting
        # for the link's next attempt (RECONNECT_DELAY, then a refusal) would cost the failover
        # ~100 ms while the membership still lists it as alive (async mode has no missed acks).
        members = [
            m.info
            for m in node.membership.members()
            if m.state == ALIVE and not node.channel.link_down(m.info.id)
        ]
        rps = self._worth_asking(rps)
        if not rps or not members:
            return FOUND
        if not self._admit("refreshes"):
            return UNKNOWN
        node.counters["refreshes"] += 1
        asks = [asyncio.ensure_future(self._ask(m, rps)) for m in members]
        try:
            _, pending = await asyncio.wait(asks, timeout=timeout)
        finally:
            self._lookups -= 1
            for task in asks:
                task.cancel()
        if pending:
            node.counters["refreshes_unanswered"] += 1
            return UNKNOWN
        return FOUND

    def _worth_asking(self, rps: tuple[str, ...]) -> tuple[str, ...]:
        """The ids members may hold: an invalidated session is gone for good (its tombstone
        is here), so a made-up or replayed old id costs no cluster traffic."""
        dead = self.node.replicator.dead
        return tuple(rp for rp in rps if rp not in dead)

    def _admit(self, kind: str) -> bool:
        """One more ask of the members (a lookup or a refresh) if fewer than MAX_LOOKUPS are in
        flight; the caller gives it back (`self._lookups -= 1`) when it is done."""
        if self._lookups >= MAX_LOOKUPS:
            self.node.counters[f"{kind}_refused"] += 1
            return False
        self._lookups += 1
        return True

    async def _ask(self, member: MemberInfo, rps: tuple[str, ...]) -> None:
        with contextlib.suppress(ConnectionError):  # gone: it cannot hold them for us
            have = self.node.replicator.versions(rps)  # none, unless another answer came first
            await self._pull(member, Pull(1, ids=rps, have=have))

    def _holds_any(self, rps: tuple[str, ...]) -> bool:
        return any(self.node.store.get_state(rp) is not None for rp in rps)

    def member_left(self, member_id: str, *, forever: bool) -> None:
        task = self._running.pop(member_id, None)
        if task is not None:
            task.cancel()
        node = self.node
        node.replicator.abandon(member_id, node.clock())
        if forever:
            node.replicator.order.forget(member_id)
        self._mismatch.pop(member_id, None)
        node.update_readiness()

    # -- state transfer ------------------------------------------------------------------------
    async def state_transfer(self) -> None:
        node, cfg = self.node, self.node.config
        started = node.clock()
        await asyncio.sleep(2 * cfg.frequency)
        initial = {m.info.id for m in node.membership.members()}
        order = node.replicator.order
        while True:
            waiting = [
                mid
                for mid in initial
                if mid in node.membership and (not order.known(mid) or order.syncing(mid))
            ]
            remaining = started + cfg.state_transfer_timeout - node.clock()
            if not waiting:
                node.state_transfer_seconds = node.clock() - started
                log.info(
                    "state transfer complete members=%d sessions=%d took_ms=%.0f",
                    len(initial), len(node.store), 1000 * (node.clock() - started),
                )  # fmt: skip
                break
            if remaining <= 0:
                node.state_transfer_seconds = node.clock() - started
                node.counters["state_transfer_timeouts"] += 1
                log.warning(
                    "state transfer timed out after %.0f ms (state_transfer_timeout), still "
                    "waiting for %d member(s); serving with sessions=%d",
                    1000 * (node.clock() - started), len(waiting), len(node.store),
                )  # fmt: skip
                break
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.progress.wait()
        node.readiness.release("state-transfer")

    # -- anti-entropy --------------------------------------------------------------------------
    def anti_entropy(self) -> None:
        node = self.node
        for member in node.membership.members():
            mid = member.info.id
            if member.state != ALIVE or mid in self._running:
                continue
            if member.digest:
                if member.digest == node.digest:
                    self._mismatch.pop(mid, None)
                    continue
                self._mismatch[mid] = self._mismatch.get(mid, 0) + 1
                if self._mismatch[mid] < 2:  # one check apart: maybe only in flight
                    continue
            node.spawn(self._exchange(member.info))

    async def _exchange(self, member: MemberInfo) -> None:
        node = self.node
        dead = node.replicator.dead_list()[-MAX_DIGEST_TOMBSTONES:]
        digest = tuple(node.replicator.digest())
        have = node.replicator.versions(rp for rp, _ in digest)
        pull = Pull(1, digest=digest, dead=dead, have=have)
        node.counters["anti_entropy_rounds"] += 1
        try:
            changed, _ = await self._pull(member, pull)
        except (TimeoutError, ConnectionError) as exc:
            log.debug("anti-entropy with %s failed: %r", member.route, exc)
            return
        if changed:
            node.counters["anti_entropy_repairs"] += changed
            log.info("anti-entropy with route=%s repaired sessions=%d", member.route, changed)

    # -- answering pulls -----------------------------------------------------------------------
    async def answer(self, peer: MemberInfo, pull: Pull, endpoint: Endpoint) -> None:
        node = self.node
        answer = node.replicator.answer(pull, node.clock())
        node.counters["pulls_answered"] += 1
        try:
            chunks = split(answer, node.config.max_frame // 4)
            for i, (sessions, dead, responses) in enumerate(chunks):
                final = i == len(chunks) - 1
                msg = StateChunk(pull.n, final, answer.seq, sessions, dead, responses)
                if not endpoint.write(msg):
                    return
                await endpoint.writer.drain()
        except (OSError, ConnectionError):
            return
        if answer.want:  # anti-entropy: pull back what the asker has that we lack
            node.spawn(self.fetch(peer, answer.want))


Records = list[tuple[str, RecordedResponse]]
Chunk = tuple[
    tuple[Replica, ...], tuple[tuple[str, Stamp], ...], tuple[tuple[str, RecordedResponse], ...]
]


def split(answer: Answer, budget: int) -> list[Chunk]:
    """Cut an answer into chunks of roughly `budget` bytes of JSON (at least one chunk).

    A session's records travel in the chunk that carries the session (merge_chunk keeps the
    records before it merges the sessions), so a connection lost between two chunks cannot
    leave a write here without its record."""
    chunks: list[Chunk] = []
    sessions: list[Replica] = []
    dead: list[tuple[str, Stamp]] = []
    responses: Records = []
    size = 0

    def flush() -> None:
        nonlocal sessions, dead, responses, size
        chunks.append((tuple(sessions), tuple(dead), tuple(responses)))
        sessions, dead, responses, size = [], [], [], 0

    sent = {replica.state.random_part for replica in answer.sessions}
    with_session: dict[str | None, Records] = {}
    others: Records = []
    for item in answer.responses:
        session = item[1].session
        if session in sent:
            with_session.setdefault(session, []).append(item)
        else:
            others.append(item)
    for replica in answer.sessions:
        records = with_session.get(replica.state.random_part, ())
        cost = 300 + replica.state.size + 70 * (len(replica.meta.attrs) + len(replica.meta.removed))
        cost += sum(_record_cost(record) for _, record in records)
        if size and size + cost > budget:
            flush()
        sessions.append(replica)
        responses.extend(records)
        size += cost
    for tombstone in answer.dead:
        if size and size + 80 > budget:
            flush()
        dead.append(tombstone)
        size += 80
    for request_id, record in others:
        cost = _record_cost(record)
        if size and size + cost > budget:
            flush()
        responses.append((request_id, record))
        size += cost
    flush()
    return chunks


def _record_cost(record: RecordedResponse) -> int:
    return 250 + len(record.body) * 4 // 3 + sum(len(k) + len(v) + 8 for k, v in record.headers)
