"""Rule extensions (mod_jk §4.5): ``pattern=worker;ext=val;...``. One table, from which the
parsing, the checks against the target worker and the reference page follow. Pure.

Value parsing reuses ``balancer.config.values`` where the grammar is the workers.properties one
(``fail_on_status``, cookie names, booleans, lists); numbers are read strictly (see ``_whole``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from balancer.config.directives import suggest
from balancer.config.model import Activation, Location, RuleExtensions
from balancer.config.values import (
    MAX_INT,
    BadValue,
    parse_bool,
    parse_status_list,
    parse_token,
    split_list,
)

__all__ = ["EXTENSIONS", "Extension", "Scope", "parse_extensions"]


class Scope(Enum):
    """Which targets an extension has an effect on; elsewhere it is refused or warned about."""

    NOT_STATUS = "lb and backend workers"
    LB = "lb workers"


@dataclass(frozen=True, slots=True)
class Extension:
    name: str
    field: str  # the RuleExtensions field it fills (active/disabled/stopped share "activation")
    parse: Callable[[str], object]
    value: str  # the value's form, as the reference page shows it
    default: str  # what applies without it, as the reference page shows it
    doc: str
    scope: Scope
    may_be_empty: bool = False


_INT = re.compile(r"-?[0-9]+")


def _whole(value: str) -> int:
    # Stricter than workers.properties' ints on purpose: mod_jk reads these with atoi, so
    # "5s" or "1k" would silently be 5 or 1 there; pyjk refuses any text around the digits.
    if not _INT.fullmatch(value):
        raise BadValue(f"expected a whole number, found {value!r}")
    number = int(value)
    if abs(number) > MAX_INT:  # a C int in mod_jk (and a C field of the Forward in pyjk)
        raise BadValue(f"{value} is too large (at most {MAX_INT})")
    return number


def _reply_timeout(value: str) -> int | None:
    number = _whole(value)
    if number == -1:
        return None  # mod_jk: -1 means "use the worker's reply_timeout"
    if number < 0:
        raise BadValue(f"expected milliseconds >= 0 (or -1 for the worker's), found {number}")
    return number


def _flag(value: str) -> bool:
    return _whole(value) != 0  # mod_jk reads these as integers: non-zero is on


def _members(value: str) -> tuple[str, ...]:
    names = tuple(split_list(value))
    if not names:
        raise BadValue("expected a list of lb member names")
    return names


def _statuses(value: str) -> tuple[int, ...]:
    codes = parse_status_list(value)  # the same list as the worker's fail_on_status
    if not codes:
        raise BadValue("expected a list of HTTP status codes")
    return codes


def _use_server_errors(value: str) -> int | None:
    number = _whole(value)
    if number == 0:
        return None
    if not 100 <= number <= 599:
        raise BadValue(f"expected a status code 100-599 (0 = off), found {number}")
    return number


def _session_path(value: str) -> str:
    # Stored with its leading ";" like the lb's session_path, so the session search looks for
    # ";name=" exactly; mod_jk would also accept "name=" anywhere in the URI.
    return ";" + parse_token(value.removeprefix(";"))


def _cookie_path(value: str) -> str:
    if value and not value.startswith("/"):
        raise BadValue(f"expected a path starting with '/' (or empty for none), found {value!r}")
    if any(ord(c) < 0x20 or c in ",\x7f" for c in value):
        raise BadValue("a cookie path cannot hold control characters or ','")
    return value


_ACTIVATION_DOC = (
    "Overrides the activation of the named members of the target lb for this rule's requests "
    "(`disabled`: sticky requests only; `stopped`: none). The target must be an lb and each "
    "name one of its members, else an error (mod_jk: a warning)."
)

_TABLE = (
    Extension(
        "reply_timeout",
        "reply_timeout",
        _reply_timeout,
        "ms, or -1",
        "`-1` (the members')",
        "The members' `reply_timeout` for this rule's requests (longest wait between two reads "
        "from the backend; 0 = forever); `-1` keeps the members' own.",
        Scope.NOT_STATUS,
    ),
    Extension(
        "sticky_ignore",
        "sticky_ignore",
        _flag,
        "int (0 = off)",
        "`0`",
        "Non-zero: the session id is not looked at; the request is balanced as if it had none.",
        Scope.LB,
    ),
    Extension(
        "stateless",
        "stateless",
        _flag,
        "int (0 = off)",
        "`0`",
        "Non-zero: the request is not counted as a new session by the `S` and `N` methods, and "
        "a request without a session goes to the members in turn, whatever their lb values.",
        Scope.LB,
    ),
    *(
        Extension(name, "activation", _members, "list of members", "(the member's)", doc, Scope.LB)
        for name, doc in (
            ("active", _ACTIVATION_DOC),
            ("disabled", "As `active`."),
            ("stopped", "As `active`."),
        )
    ),
    Extension(
        "fail_on_status",
        "fail_on_status",
        _statuses,
        "list of statuses",
        "(the members')",
        "Replaces the members' `fail_on_status` for this rule's requests: the same list (a "
        "listed status is retried elsewhere and puts the member in ERR; a leading `-` makes it "
        "soft: retried, the member stays OK).",
        Scope.NOT_STATUS,
    ),
    Extension(
        "use_server_errors",
        "use_server_errors",
        _use_server_errors,
        "status 100..599, 0 = off",
        "`0`",
        "A member's response with this status or higher is not relayed: the client gets pyjk's "
        "own error page for that status (mod_jk: the web server's).",
        Scope.NOT_STATUS,
    ),
    Extension(
        "session_cookie",
        "session_cookie",
        parse_token,
        "token",
        "(the lb's)",
        "The cookie the session id is read from for this rule, instead of the lb's "
        "`session_cookie`.",
        Scope.LB,
    ),
    Extension(
        "session_path",
        "session_path",
        _session_path,
        "token, `;` optional",
        "(the lb's)",
        "The path parameter the session id is read from, instead of the lb's `session_path`. "
        "`session_path=;name` works as in mod_jk (an empty value takes the next `;` item).",
        Scope.LB,
    ),
    Extension(
        "set_session_cookie",
        "set_session_cookie",
        parse_bool,
        "bool",
        "(the lb's)",
        "Turns on the routing cookie for this rule's responses (the lb's `set_session_cookie`). "
        "As in mod_jk the cookie keeps the lb's `session_cookie` name and "
        "`session_cookie_path`, even when this rule overrides them.",
        Scope.LB,
    ),
    Extension(
        "session_cookie_path",
        "session_cookie_path",
        _cookie_path,
        "path, or empty",
        "(the lb's)",
        "Read and checked as in mod_jk; as there, the routing cookie keeps the lb's path "
        "(see `set_session_cookie`).",
        Scope.LB,
        may_be_empty=True,
    ),
)
# name -> Extension, in the table's order (the order of the reference and of "known: ...").
EXTENSIONS: Mapping[str, Extension] = {ext.name: ext for ext in _TABLE}

_ACTIVATIONS = {
    "active": Activation.ACTIVE,
    "disabled": Activation.DISABLED,
    "stopped": Activation.STOPPED,
}

ErrorSink = Callable[[Location, str, str], None]


def parse_extensions(text: str, loc: Location, key: str, error: ErrorSink) -> RuleExtensions | None:
    """``ext=val;ext=val`` (the part of a rule after the worker) → RuleExtensions.

    Calls ``error(loc, key, message)`` for each problem and then returns None.
    """
    tokens = text.split(";")
    values: dict[str, object] = {}
    activation: dict[str, Activation] = {}
    seen: set[str] = set()
    failed = False
    i = 0
    while i < len(tokens):
        token = tokens[i].strip()
        i += 1
        if not token:
            continue
        name, eq, value = (part.strip() for part in token.partition("="))
        if name == "session_path" and eq and not value and i < len(tokens):
            # mod_jk quirk kept: "session_path=;jsessionid" takes the next token as the value.
            value = tokens[i].strip()
            i += 1
        ext = EXTENSIONS.get(name)
        problem = ""
        if ext is None:
            near = suggest(name, EXTENSIONS)
            hint = f"; did you mean {near!r}?" if near else f" (known: {', '.join(EXTENSIONS)})"
            problem = f"unknown rule extension {name!r}{hint}"
        elif not eq or (not value and not ext.may_be_empty):
            problem = f"rule extension {name} needs a value ({name}=...)"
        elif name in seen:
            problem = f"rule extension {name} is given twice"
        if ext is None or problem:
            error(loc, key, problem)
            failed = True
            continue
        seen.add(name)
        try:
            parsed = ext.parse(value)
        except ValueError as exc:
            error(loc, key, f"{name}: {exc}")
            failed = True
            continue
        if ext.field != "activation":
            values[ext.field] = parsed
            continue
        for member in parsed:  # type: ignore[attr-defined]
            if member in activation and activation[member] is not _ACTIVATIONS[name]:
                error(loc, key, f"member {member!r} is given two activations")
                failed = True
            activation[member] = _ACTIVATIONS[name]
    if failed:
        return None
    return RuleExtensions(activation=activation, **values)  # type: ignore[arg-type]
