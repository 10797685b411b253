"""The session store: every session this node holds. Pure: no I/O, time passed in.

A request works on a `RequestSession` (from `store.begin()` or `store.create()`): a mapping of
attribute name to JSON-safe value. Reading an attribute decodes the stored JSON text into the
request's own working copy, so changing that value in place (appending to a list) is seen at
`store.commit()`, which re-encodes what the request touched, compares it with the text it
started from, applies the difference to the store and returns it as a `SessionDelta` — the
unit replication ships. Apps never need Tomcat's "call setAttribute again" rule
(tomcat-cluster.md §3.2, §9.4). A request that only reads produces no delta; its access time
is kept as state.

Effects are atomic per request: nothing a request does is visible in the store before commit,
and `store.abort()` (or a failing commit) leaves the store as it was. (A session the request
creates is entered at once, empty, so that it counts against the limit; abort removes it.)
Two concurrent requests on one session merge attribute by attribute; for the same attribute
the last commit wins (what Tomcat documents for frames/AJAX, §3.7).

Limits (defaults): max_inactive_interval 1800 s per session (<= 0: never expires);
max_active_sessions 100000 (counting replicas; creating one more raises TooManySessions, live
sessions are never evicted); max_session_bytes 65536, counted as attribute names plus their
JSON text (a set() that would pass it raises SessionTooLarge right there; growth in place is
caught at commit, which then raises and keeps none of the request's changes).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from . import values
from .backend import SessionNotSaved
from .delta import SessionDelta, SessionState, apply_delta
from .request_session import (
    _ABSENT,
    RequestSession,
    SessionClosedError,
    SessionError,
    SessionInvalidatedError,
    SessionTooLarge,
    TooManySessions,
)
from .session_ids import check_route, make_session_id, new_random_part, split_session_id

__all__ = [
    "DEFAULT_MAX_ACTIVE_SESSIONS",
    "DEFAULT_MAX_INACTIVE_INTERVAL",
    "DEFAULT_MAX_SESSION_BYTES",
    "DEFAULT_REPLICA_GRACE",
    "RequestSession",
    "SessionClosedError",
    "SessionError",
    "SessionInvalidatedError",
    "SessionStore",
    "SessionTooLarge",
    "TooManySessions",
]

DEFAULT_MAX_INACTIVE_INTERVAL = 1800.0
# Sized from the measured cost (bench/session_cost.py: ~2-2.5 KB of RSS per session, replica
# or not): ~250 MB per node at the limit. With all-to-all replication every node holds every
# session, so this bounds the whole cluster: 100,000 covers ~55 new sessions/s at the default
# 30-minute timeout (docs/cluster.md, "How many sessions"). 10,000 was reached by a 10/s soak.
DEFAULT_MAX_ACTIVE_SESSIONS = 100_000
DEFAULT_MAX_SESSION_BYTES = 64 * 1024
# Tomcat's replicas expire a session only after 2 x max_inactive (tomcat-cluster.md §3.6): a
# replica does not see the owner's read-only requests, so it must not give up at 1 x.
DEFAULT_REPLICA_GRACE = 2.0
# Rotations remembered (old random part -> new), so a write to the old id that commits after
# the rotation lands on its successor: such a write comes within one request's time.
MAX_SUCCESSORS = 4096


class SessionStore:
    """All sessions this node holds (its own and replicas), keyed by the ids' random part."""

    def __init__(
        self,
        route: str,
        *,
        max_inactive_interval: float = DEFAULT_MAX_INACTIVE_INTERVAL,
        max_active_sessions: int = DEFAULT_MAX_ACTIVE_SESSIONS,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        replica_grace: float = DEFAULT_REPLICA_GRACE,
        retired_capacity: int | None = None,
        random_part: Callable[[], str] = new_random_part,
    ) -> None:
        if max_active_sessions < 1 or max_session_bytes < 1:
            raise ValueError("max_active_sessions and max_session_bytes must be at least 1")
        self.route = check_route(route)
        self.max_inactive_interval = float(max_inactive_interval)
        self.max_active_sessions = max_active_sessions
        self.max_session_bytes = max_session_bytes
        self.replica_grace = replica_grace
        self._random_part = random_part
        self._states: dict[str, SessionState] = {}
        self._open: dict[str, int] = {}  # random part -> views not yet committed/aborted
        # Random parts of sessions that ended, so this store never issues them again. 128-bit
        # collisions do not happen in practice; this is a cheap guard against a broken random
        # source, bounded FIFO (default: max_active_sessions entries) to keep memory flat.
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._retired_capacity = retired_capacity or max_active_sessions
        self._successors: OrderedDict[str, str] = OrderedDict()  # rotated: old rp -> new rp
        # for /metrics: sessions this store created, and sessions it expired (any route)
        self.created_total = 0
        self.expired_total = 0

    # -- lookups ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.get_state(session_id) is not None

    def get_state(self, session_id: str) -> SessionState | None:
        """The session whose random part matches `session_id` (whatever its route)."""
        parts = split_session_id(session_id)
        return None if parts is None else self._states.get(parts[0])

    def states(self) -> list[SessionState]:
        return list(self._states.values())

    # -- a request's life -------------------------------------------------------------------
    def begin(self, session_id: str, now: float) -> RequestSession | None:
        """Open the session named by `session_id` for one request; None if there is none.

        The route part does not matter for the lookup: a session taken over by another node
        is still found by its random part. A session idle past its limit is expired here
        rather than handed out.
        """
        parts = split_session_id(session_id)
        if parts is None or (state := self._states.get(parts[0])) is None:
            return None
        if not self._open.get(parts[0]) and self._expired(state, now):
            self._drop(state)
            self.expired_total += 1
            return None
        return self._open_view(state, is_new=False)

    def create(self, now: float, *, max_inactive_interval: float | None = None) -> RequestSession:
        """Create a session routed to this node and open it for the current request."""
        if len(self._states) >= self.max_active_sessions:
            raise TooManySessions(
                f"{len(self._states)} sessions are live, the limit (max_active_sessions) is "
                f"{self.max_active_sessions}"
            )
        random_part = self._unused_random_part()
        max_inactive = self.max_inactive_interval
        if max_inactive_interval is not None:
            max_inactive = float(max_inactive_interval)
        now = float(now)
        state = SessionState(make_session_id(random_part, self.route), now, now, max_inactive)
        self._states[random_part] = state
        self.created_total += 1
        return self._open_view(state, is_new=True)

    def rotate(self, view: RequestSession, now: float) -> RequestSession:
        """Give the session of ``view`` a new id (new random part, this node's route) with the
        same data: Tomcat's changeSessionId, against session fixation. Returns the new view.

        Both views are committed at the request's end, the new one first: it yields one
        creating delta that carries every attribute and ``replaces`` the old id (one change
        on every node); the old view then ends without a delta of its own. If the new one
        cannot be committed, aborting both leaves the old session as it was.
        """
        view._usable()
        if len(self._states) >= self.max_active_sessions:
            raise TooManySessions(
                f"{len(self._states)} sessions are live, the limit (max_active_sessions) is "
                f"{self.max_active_sessions}"
            )
        start = view._start
        random_part = self._unused_random_part()
        # an empty start: every attribute is this request's "change", so the creating delta
        # carries them all and a replica builds the whole session from it
        state = SessionState(
            make_session_id(random_part, self.route),
            start.created,
            start.last_accessed,
            view._max_inactive,
        )
        self._states[random_part] = state
        new = self._open_view(state, is_new=True)
        carried = {name: text for name, text in start.attributes.items()
                   if name not in view._working}  # fmt: skip
        working = {name: values.decode(text) for name, text in carried.items()}
        working.update(view._working)
        new._working = working
        new._texts = {**start.attributes, **view._texts}
        new._size = view._current_size()
        if view._source is not None:  # rotated twice: still a copy of the first session
            new._source, carried = view._source, {**_untouched(view), **carried}
        elif not view._is_new:
            new._source = start.random_part
        new._carried = carried
        # rotating a session this request created (or rotated already) replaces what that one
        # replaced: the id the cluster knows
        new._replaces = view._replaces if view._is_new else view.id
        view._invalidated = True
        view._rotated = True
        return new

    def commit(self, view: RequestSession, now: float) -> SessionDelta | None:
        """Apply what the request changed and return it as a delta (None: nothing to tell).

        Raises SessionTooLarge or values.AttributeValueError when a value changed in place
        broke a limit or a type rule; the store then keeps none of this request's changes.
        """
        self._finish(view)
        random_part = view._start.random_part
        current = self._states.get(random_part)
        if current is None:  # ended by another request meanwhile: rotated, invalidated, expired
            return self._commit_late(view, now)
        if view._source is not None and not view._invalidated:
            self._carry_over(view)
        now = _commit_time(current, now)
        try:
            delta = self._delta_of(view, current, now)
            new_state = self._checked_apply(current, delta, view)
        except Exception:
            self._undo(view, current)
            raise
        if view._invalidated:
            self._drop(current)
            if view._replaces is not None and not view._rotated:
                # rotated, then invalidated in the same request: the old id still has to end
                return SessionDelta(view._replaces, float(now), invalidated=True)
            # a rotated session's end travels in its successor's delta (``replaces``)
            return None if view._is_new or view._rotated else delta
        if new_state is None:  # read only: the access time is state, not a delta
            new_state = replace(current, last_accessed=now)
        self._states[random_part] = new_state
        self._note_successor(view._replaces, random_part)
        return delta

    def _commit_late(self, view: RequestSession, now: float) -> SessionDelta | None:
        """A view whose session ended before it committed. After a rotation its changes go to
        the successor (a delta to the new id: the write is kept, not dropped under a 200);
        when the successor is not held here (an external store forgot it after its request)
        they cannot be applied: SessionNotSaved (503, retried). After an invalidation or an
        expiry the session is gone and its changes with it, as in Tomcat."""
        sets, removes = view._changes()
        rp = view._start.random_part
        for _ in range(4):  # rotated again meanwhile: follow the chain a little
            if (successor := self._successors.get(rp)) is None:
                break
            rp = successor
        if rp == view._start.random_part or view._invalidated or not (sets or removes):
            return None
        current = self._states.get(rp)
        if current is None:
            raise SessionNotSaved(
                f"session {view.id} was rotated while this request ran and its successor is "
                "not held here: this request's session changes were not kept"
            )
        delta = SessionDelta(current.id, _commit_time(current, now), set_attributes=tuple(sets),
                             removed_attributes=tuple(removes))  # fmt: skip
        new_state = self._checked_apply(current, delta, view)
        assert new_state is not None
        self._states[rp] = new_state
        return delta

    def _note_successor(self, replaced: str | None, random_part: str) -> None:
        if replaced is None or (parts := split_session_id(replaced)) is None:
            return
        self._successors[parts[0]] = random_part
        self._successors.move_to_end(parts[0])
        while len(self._successors) > MAX_SUCCESSORS:
            self._successors.popitem(last=False)

    def abort(self, view: RequestSession) -> None:
        """End the view without keeping any of its changes (the handler failed)."""
        self._finish(view)
        current = self._states.get(view._start.random_part)
        if current is not None:
            self._undo(view, current)

    # -- housekeeping and replication -------------------------------------------------------
    def expire(self, now: float) -> list[str]:
        """Remove sessions idle past their limit (not those in use); return their ids.

        Sessions routed to another node (replicas) get `replica_grace` x their limit.
        """
        gone = [
            s for rp, s in self._states.items() if not self._open.get(rp) and self._expired(s, now)
        ]
        for state in gone:
            self._drop(state)
        self.expired_total += len(gone)
        return [s.id for s in gone]

    def apply(self, delta: SessionDelta) -> None:
        """Apply a delta made on another node (no limits: refusing would make replicas differ)."""
        parts = split_session_id(delta.session_id)
        assert parts is not None
        self._note_successor(delta.replaces, parts[0])
        if delta.replaces is not None and (old := self.get_state(delta.replaces)) is not None:
            self._drop(old)  # a rotation: the old id ends where the new one begins
        new_state = apply_delta(self._states.get(parts[0]), delta)
        if new_state is None:
            if parts[0] in self._states:
                self._drop(self._states[parts[0]])
        else:
            self._states[parts[0]] = new_state

    def install(self, state: SessionState) -> None:
        """Add or replace a whole session (state transfer from another node)."""
        self._states[state.random_part] = state

    def forget(self, random_part: str) -> bool:
        """Drop the local copy of a session no request has open (an external store keeps the
        session itself; see worker/backend.py). False, and nothing dropped, while one does."""
        if self._open.get(random_part):
            return False
        self._states.pop(random_part, None)
        return True

    # -- internals --------------------------------------------------------------------------
    def _unused_random_part(self) -> str:
        for _ in range(4):
            random_part = self._random_part()
            if random_part not in self._states and random_part not in self._retired:
                return random_part
        raise RuntimeError("the random source keeps returning session ids already used")

    def _open_view(self, state: SessionState, *, is_new: bool) -> RequestSession:
        self._open[state.random_part] = self._open.get(state.random_part, 0) + 1
        return RequestSession(self, state, is_new=is_new, max_session_bytes=self.max_session_bytes)

    def _finish(self, view: RequestSession) -> None:
        if view._owner is not self:
            raise ValueError("this session view belongs to another store")
        if view._finished:
            raise SessionClosedError(f"session {view.id}: request already ended")
        view._finished = True
        random_part = view._start.random_part
        count = self._open.get(random_part, 0) - 1
        if count > 0:
            self._open[random_part] = count
        else:
            self._open.pop(random_part, None)

    def _undo(self, view: RequestSession, current: SessionState) -> None:
        if view._is_new:  # the session only existed for this request: it never happened
            self._drop(current)

    def _carry_over(self, view: RequestSession) -> None:
        """A rotation's new view at commit: the attributes it copied untouched are taken from
        the replaced session as it is now (another request may have changed it since this one
        began), and attributes added there meanwhile come along too."""
        source = self._states.get(view._source) if view._source is not None else None
        if source is None:  # ended meanwhile: the copy made at rotation is all there is
            return
        untouched = _untouched(view)
        for name in untouched:
            if name not in source.attributes:
                view._working[name] = _ABSENT
                view._texts[name] = None
        for name, text in source.attributes.items():
            if name in untouched or name not in view._working:
                view._working[name] = values.decode(text)
                view._texts[name] = text
        size = 0
        for name, known in view._texts.items():
            if known is not None and view._working.get(name, _ABSENT) is not _ABSENT:
                size += len(name) + len(known)
        view._size = size

    def _expired(self, state: SessionState, now: float) -> bool:
        factor = 1.0 if state.route == self.route else self.replica_grace
        return state.idle_too_long(now, factor)

    def _drop(self, state: SessionState) -> None:
        random_part = state.random_part
        self._states.pop(random_part, None)
        self._retired[random_part] = None
        self._retired.move_to_end(random_part)
        while len(self._retired) > self._retired_capacity:
            self._retired.popitem(last=False)

    def _checked_apply(
        self, current: SessionState, delta: SessionDelta | None, view: RequestSession
    ) -> SessionState | None:
        if delta is None or delta.invalidated:
            return None
        new_state = apply_delta(current, delta)
        assert new_state is not None
        if delta.set_attributes and new_state.size > max(self.max_session_bytes, current.size):
            raise SessionTooLarge(
                f"session {view.id}: its values grew in place to {new_state.size} bytes, over "
                f"the limit of {self.max_session_bytes}; none of this request's session "
                "changes were kept"
            )
        return new_state

    def _delta_of(
        self, view: RequestSession, current: SessionState, now: float
    ) -> SessionDelta | None:
        if view._invalidated:
            return SessionDelta(current.id, float(now), invalidated=True)
        sets, removes = view._changes()
        created = view._start.created if view._is_new else None
        # measured against the request's start, so a concurrent change is not undone
        max_inactive: float | None = view._max_inactive
        if created is None and max_inactive == view._start.max_inactive:
            max_inactive = None
        new_id = view.id if view.id != current.id else None
        if not (sets or removes or created is not None or max_inactive is not None or new_id):
            return None
        return SessionDelta(
            session_id=current.id,
            at=float(now),
            created=created,
            max_inactive=max_inactive,
            new_id=new_id,
            set_attributes=tuple(sets),
            removed_attributes=tuple(removes),
            replaces=view._replaces,
        )


def _commit_time(current: SessionState, now: float) -> float:
    """The last access a commit gives the session: `now`, but always past the one it had.
    Each commit moves it strictly forward even while this node's clock is behind the stored
    value (a takeover from a node whose clock ran ahead): distributed mode orders two puts of
    one session by it (session_entry.merge_entries), and a tie would let arrival order, not
    commit order, pick the state. One ulp is enough: times travel as JSON floats (repr, exact)."""
    return max(float(now), math.nextafter(current.last_accessed, math.inf))


def _untouched(view: RequestSession) -> dict[str, str]:
    """The attributes a rotation's new view copied that this request has not changed since."""
    out = {}
    for name, text in view._carried.items():
        value = view._working.get(name, _ABSENT)
        if value is not _ABSENT and values.encode(name, value) == text:
            out[name] = text
    return out
