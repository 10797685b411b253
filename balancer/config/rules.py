"""``RuleExtensions``: a uriworkermap rule's per-request overrides (mod_jk §4.5).

Part of the configuration model (``balancer.config.model`` re-exports it); a module of its own
because it is compiled (setup.py, rules.pxd): the lb engine reads some ten of its fields on
every request (session lookup, choice, Forward, response head), and as an extension type with
C fields each read is a C load where a frozen dataclass's field is a generic attribute lookup
(~140 instructions; docs/benchmarks.md, issue 12, session 5).

A value: compare it, never change it. Compiled, its fields are read-only; the source, which
the unit tests run with ``PYJK_PURE=1``, refuses assignment the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from balancer.config.model import Activation

# the fields, in the order of the constructor's arguments (a unit test holds the rule-extension
# table, balancer/mounts/extensions.py, to them)
FIELDS = (
    "reply_timeout",
    "sticky_ignore",
    "stateless",
    "activation",
    "fail_on_status",
    "use_server_errors",
    "session_cookie",
    "session_path",
    "set_session_cookie",
    "session_cookie_path",
)


class RuleExtensions:
    """Per-rule overrides from uriworkermap (mod_jk §4.5). ``None`` = use the worker's."""

    __slots__ = FIELDS

    def __init__(
        self,
        reply_timeout: int | None = None,  # ms
        sticky_ignore: bool = False,
        stateless: bool = False,
        activation: Mapping[str, Activation] | None = None,  # member name -> act; None: {}
        fail_on_status: tuple[int, ...] | None = None,
        use_server_errors: int | None = None,  # replace backend bodies for status >= N
        session_cookie: str | None = None,
        session_path: str | None = None,
        set_session_cookie: bool | None = None,
        session_cookie_path: str | None = None,
    ) -> None:
        # compiled, C stores into the C fields; in the source, each goes through
        # ``__setattr__``, which takes a field only while it is unset
        self.reply_timeout = reply_timeout
        self.sticky_ignore = sticky_ignore
        self.stateless = stateless
        self.activation: Mapping[str, Activation] = {} if activation is None else activation
        self.fail_on_status = fail_on_status
        self.use_server_errors = use_server_errors
        self.session_cookie = session_cookie
        self.session_path = session_path
        self.set_session_cookie = set_session_cookie
        self.session_cookie_path = session_cookie_path

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"RuleExtensions({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not RuleExtensions:
            return NotImplemented
        return self._values() == other._values()

    # as the frozen dataclass it was: equal rules compare by fields; the activation mapping
    # makes a hash impossible anyway
    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: object) -> None:
        # a field is set once, by __init__ (compiled, its stores are C stores that never come
        # here, and every field always has a value)
        if hasattr(self, name):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (RuleExtensions, self._values())
