"""Rating a member good, degraded or bad for the status page (reference modjk.md §5.4).

Each rule is one letter, or an activation letter and a state letter joined by ``.`` (both must
hold). Activation letters: ``a`` Active, ``d`` Disabled, ``s`` Stopped. State letters: ``o``
OK, ``i`` or ``n`` OK/IDLE, ``b`` OK/BUSY, ``r`` ERR/REC, ERR/PRB and ERR/FRC, ``e`` ERR.
A member matching ``bad`` is bad; else one matching ``good`` is good; else it is degraded.
Letters are case-insensitive; a rule with an unknown letter matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from balancer.config.model import Activation
from balancer.lb.member import Member, State

Rating = Literal["good", "degraded", "bad"]

DEFAULT_GOOD = ("a.o", "a.i", "a.b", "a.r")
DEFAULT_BAD = ("s", "e")

_ACTIVATION_LETTER = {Activation.ACTIVE: "a", Activation.DISABLED: "d", Activation.STOPPED: "s"}
_STATE_LETTERS = {
    State.OK: {"o"},
    State.OK_IDLE: {"i", "n"},
    State.OK_BUSY: {"b"},
    State.ERR_REC: {"r"},
    State.ERR_PRB: {"r"},
    State.ERR_FRC: {"r"},
    State.ERR: {"e"},
}


def matches(rule: str, activation: Activation, state: State) -> bool:
    """Does one good/bad rule match a member with this activation and state?"""
    act = _ACTIVATION_LETTER[activation]
    states = _STATE_LETTERS[state]
    parts = rule.strip().lower().split(".")
    if len(parts) == 1 and len(parts[0]) == 1:
        letter = parts[0]
        return letter == act or letter in states
    if len(parts) == 2 and len(parts[0]) == 1 and len(parts[1]) == 1:
        return parts[0] == act and parts[1] in states
    return False


def rate(
    member: Member, good: Iterable[str] = DEFAULT_GOOD, bad: Iterable[str] = DEFAULT_BAD
) -> Rating:
    activation, state = member.activation, member.state
    if any(matches(rule, activation, state) for rule in bad):
        return "bad"
    if any(matches(rule, activation, state) for rule in good):
        return "good"
    return "degraded"
