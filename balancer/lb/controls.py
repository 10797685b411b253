"""What the status worker may change at runtime (reference modjk.md §5.1, §3.9, §9.8).

Edits are validated and raise ``InvalidSetting`` naming the lb, the member and the value;
nothing is changed when an edit fails. Side effects copied from mod_jk:
- a new activation resets every lb_value to 0 (not for Busyness);
- a new lbfactor recomputes the multipliers and keeps the lb_values (pyjk: at most
  ``MAX_LBFACTOR``, as the config; an integer past 64 bits is refused for every field);
- a new route re-derives the domain when the member has none.
pyjk's own: a method change resets the lb_values too (a Traffic byte count means nothing to
Request), and for Busyness sets each to the requests in flight times the multiplier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from balancer.config.model import MAX_LBFACTOR, Activation, Method
from balancer.lb import slowstart
from balancer.lb.errors import InvalidSetting, RecoverRefused
from balancer.lb.member import Member, State, derive_domain
from balancer.lb.settings import check_value

if TYPE_CHECKING:
    from balancer.lb.engine import LbEngine

# A route, domain or redirect goes into a Set-Cookie value and is compared with session ids:
# keep to characters that are safe there.
_ROUTE = re.compile(r"[A-Za-z0-9_.\-:]{1,63}")

# the member fields the status page edits (update_member)
_MEMBER_RULES: dict[str, tuple[type, int | None]] = {
    "activation": (Activation, None),
    "lbfactor": (int, 1),
    "route": (str, None),
    "redirect": (str, None),
    "domain": (str, None),
    "distance": (int, 0),
    "retries": (int, 1),
    "retry_interval": (int, 0),
    "recovery_options": (int, 0),
    "busy_limit": (int, 0),
    "reply_timeout": (int, 0),
}
MEMBER_EDITS: tuple[str, ...] = tuple(_MEMBER_RULES)


def update_member(
    engine: LbEngine, member: Member, now: float, changes: Mapping[str, object]
) -> None:
    where = f"lb {engine.name!r} member {member.name!r}"
    checked = {name: checked_member_value(where, name, value) for name, value in changes.items()}
    route = checked.get("route")
    if route is not None:
        for other in engine.members:
            if other is not member and other.route == route:
                raise InvalidSetting(where, "route", route, f"a route unused ({other.name} has it)")

    activation_changed = checked.get("activation", member.activation) is not member.activation
    for name, value in checked.items():
        setattr(member, name, value)
    if "route" in checked and not member.domain:
        member.domain = derive_domain(member.route)
    if "lbfactor" in checked:
        engine.update_multipliers()
    if activation_changed:  # mod_jk ignores an unchanged value
        engine.reset_lb_values()
        if member.activation is Activation.ACTIVE:
            slowstart.begin(member, now)  # pyjk: back to Active ramps up like a recovery


def checked_member_value(where: str, name: str, value: object) -> object:
    """One member field as the status page may set it (a standby checks the active's edits
    with it too, balancer/lb/handover.py); InvalidSetting naming ``where`` otherwise."""
    if name not in _MEMBER_RULES:
        raise InvalidSetting(where, name, value, f"one of {', '.join(sorted(_MEMBER_RULES))}")
    checked = check_value(where, name, value, _MEMBER_RULES[name])
    if name == "lbfactor" and isinstance(checked, int) and checked > MAX_LBFACTOR:
        # as the config (model.py)
        raise InvalidSetting(where, "lbfactor", checked, f"an integer from 1 to {MAX_LBFACTOR}")
    if name == "route" or (name in ("redirect", "domain") and checked):
        _check_route_text(where, name, checked)
    return checked


def _check_route_text(where: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not _ROUTE.fullmatch(value):
        raise InvalidSetting(where, name, value, "1-63 of A-Z a-z 0-9 _ . - :")


def update_settings(engine: LbEngine, changes: Mapping[str, object]) -> None:
    where = f"lb {engine.name!r}"
    settings = engine.settings
    checked = {name: settings.validated(where, name, value) for name, value in changes.items()}
    old_method = settings.method
    for name, value in checked.items():
        setattr(settings, name, value)
    if settings.method is not old_method:
        for m in engine.members:
            m.lb_value = m.busy * m.lb_mult if settings.method is Method.BUSYNESS else 0


def reset(engine: LbEngine, member: Member | None, now: float) -> None:
    """Statistics cleared, state OK/IDLE, activation kept. For Busyness the lb_value restarts
    from the requests still in flight, so their completion does not drive it below truth."""
    targets = engine.members if member is None else (member,)
    for m in targets:
        m.reset_counters(now)
        if engine.settings.method is Method.BUSYNESS:
            m.lb_value = m.busy * m.lb_mult
        engine.set_state(m, State.OK_IDLE, "reset", now)
    if member is None:
        engine.max_busy = engine.busy
        engine.last_reset = now


def recover(engine: LbEngine, member: Member, now: float) -> None:
    """Mark an ERR member for recovery now, as maintenance would after recover_time."""
    if member.state is not State.ERR:
        raise RecoverRefused(engine.name, member.name, member.state.value)
    if engine.settings.method is not Method.BUSYNESS:
        member.lb_value = engine.max_lb_value()
    member.reply_timeouts = 0
    engine.set_state(member, State.ERR_REC, "recover-command", now)
