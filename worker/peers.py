"""Requests naming a session this node may lack: refuse, or ask the cluster, never re-create.

A clustered node can lack a session another member holds: while its state transfer or a
resync runs, or for the moment a delta is still on its way (async mode, or a member the writer
stopped waiting for). Answering such a request with a new session loses the client's data, so
the session middleware asks `SessionManager.peers` (set by replication; None when standalone):

1. `holding_back()` returns a Hold while this node's copy of the cluster's sessions is known
   to be incomplete (/-/ready says 503 for the same reason), or None. Requests that would get
   sessions (paths outside `/-/` and the internal ones) are then answered 503 with
   `Retry-After: 1`; the balancer retries a 503 on another member (fail_on_status=503) and its
   health check takes the node out meanwhile.
   - `Hold(reason, own_sessions=False)` (a state transfer: this node has never been complete):
     every such request, with a session id or without, held here or not.
   - `Hold(reason, own_sessions=True)` (a resync with one member: the rest is complete): only
     requests naming a session not held here, or held but routed to another node (a takeover,
     whose copy here may miss that node's last writes). A session routed to this node was
     last written here, so it is served, and so are requests without a session id.
2. Otherwise, when none of the request's well-formed session ids is held here, `find()` asks
   the live members for them (bounded in time) and merges what they answer:
   - FOUND: a member had it; it is in the store now and the request takes it over;
   - ABSENT: no live member holds it (unknown, expired or invalidated everywhere): the
     request has no session, as on a standalone node;
   - UNKNOWN: some member did not answer in time and none had it: 503 `Retry-After: 1`, since
     the session may well exist.
3. When a held session is about to be taken over (its route names another node), `refresh()`
   first asks the live members for a newer version and merges it: a node that died while
   broadcasting its last write may have reached only some survivors (and one of them may have
   answered the client's retry of that write from its ledger). FOUND: every live member
   answered; UNKNOWN: one did not in time — 503 `Retry-After: 1`, as for a lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from .session_ids import split_session_id
from .sessions import SessionStore

Lookup = Literal["found", "absent", "unknown"]
FOUND: Lookup = "found"
ABSENT: Lookup = "absent"
UNKNOWN: Lookup = "unknown"

# A request may carry several ids (duplicate cookies, a path parameter); more than this many
# unknown ones are not worth a cluster round trip each.
MAX_LOOKUP_IDS = 4
RETRY_AFTER = "1"


@dataclass(frozen=True, slots=True)
class Hold:
    """Why this node's sessions are incomplete now, and whether it still serves its own."""

    reason: str  # as /-/ready's waiting_for says it, e.g. "state-transfer"
    own_sessions: bool = False  # serve sessions routed here, and requests without a session id


class SessionPeers(Protocol):
    """Replication's answers about sessions this node may lack (see the module docstring)."""

    def holding_back(self) -> Hold | None: ...

    async def find(self, random_parts: Sequence[str]) -> Lookup: ...

    async def refresh(self, random_parts: Sequence[str]) -> Lookup: ...


def missing(requested: Iterable[str], store: SessionStore) -> tuple[str, ...]:
    """Random parts of the well-formed ids in `requested` that `store` does not hold, in order,
    without repeats, at most MAX_LOOKUP_IDS (malformed ids are never ours: not worth asking)."""
    found: list[str] = []
    for session_id in requested:
        parts = split_session_id(session_id)
        if parts is None or parts[0] in found or store.get_state(session_id) is not None:
            continue
        found.append(parts[0])
        if len(found) == MAX_LOOKUP_IDS:
            break
    return tuple(found)


def taken_over(requested: Iterable[str], store: SessionStore) -> tuple[str, ...]:
    """Random parts of the requested sessions held here but routed to another node (a takeover
    is coming), in order, without repeats, at most MAX_LOOKUP_IDS."""
    found: list[str] = []
    for session_id in requested:
        parts = split_session_id(session_id)
        if parts is None or parts[0] in found:
            continue
        state = store.get_state(session_id)
        if state is not None and state.route != store.route:
            found.append(parts[0])
            if len(found) == MAX_LOOKUP_IDS:
                break
    return tuple(found)


def own_or_none(requested: Iterable[str], store: SessionStore) -> bool:
    """True when the request names no session (no well-formed id), or the first one held here
    (the one the request would get) is routed to this node."""
    named = False
    for session_id in requested:
        if split_session_id(session_id) is None:
            continue
        named = True
        state = store.get_state(session_id)
        if state is not None:
            return state.route == store.route
    return not named


def unavailable(why: str) -> web.Response:
    """The 503 a request gets instead of a session this node cannot vouch for."""
    return web.Response(
        status=503,
        text=f"This server cannot serve sessions right now ({why}). Please retry.\n",
        headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"},
    )
