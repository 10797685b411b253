"""The status worker's changes: ``update``, ``reset`` and ``recover`` (reference modjk.md §5.1).

Parameters are mod_jk's. lb: ``vlr`` retries, ``vlri`` retry_interval, ``vlt`` recover_time,
``vlee`` error_escalation_time, ``vlx`` max_reply_timeouts, ``vls``/``vlf`` sticky_session(_force),
``vlm`` method, ``vll`` lock. Member: ``vwa`` activation, ``vwf`` lbfactor, ``vwn`` route,
``vwr`` redirect, ``vwc`` domain, ``vwd`` distance, and of the endpoint settings the ones the
engine can change at runtime: ``var`` retries, ``vari`` retry_interval, ``varo``
recovery_options, ``vart`` reply_timeout, ``vabl`` busy_limit. ``sw`` may hold ``*``/``?``
wildcards for ``update``; ``att`` plus ``val0..valN`` sets one attribute per member (by index).
Codes as mod_jk reads them: activation ``a``/``d``/``s`` or 0-2, method ``r t b s n`` or 0-4,
lock ``o``/``p`` or 0/1 (only the first character counts), booleans on/off, true/false, 1/0.

Changes go through the engine's control API, which carries mod_jk's side effects (a new
activation resets the lb_values except for Busyness; a new lbfactor recomputes the
multipliers; a new route re-derives an empty domain). Unlike mod_jk, which silently skips a
value out of range, pyjk refuses the whole request with 400 and changes nothing: every value is
checked before the first one is applied. Unchanged values are skipped, as in mod_jk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from balancer.config.model import MAX_LBFACTOR, Activation, Lock, Method
from balancer.config.values import BadValue, parse_name
from balancer.lb.engine import LbEngine
from balancer.lb.errors import InvalidSetting, RecoverRefused
from balancer.lb.member import Member, State
from balancer.status.messages import (
    NO_SUB_WORKER,
    NO_SUB_WORKERS,
    NO_WILDCARD,
    RECOVER_FAILED,
    UNKNOWN_SUB_WORKER,
    Params,
    StatusError,
)

INT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Change:
    """One applied change, for the audit log. ``member`` None = the lb itself."""

    worker: str
    member: str | None
    attribute: str
    before: object
    after: object


def _int(minimum: int, maximum: int = INT_MAX) -> Callable[[str], object]:
    def parse(text: str) -> object:
        text = text.strip()
        if not re.fullmatch(r"-?[0-9]{1,10}", text):
            raise ValueError("an integer")
        value = int(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"an integer from {minimum} to {maximum}")
        return value

    return parse


def _bool(text: str) -> object:
    t = text.strip().lower()
    if t == "on" or t[:1] in ("t", "y", "1"):
        return True
    if t == "off" or t[:1] in ("f", "n", "0"):
        return False
    raise ValueError("on or off")


def _code(codes: Mapping[str, object], expected: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        found = codes.get(text.strip()[:1].lower())
        if found is None:
            raise ValueError(expected)
        return found

    return parse


def _name(optional: bool) -> Callable[[str], object]:
    def parse(text: str) -> object:
        text = text.strip()
        if optional and not text:
            return ""
        try:
            return parse_name(text)
        except BadValue:
            raise ValueError("1-63 characters from A-Z a-z 0-9 _ . -") from None

    return parse


_METHODS = {
    "r": Method.REQUEST,
    "t": Method.TRAFFIC,
    "b": Method.BUSYNESS,
    "s": Method.SESSIONS,
    "n": Method.NEXT,
}
_METHODS |= {str(i): m for i, m in enumerate(_METHODS.values())}
_LOCKS = {"o": Lock.OPTIMISTIC, "p": Lock.PESSIMISTIC, "0": Lock.OPTIMISTIC, "1": Lock.PESSIMISTIC}
_ACTIVATIONS = {
    "a": Activation.ACTIVE,
    "d": Activation.DISABLED,
    "s": Activation.STOPPED,
    "0": Activation.ACTIVE,
    "1": Activation.DISABLED,
    "2": Activation.STOPPED,
}

LB_PARAMS: dict[str, tuple[str, Callable[[str], object]]] = {
    "vlr": ("retries", _int(1)),
    "vlri": ("retry_interval", _int(0)),
    "vlt": ("recover_time", _int(1)),
    "vlee": ("error_escalation_time", _int(0)),
    "vlx": ("max_reply_timeouts", _int(0)),
    "vls": ("sticky_session", _bool),
    "vlf": ("sticky_session_force", _bool),
    "vlm": ("method", _code(_METHODS, "a method: Request, Traffic, Busyness, Sessions, Next")),
    "vll": ("lock", _code(_LOCKS, "a lock: Optimistic or Pessimistic")),
}
BALANCING_PARAMS: dict[str, tuple[str, Callable[[str], object]]] = {
    "vwa": ("activation", _code(_ACTIVATIONS, "an activation: Active, Disabled, Stopped")),
    "vwf": ("lbfactor", _int(1, MAX_LBFACTOR)),
    "vwn": ("route", _name(optional=False)),
    "vwr": ("redirect", _name(optional=True)),
    "vwc": ("domain", _name(optional=True)),
    "vwd": ("distance", _int(0)),
}
ENDPOINT_PARAMS: dict[str, tuple[str, Callable[[str], object]]] = {
    "var": ("retries", _int(1)),
    "vari": ("retry_interval", _int(0)),
    "varo": ("recovery_options", _int(0)),
    "vart": ("reply_timeout", _int(0)),
    "vabl": ("busy_limit", _int(0)),
}
# mod_jk can change these at runtime; pyjk's pools and connections read them at start only
FIXED_PARAMS = {
    "vahst": "host",
    "vaprt": "port",
    "vacpt": "connection_pool_timeout",
    "vapng": "ping_timeout",
    "vact": "connect_timeout",
    "vapt": "prepost_timeout",
    "vacpi": "connection_ping_interval",
    "vamps": "max_packet_size",
}
MEMBER_PARAMS = BALANCING_PARAMS | ENDPOINT_PARAMS
# by field name: what a standby takes of the active's edits (balancer/lb/handover.py) is what
# this page could have set, read by the same parsers, within the same bounds
LB_FIELDS: dict[str, Callable[[str], object]] = {f: parse for f, parse in LB_PARAMS.values()}
MEMBER_FIELDS: dict[str, Callable[[str], object]] = {
    f: parse for f, parse in MEMBER_PARAMS.values()
}


def field_value(fields: Mapping[str, Callable[[str], object]], name: str, raw: object) -> object:
    """A field's value sent as JSON (an integer, a boolean or a string), read as this page
    reads its form; ValueError saying what is expected."""
    parse = fields.get(name)
    if parse is None:
        raise ValueError(f"one of {', '.join(fields)}")
    if type(raw) is bool:
        text = "on" if raw else "off"
    elif type(raw) is int or type(raw) is str:
        text = str(raw)
    else:
        raise ValueError("an integer, a boolean or a string")
    value = parse(text)
    # as typed on the wire: a number for a number, true/false for a flag (the form's text is
    # the page's only; a JSON "3" for retries is some other sender's value)
    if type(value) in (int, bool) and type(raw) is not type(value):
        raise ValueError("an integer" if type(value) is int else "true or false")
    return value


def _checked(param: str, rule: tuple[str, Callable[[str], object]], text: str) -> object:
    try:
        return rule[1](text)
    except ValueError as e:
        raise StatusError(400, f"Invalid value for {param}: expected {e}.") from None


def find_members(engine: LbEngine, sub: str, *, wildcard: bool) -> list[Member]:
    """Members named by ``sw``: one name, or with ``wildcard`` a ``*``/``?`` pattern."""
    if not sub:
        raise StatusError(400, NO_SUB_WORKER)
    if "*" in sub or "?" in sub:
        if not wildcard:
            raise StatusError(400, NO_WILDCARD)
        pattern = re.compile(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in sub),
            re.DOTALL,
        )
        found = [m for m in engine.members if pattern.fullmatch(m.name)]
    else:
        found = [m for m in engine.members if m.name == sub]
    if not found:
        raise StatusError(404, UNKNOWN_SUB_WORKER)
    return found


def update(engine: LbEngine, single: bool, params: Params, now: float) -> list[Change]:
    sub = params.sub
    if single:
        if sub is not None:
            raise StatusError(400, NO_SUB_WORKERS)
        member = engine.members[0]
        return _apply_members(engine, _member_edits([member], params, ENDPOINT_PARAMS), now)
    if sub is not None:
        members = find_members(engine, sub, wildcard=True)
        return _apply_members(engine, _member_edits(members, params, MEMBER_PARAMS), now)
    att = params.get("att")
    if att is not None:
        return _apply_members(engine, _attribute_edits(engine, att, params), now)
    return _apply_lb(engine, params)


def _member_edits(
    members: list[Member],
    params: Params,
    allowed: Mapping[str, tuple[str, Callable[[str], object]]],
) -> list[tuple[Member, dict[str, object]]]:
    given = {
        p: _checked(p, rule, text)
        for p, rule in allowed.items()
        if (text := params.get(p)) is not None
    }
    edits = []
    for m in members:
        for param, field in FIXED_PARAMS.items():
            text = params.get(param)
            if text is not None and text.strip() != str(getattr(m.config, field)):
                raise StatusError(400, f"Parameter {param} ({field}) cannot be changed at runtime.")
        edits.append((m, {allowed[p][0]: v for p, v in given.items()}))
    return edits


def _attribute_edits(
    engine: LbEngine, att: str, params: Params
) -> list[tuple[Member, dict[str, object]]]:
    rule = MEMBER_PARAMS.get(att)
    if rule is None:
        raise StatusError(400, "Invalid value for att: expected a member attribute (vwa, vwf ...).")
    edits = []
    for i, m in enumerate(engine.members):
        text = params.get(f"val{i}")
        if text is not None:
            edits.append((m, {rule[0]: _checked(f"val{i}", rule, text)}))
    return edits


def _apply_members(
    engine: LbEngine, edits: list[tuple[Member, dict[str, object]]], now: float
) -> list[Change]:
    pending = [(m, {k: v for k, v in e.items() if getattr(m, k) != v}) for m, e in edits]
    pending = [(m, e) for m, e in pending if e]
    _check_routes(engine, pending)
    changes = []
    for m, e in pending:
        before = {k: getattr(m, k) for k in e}
        try:
            engine.update_member(m.name, now, **e)
        except InvalidSetting as err:  # checked above; a backstop, not an expected path
            raise StatusError(
                400, f"Update failed (at least partially) for sub worker '{m.name}': {err}"
            ) from None
        changes += [
            Change(engine.name, m.name, k, _shown(before[k]), _shown(getattr(m, k))) for k in e
        ]
    return changes


def _check_routes(engine: LbEngine, pending: list[tuple[Member, dict[str, object]]]) -> None:
    """A new route must not be any other member's route now (a swap takes two updates) nor
    another edited member's new route: the engine tells members apart by route."""
    taken = {m.route: m.name for m in engine.members}
    new: dict[object, str] = {}
    for m, e in pending:
        route = e.get("route")
        if route is None:
            continue
        owner = taken.get(route)  # type: ignore[call-overload]
        if owner == m.name:
            owner = None
        owner = owner or new.get(route)
        if owner is not None:
            raise StatusError(400, f"Invalid value for vwn: route {route} is used by {owner}.")
        new[route] = m.name


