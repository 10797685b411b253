"""What a session is (SessionState), what a request changed (SessionDelta), and the one pure
function that applies a change (apply_delta) — on the node that made it and on every replica.

Both have a stable, JSON-able wire form (`to_wire()` / `from_wire()`): plain dicts of str,
numbers, bools, lists and dicts, validated strictly on the way in. Nothing is ever pickled
(tomcat-cluster.md §6.2, §11).

Times are Unix seconds (wall clock), because sessions move between processes and machines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import values
from .session_ids import random_part_of, split_session_id

WIRE_VERSION = 1


class WireFormatError(ValueError):
    """A wire dict that does not follow the schema; names the field and what was wrong."""

    def __init__(self, what: str, field_name: str, problem: str) -> None:
        self.field = field_name
        super().__init__(f"{what}: field {field_name!r}: {problem}")


class UnknownSessionError(LookupError):
    """A delta for a session this node does not hold (and the delta does not create it)."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """One session as the store holds it. Never mutated: a change produces a new state.

    `attributes` maps each name to its canonical JSON text (see values.py); treat it as
    read-only. `max_inactive` <= 0 means the session never expires (Tomcat: negative = never;
    the servlet spec says zero or less).
    """

    id: str
    created: float
    last_accessed: float
    max_inactive: float
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def random_part(self) -> str:
        return random_part_of(self.id)

    @property
    def route(self) -> str | None:
        parts = split_session_id(self.id)
        return None if parts is None else parts[1]

    @property
    def size(self) -> int:
        """Serialized size counted against the per-session limit: names plus JSON texts."""
        return sum(len(name) + len(text) for name, text in self.attributes.items())

    def idle_too_long(self, now: float, factor: float = 1.0) -> bool:
        """True when unused for more than `factor` x max_inactive (never when max_inactive <= 0)."""
        return self.max_inactive > 0 and now - self.last_accessed > self.max_inactive * factor

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": WIRE_VERSION,
            "id": self.id,
            "created": self.created,
            "last_accessed": self.last_accessed,
            "max_inactive": self.max_inactive,
            "attributes": {k: values.decode(t) for k, t in self.attributes.items()},
        }

    @classmethod
    def from_wire(cls, wire: object) -> SessionState:
        what = "session state"
        w = _Fields(
            what,
            wire,
            required={"v", "id", "created", "last_accessed", "max_inactive", "attributes"},
        )
        w.version()
        return cls(
            id=w.session_id("id"),
            created=w.number("created"),
            last_accessed=w.number("last_accessed"),
            max_inactive=w.number("max_inactive"),
            attributes=w.attribute_texts("attributes"),
        )


@dataclass(frozen=True, slots=True)
class SessionDelta:
    """Everything one request changed in one session, coalesced (last value per attribute).

    - `session_id`: the id the session had when the change was made (before any rename).
    - `at`: when the change was committed; replicas take it as the session's last access.
    - `created`: the creation time, when this request created the session. A creating delta
      always carries `max_inactive` too, so a replica can build the session from nothing.
    - `new_id`: the session's new id after a route change (same random part, new route).
    - `set_attributes`: (name, canonical JSON text) pairs; `removed_attributes`: names.
    - `invalidated`: the session is gone; nothing else in the delta matters.
    - `replaces`: on a creating delta, the id of the session this one replaces (session id
      rotation, Tomcat's changeSessionId): applying the delta ends that session and creates
      this one with the same data, as one change on every node.
    """

    session_id: str
    at: float
    created: float | None = None
    max_inactive: float | None = None
    new_id: str | None = None
    set_attributes: tuple[tuple[str, str], ...] = ()
    removed_attributes: tuple[str, ...] = ()
    invalidated: bool = False
    replaces: str | None = None

    def __post_init__(self) -> None:
        random_part = random_part_of(self.session_id)
        if self.replaces is not None and (
            self.created is None or random_part_of(self.replaces) == random_part
        ):
            raise ValueError(
                "session delta: only a creating delta may replace a session, and only another "
                "one (a rotation gives a new random part)"
            )
        if self.new_id is not None and random_part_of(self.new_id) != random_part:
            raise ValueError(
                f"session delta: new_id {self.new_id!r} must keep the random part of "
                f"{self.session_id!r} (a route change is a rename, not a new session)"
            )
        if self.created is not None and self.max_inactive is None:
            raise ValueError("session delta: a creating delta must carry max_inactive")
        names = [name for name, _ in self.set_attributes]
        if len(set(names)) != len(names) or set(names) & set(self.removed_attributes):
            raise ValueError("session delta: each attribute may be set or removed only once")

    @property
    def set_values(self) -> dict[str, Any]:
        """The set attributes decoded into fresh values."""
        return {name: values.decode(text) for name, text in self.set_attributes}

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"v": WIRE_VERSION, "id": self.session_id, "at": self.at}
        if self.created is not None:
            wire["created"] = self.created
        if self.max_inactive is not None:
            wire["max_inactive"] = self.max_inactive
        if self.new_id is not None:
            wire["new_id"] = self.new_id
        if self.set_attributes:
            wire["set"] = self.set_values
        if self.removed_attributes:
            wire["remove"] = list(self.removed_attributes)
        if self.invalidated:
            wire["invalidate"] = True
        if self.replaces is not None:
            wire["replaces"] = self.replaces
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> SessionDelta:
        w = _Fields(
            "session delta",
            wire,
            required={"v", "id", "at"},
            optional={
                "created",
                "max_inactive",
                "new_id",
                "set",
                "remove",
                "invalidate",
                "replaces",
            },
        )
        w.version()
        texts = w.attribute_texts("set") if "set" in w.data else {}
        try:
            return cls(
                session_id=w.session_id("id"),
                at=w.number("at"),
                created=w.number("created") if "created" in w.data else None,
                max_inactive=w.number("max_inactive") if "max_inactive" in w.data else None,
                new_id=w.session_id("new_id") if "new_id" in w.data else None,
                set_attributes=tuple(texts.items()),
                removed_attributes=w.names("remove") if "remove" in w.data else (),
                invalidated=w.true("invalidate") if "invalidate" in w.data else False,
                replaces=w.session_id("replaces") if "replaces" in w.data else None,
            )
        except ValueError as exc:
            if isinstance(exc, WireFormatError):
                raise
            raise WireFormatError("session delta", "*", str(exc)) from exc


def apply_delta(state: SessionState | None, delta: SessionDelta) -> SessionState | None:
    """The session after `delta`: None when it was invalidated.

    `state` is the session before the change (None if this node does not hold it; then the
    delta must create it, else UnknownSessionError). Pure: neither argument is modified.
    """
    if delta.invalidated:
        return None
    if state is None:
        if delta.created is None:
            raise UnknownSessionError(
                f"session delta for {delta.session_id!r}: no such session here and the "
                "delta does not create it"
            )
        assert delta.max_inactive is not None  # guaranteed by SessionDelta.__post_init__
        state = SessionState(delta.session_id, delta.created, delta.created, delta.max_inactive)
    elif state.random_part != random_part_of(delta.session_id):
        raise ValueError(f"session delta for {delta.session_id!r} applied to {state.id!r}")
    attributes = dict(state.attributes)
    attributes.update(delta.set_attributes)
    for name in delta.removed_attributes:
        attributes.pop(name, None)
    return SessionState(
        id=delta.new_id if delta.new_id is not None else state.id,
        created=state.created,
        # max(): a late delta never moves the last access back in time
        last_accessed=max(state.last_accessed, delta.at),
        max_inactive=delta.max_inactive if delta.max_inactive is not None else state.max_inactive,
        attributes=attributes,
    )


class _Fields:
    """Strict reader of one wire dict: exact key set, exact types, messages naming the field."""

    def __init__(
        self,
        what: str,
        wire: object,
        *,
        required: set[str],
        optional: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.what = what
        if type(wire) is not dict:
            raise WireFormatError(what, "*", f"expected a dict, found {type(wire).__name__}")
        missing = required - wire.keys()
        unknown = wire.keys() - required - optional
        if missing:
            raise WireFormatError(what, sorted(missing)[0], "missing")
        if unknown:
            raise WireFormatError(what, str(sorted(map(str, unknown))[0]), "unknown field")
        self.data: dict[Any, Any] = wire

    def fail(self, name: str, problem: str) -> WireFormatError:
        return WireFormatError(self.what, name, problem)

    def version(self) -> None:
        v = self.data["v"]
        if type(v) is not int or v != WIRE_VERSION:
            raise self.fail("v", f"expected {WIRE_VERSION}, found {v!r}")

    def number(self, name: str) -> float:
        v = self.data[name]
        if type(v) not in (int, float) or not math.isfinite(v):
            raise self.fail(name, f"expected a finite number, found {v!r}")
        return float(v)

    def session_id(self, name: str) -> str:
        v = self.data[name]
        if type(v) is not str or (parts := split_session_id(v)) is None or parts[1] is None:
            raise self.fail(name, f"expected a session id '<32 hex>.<route>', found {v!r}")
        return v

    def true(self, name: str) -> bool:
        if self.data[name] is not True:
            raise self.fail(name, f"expected true when present, found {self.data[name]!r}")
        return True

    def names(self, name: str) -> tuple[str, ...]:
        v = self.data[name]
        if type(v) is not list or not all(type(n) is str and n for n in v):
            raise self.fail(name, "expected a list of non-empty attribute names")
        if len(set(v)) != len(v):
            raise self.fail(name, "names must not repeat")
        return tuple(v)

    def attribute_texts(self, name: str) -> dict[str, str]:
        v = self.data[name]
        if type(v) is not dict:
            raise self.fail(name, f"expected a dict of attributes, found {type(v).__name__}")
        texts = {}
        for key, value in v.items():
            if type(key) is not str or not key:
                raise self.fail(name, f"attribute name {key!r} is not a non-empty str")
            try:
                texts[key] = values.encode(key, value)
            except TypeError as exc:
                raise self.fail(name, str(exc)) from exc
        return texts
