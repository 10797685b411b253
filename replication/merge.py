"""How replicas of one session agree: stamps, per-attribute last-writer-wins, and merge. Pure.

Tomcat keeps no versions: two nodes writing one attribute at once end up with each other's
value for good (tomcat-cluster.md §3.7, §10 #10). Here every write is stamped with a Lamport
stamp `(counter, member id)`, a total order every node computes the same way, and the session's
`SessionMeta` remembers, per attribute, the stamp of the write that decided it (a set, or a
removal tombstone), plus the stamps that decided the session's id (route) and idle timeout.

- A remote delta changes only what its stamp wins (`filter_remote`).
- Two whole replicas combine with `merge`, a join: commutative, associative and idempotent, so
  state transfer, anti-entropy and deltas may arrive in any order, any number of times, and
  every node ends with the same session. Creation time takes the minimum, last access the
  maximum (it only ever moves forward).
- A delta whose writer had not seen everything this replica has (`base` older than the
  replica's version) was concurrent with something: it is still merged by the rules above and
  the caller counts it.

A stamp decides one write, so equal stamps mean equal values; ties on anything else (only
possible for replicas built without meta) break on the value itself, keeping merge symmetric.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from worker.delta import SessionDelta, SessionState

Stamp = tuple[int, str]
ZERO: Stamp = (0, "")
# Removal tombstones kept per session (newest win); beyond this a very old removal could be
# undone by a very stale replica, which bounded memory is worth.
MAX_TOMBSTONES = 256


@dataclass(frozen=True, slots=True)
class SessionMeta:
    attrs: Mapping[str, Stamp] = field(default_factory=dict)
    removed: Mapping[str, Stamp] = field(default_factory=dict)
    id_stamp: Stamp = ZERO
    max_inactive_stamp: Stamp = ZERO
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        text = repr(
            (
                self.id_stamp,
                self.max_inactive_stamp,
                sorted(self.attrs.items()),
                sorted(self.removed.items()),
            )
        )
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        object.__setattr__(self, "fingerprint", digest)

    @property
    def version(self) -> Stamp:
        """The newest stamp in the session."""
        return max(
            (self.id_stamp, self.max_inactive_stamp, *self.attrs.values(), *self.removed.values())
        )

    def stamp_of(self, name: str) -> Stamp:
        return self.attrs.get(name) or self.removed.get(name) or ZERO

    @classmethod
    def fresh(cls, state: SessionState, stamp: Stamp) -> SessionMeta:
        """Every part of `state` decided by one write (a creation)."""
        return cls({n: stamp for n in state.attributes}, {}, stamp, stamp)


class Replica(NamedTuple):
    state: SessionState
    meta: SessionMeta


def _trim(removed: dict[str, Stamp]) -> dict[str, Stamp]:
    if len(removed) <= MAX_TOMBSTONES:
        return removed
    newest = sorted(removed.items(), key=lambda item: item[1])[-MAX_TOMBSTONES:]
    return dict(newest)


def stamp_local(meta: SessionMeta | None, delta: SessionDelta, stamp: Stamp) -> SessionMeta:
    """The meta after this node's own write `delta` (already in its store) got `stamp`."""
    if meta is None or delta.created is not None:
        meta = SessionMeta(id_stamp=stamp, max_inactive_stamp=stamp)
    attrs, removed = dict(meta.attrs), dict(meta.removed)
    for name, _ in delta.set_attributes:
        attrs[name] = stamp
        removed.pop(name, None)
    for name in delta.removed_attributes:
        attrs.pop(name, None)
        removed[name] = stamp
    return SessionMeta(
        attrs,
        _trim(removed),
        stamp if delta.new_id is not None else meta.id_stamp,
        stamp if delta.max_inactive is not None else meta.max_inactive_stamp,
    )


def filter_remote(
    meta: SessionMeta, delta: SessionDelta, stamp: Stamp
) -> tuple[SessionDelta, SessionMeta, int]:
    """What of a remote write wins here: (delta to apply, new meta, number of parts it lost).

    The returned delta always carries `at`, so the access time moves forward even when every
    change lost. It never creates (the session exists here; a repeated creation is a no-op).
    """
    attrs, removed = dict(meta.attrs), dict(meta.removed)
    sets = []
    for name, text in delta.set_attributes:
        if stamp > meta.stamp_of(name):
            sets.append((name, text))
            attrs[name] = stamp
            removed.pop(name, None)
    removes = []
    for name in delta.removed_attributes:
        if stamp > meta.stamp_of(name):
            removes.append(name)
            attrs.pop(name, None)
            removed[name] = stamp
    new_id = delta.new_id if delta.new_id is not None and stamp > meta.id_stamp else None
    max_inactive = delta.max_inactive
    if max_inactive is not None and not stamp > meta.max_inactive_stamp:
        max_inactive = None
    offered = len(delta.set_attributes) + len(delta.removed_attributes)
    offered += (delta.new_id is not None) + (delta.max_inactive is not None and not delta.created)
    kept = len(sets) + len(removes) + (new_id is not None)
    kept += max_inactive is not None and not delta.created
    filtered = SessionDelta(
        delta.session_id, delta.at, max_inactive=max_inactive, new_id=new_id,
        set_attributes=tuple(sets), removed_attributes=tuple(removes),
    )  # fmt: skip
    new_meta = SessionMeta(
        attrs,
        _trim(removed),
        stamp if new_id is not None else meta.id_stamp,
        stamp if max_inactive is not None else meta.max_inactive_stamp,
    )
    return filtered, new_meta, offered - kept


def _attr_key(replica: Replica, name: str) -> tuple[Stamp, int, str]:
    text = replica.state.attributes.get(name)
    if text is not None:
        return (replica.meta.attrs.get(name, ZERO), 1, text)
    return (replica.meta.removed.get(name, ZERO), 0, "")


def merge(local: Replica | None, remote: Replica) -> Replica:
    """The join of two replicas of one session (see the module docstring for the rules)."""
    if local is None:
        return remote
    a, b = local, remote
    names = {*a.state.attributes, *a.meta.removed, *b.state.attributes, *b.meta.removed}
    attributes: dict[str, str] = {}
    attrs: dict[str, Stamp] = {}
    removed: dict[str, Stamp] = {}
    for name in sorted(names):
        stamp, is_set, text = max(_attr_key(a, name), _attr_key(b, name))
        if is_set:
            attributes[name], attrs[name] = text, stamp
        else:
            removed[name] = stamp
    id_stamp, session_id = max((a.meta.id_stamp, a.state.id), (b.meta.id_stamp, b.state.id))
    mi_stamp, max_inactive = max(
        (a.meta.max_inactive_stamp, a.state.max_inactive),
        (b.meta.max_inactive_stamp, b.state.max_inactive),
    )
    state = SessionState(
        id=session_id,
        created=min(a.state.created, b.state.created),
        last_accessed=max(a.state.last_accessed, b.state.last_accessed),
        max_inactive=max_inactive,
        attributes=attributes,
    )
    return Replica(state, SessionMeta(attrs, _trim(removed), id_stamp, mi_stamp))
