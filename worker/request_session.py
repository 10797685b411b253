"""A request's view of one session: a mapping of attribute name to JSON-safe value.

Reading an attribute decodes the stored JSON text into the request's own working copy, so a
value changed in place (appending to a list held in the session) is seen when the store
commits the view: it re-encodes what the request touched and compares it with the text the
request started from. Apps never need Tomcat's "call setAttribute again" rule
(tomcat-cluster.md §3.2, §9.4). The view never writes to the store itself; the store reads
the underscore fields below when it commits or aborts (sessions.py).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from . import values
from .delta import SessionState
from .session_ids import check_route, make_session_id, split_session_id

_ABSENT: Any = object()


class SessionError(Exception):
    """Base of the session errors below."""


class TooManySessions(SessionError):
    """Creating a session would pass max_active_sessions (the middleware answers 503)."""


class SessionTooLarge(SessionError, ValueError):
    """A session's attributes would pass max_session_bytes."""


class SessionInvalidatedError(SessionError, RuntimeError):
    """The session was invalidated in this request; it cannot be used any more."""


class SessionClosedError(SessionError, RuntimeError):
    """The request this session view belonged to has ended (committed or aborted)."""


class RequestSession(MutableMapping[str, Any]):
    """One request's view of one session: `session["cart"]`, `.id`, `.invalidate()`, ...

    Values returned by reads are this request's own copies; mutate them freely, the change is
    recorded at commit. Not shared between requests and not usable after the request ends.
    """

    def __init__(
        self, owner: object, state: SessionState, *, is_new: bool, max_session_bytes: int
    ) -> None:
        self._owner = owner  # the store that opened this view
        self._max_bytes = max_session_bytes
        self._start = state  # the snapshot every change is measured against
        self._id = state.id
        self._is_new = is_new
        self._max_inactive = state.max_inactive
        self._working: dict[str, Any] = {}  # name -> value or _ABSENT, for touched names
        self._texts: dict[str, str | None] = {}  # last known encoding, for set-time size checks
        self._size: int | None = None
        self._invalidated = False
        self._finished = False
        self._replaces: str | None = None  # a rotation's new view: the id it replaces
        self._rotated = False  # a rotation's old view: ended without a delta of its own
        # A rotation's new view: the random part of the session it copies, and the attributes
        # it copied without this request touching them (name -> text then). At commit they are
        # taken again from that session's current state, so a write another request made to
        # the old id meanwhile (and had acknowledged) is carried over, not dropped.
        self._source: str | None = None
        self._carried: dict[str, str] = {}

    # -- identity and metadata -------------------------------------------------------------
    @property
    def id(self) -> str:
        """The full session id (`<random>.<route>`), including any route change made here."""
        return self._id

    @property
    def route(self) -> str | None:
        parts = split_session_id(self._id)
        return None if parts is None else parts[1]

    @property
    def is_new(self) -> bool:
        """True in the request that created the session (the client has not joined it yet)."""
        return self._is_new

    @property
    def created(self) -> float:
        return self._start.created

    @property
    def last_accessed(self) -> float:
        """When the session was last used before this request (Unix seconds)."""
        return self._start.last_accessed

    @property
    def max_inactive_interval(self) -> float:
        return self._max_inactive

    @max_inactive_interval.setter
    def max_inactive_interval(self, seconds: float) -> None:
        self._usable()
        if type(seconds) not in (int, float) or seconds != seconds or abs(seconds) == float("inf"):
            raise TypeError(f"max_inactive_interval: expected finite seconds, found {seconds!r}")
        self._max_inactive = float(seconds)

    @property
    def invalidated(self) -> bool:
        return self._invalidated

    @property
    def ended(self) -> bool:
        """True once the store committed or aborted this view (its request is over)."""
        return self._finished

    def invalidate(self) -> None:
        """End the session. Later use of this view raises SessionInvalidatedError."""
        self._usable()
        self._invalidated = True

    def change_route(self, route: str) -> None:
        """Rename the session to `<same random part>.<route>` (failover takeover)."""
        self._usable()
        parts = split_session_id(self._id)
        assert parts is not None
        self._id = make_session_id(parts[0], check_route(route))

    # -- the mapping ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        self._usable()
        value = self._working.get(name, _ABSENT)
        if value is _ABSENT and name not in self._working:
            text = self._start.attributes.get(name)
            value = _ABSENT if text is None else values.decode(text)
            self._working[name] = value
            self._texts[name] = text
        if value is _ABSENT:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self._usable()
        text = values.encode(values.check_name(name), value)
        old = self._known_text(name)
        size = self._current_size() - _weight(name, old) + _weight(name, text)
        limit = self._max_bytes
        if size > limit and size > self._current_size():
            raise SessionTooLarge(
                f"session {self._id}: setting {name!r} ({len(text)} bytes of JSON) would make "
                f"the session {size} bytes, over the limit of {limit}"
            )
        self._working[name] = value
        self._texts[name] = text
        self._size = size

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._size = self._current_size() - _weight(name, self._known_text(name))
        self._working[name] = _ABSENT
        self._texts[name] = None

    def __contains__(self, name: object) -> bool:
        self._usable()
        if name in self._working:
            return self._working[name] is not _ABSENT
        return name in self._start.attributes

    def __iter__(self) -> Iterator[str]:
        self._usable()
        names = [n for n in self._start.attributes if self._working.get(n, None) is not _ABSENT]
        names += [n for n, v in self._working.items() if v is not _ABSENT and n not in names]
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        # Always true, even when empty: `if session:` after get_session(create=False) must
        # mean "there is a session", not "it has attributes". Use len() for emptiness.
        return True

    def __repr__(self) -> str:
        return f"<RequestSession {self._id} new={self._is_new} invalidated={self._invalidated}>"

    # -- internals --------------------------------------------------------------------------
    def _usable(self) -> None:
        if self._finished:
            raise SessionClosedError(
                f"session {self._id}: used after its request ended (keep session work inside "
                "the handler)"
            )
        if self._invalidated:
            raise SessionInvalidatedError(f"session {self._id} was invalidated")

    def _known_text(self, name: str) -> str | None:
        if name in self._texts:
            return self._texts[name]
        return self._start.attributes.get(name)

    def _current_size(self) -> int:
        if self._size is None:
            self._size = self._start.size
        return self._size

    def _changes(self) -> tuple[list[tuple[str, str]], list[str]]:
        """(sets, removes) of this request, re-encoding every touched value (in-place edits)."""
        sets: list[tuple[str, str]] = []
        removes: list[str] = []
        for name, value in self._working.items():
            before = self._start.attributes.get(name)
            if value is _ABSENT:
                if before is not None:
                    removes.append(name)
                continue
            text = values.encode(name, value)
            if text != before:
                sets.append((name, text))
        return sets, removes


def _weight(name: str, text: str | None) -> int:
    return 0 if text is None else len(name) + len(text)