def _apply_lb(engine: LbEngine, params: Params) -> list[Change]:
    given = {
        LB_PARAMS[p][0]: _checked(p, LB_PARAMS[p], text)
        for p in LB_PARAMS
        if (text := params.get(p)) is not None
    }
    s = engine.settings
    edits = {k: v for k, v in given.items() if getattr(s, k) != v}
    if not edits:
        return []
    before = {k: getattr(s, k) for k in edits}
    try:
        engine.update_settings(**edits)
    except InvalidSetting as err:
        raise StatusError(400, f"Update failed: {err}") from None
    return [Change(engine.name, None, k, _shown(before[k]), _shown(getattr(s, k))) for k in edits]


def reset(engine: LbEngine, single: bool, params: Params, now: float) -> list[Change]:
    sub = params.sub
    if sub is not None and single:
        raise StatusError(400, NO_SUB_WORKERS)
    if sub is None:
        before = _stats(engine.members)
        engine.reset(now)
        return [Change(engine.name, None, "statistics", before, _stats(engine.members))]
    (member,) = find_members(engine, sub, wildcard=False)
    before = _stats([member])
    engine.reset(now, member.name)
    return [Change(engine.name, member.name, "statistics", before, _stats([member]))]


def recover(engine: LbEngine, single: bool, params: Params, now: float) -> list[Change]:
    sub = params.sub
    if single:
        if sub is not None and sub != engine.members[0].name:
            raise StatusError(400, NO_SUB_WORKERS)
        member = engine.members[0]
    else:
        if sub is None:
            raise StatusError(400, NO_SUB_WORKER)
        (member,) = find_members(engine, sub, wildcard=False)
    try:
        engine.recover(member.name, now)
    except RecoverRefused:
        raise StatusError(409, RECOVER_FAILED) from None
    return [Change(engine.name, member.name, "state", State.ERR.value, member.state.value)]


def _stats(members: list[Member] | tuple[Member, ...]) -> str:
    states = ",".join(sorted({m.state.value for m in members}))
    return (
        f"elected={sum(m.elected for m in members)} errors={sum(m.errors for m in members)} "
        f"state={states}"
    )


def _shown(value: object) -> object:
    return value.value if isinstance(value, Activation | Method | Lock) else value
