"""Which member takes one lb attempt (reference modjk.md §3.4 and §3.5).

``choose`` is one pass of mod_jk's ``get_most_suitable_worker``: the single-member shortcut,
then each route of the session id (exact route, then domain, then the fallbacks of an unusable
sticky member), then the best member by distance and lb_value, then hot standby. It reads the
request's *local* copy of the member states, which the request plan keeps (a member that failed
this request is ERR here even while it is only locally in error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from balancer.config.model import Activation
from balancer.config.rules import RuleExtensions
from balancer.lb.member import Member, State

# Hot-path aliases: an attribute of an Enum class is a slow lookup in CPython 3.11 (compiled,
# choice.pxd makes some of them C variables).
_ACTIVE = Activation.ACTIVE
_STOPPED = Activation.STOPPED
_DISABLED = Activation.DISABLED
_OK_IDLE = State.OK_IDLE
_OK = State.OK
_ERR_REC = State.ERR_REC
_ERR_FRC = State.ERR_FRC


def takes_requests(state: State) -> bool:
    """``state.takes_requests`` (member.py), as identity tests: compiled, a few pointer
    comparisons where reading the Enum member's attribute is a generic lookup, for every member
    of every pass. A unit test holds the two equal."""
    return state is _OK or state is _OK_IDLE or state is _ERR_REC or state is _ERR_FRC


class Rotation(Protocol):
    """Where the scan of ``find_best_byvalue`` starts (per lb, per process in mod_jk)."""

    next_offset: int


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    sticky: bool  # routed by the session's own route


@dataclass(slots=True)
class Chooser:
    members: Sequence[Member]
    states: list[State]  # the request's local copy, by member index
    rule: RuleExtensions
    stateless: bool
    force: bool  # sticky_session_force
    rotation: Rotation

    # -- predicates -------------------------------------------------------------------------

    def activation(self, i: int) -> Activation:
        # Member.effective_activation(rule), inlined: it runs for every member of every pass
        member = self.members[i]
        overrides = self.rule.activation
        if overrides:
            override = overrides.get(member.name)
            if override is not None:
                return override
        return member.activation

    def eligible(self, i: int) -> bool:
        """May take a new request: state <= ERR/FRC and effectively Active."""
        return self.states[i].takes_requests and self.activation(i) is _ACTIVE

    def usable_for_sticky(self, i: int) -> bool:
        """May take a request routed to it: a usable state and not Stopped (Disabled is fine)."""
        return self.states[i].sticky_ok and self.activation(i) is not _STOPPED

    # -- the pass ---------------------------------------------------------------------------

    def choose(self, session: str | None, routes: Sequence[str]) -> Choice | None:
        if len(self.members) == 1:
            # Single member: used at once, as sticky, when it can take a routed request and is
            # not Disabled; unusable means no member (forced recovery may still follow).
            if not self.usable_for_sticky(0):
                return None
            if self.activation(0) is not _DISABLED:
                return Choice(0, sticky=True)
        if session is not None:
            for route in routes:
                found = self.by_session_route(route)
                if found is not None:
                    return found
            if self.force:
                return None
        best = self.best_by_value()
        if best is not None:
            return Choice(best, sticky=False)
        return self.failover()

    def by_route(self, route: str) -> int | None:
        for i, member in enumerate(self.members):
            if member.route == route:
                return i
        return None

    def by_session_route(self, route: str) -> Choice | None:
        """mod_jk ``find_bysession_route``: exact route, else domain, then fallbacks."""
        index = self.by_route(route)
        used_domain = index is None
        if index is None:
            index = self.best_by_domain(route)
            if index is None:
                return None
        if self.usable_for_sticky(index):
            # A domain match is not sticky: the member only shares the session's domain.
            return Choice(index, sticky=not used_domain)
        # The routed member cannot take it: the request is no longer sticky (it gets a fresh
        # routing cookie when set_session_cookie is on, reference §9.4).
        if self.force:
            return None
        target = self.members[index]
        fallback: int | None = None
        if target.redirect:
            fallback = self.by_route(target.redirect)
        elif target.domain and not used_domain:
            fallback = self.best_by_domain(target.domain)
        if fallback is not None and self.usable_for_sticky(fallback):
            return Choice(fallback, sticky=False)
        return None

    def best_by_domain(self, route_or_domain: str) -> int | None:
        """Best eligible member whose domain is the text before the first ``.``: lowest
        distance, then lowest lb_value, first in config order on ties."""
        domain = route_or_domain.partition(".")[0]
        best: int | None = None
        for i, member in enumerate(self.members):
            if not member.domain or member.domain != domain or not self.eligible(i):
                continue
            if best is None or _better(member, self.members[best], by_value=True):
                best = i
        return best

    def best_by_value(self) -> int | None:
        """mod_jk ``find_best_byvalue`` (see ``best_by_value`` below)."""
        best = best_by_value(self.members, self.states, self.rule, self.stateless, self.rotation)
        return None if best < 0 else best

    def failover(self) -> Choice | None:
        """Hot standby (mod_jk ``find_failover_worker``): when nothing is eligible, route as if
        the session named the first configured redirect. Never sticky."""
        for member in self.members:
            if member.redirect:
                found = self.by_session_route(member.redirect)
                return None if found is None else Choice(found.index, sticky=False)
        return None


def best_by_value(
    members: Sequence[Member],
    states: list[State],
    rule: RuleExtensions,
    stateless: bool,
    rotation: Rotation,
) -> int:
    """mod_jk ``find_best_byvalue``: scan n members from ``next_offset``; among the eligible
    ones (``Chooser.eligible``) the lowest distance wins, then (unless stateless) the lowest
    lb_value; ties go to the first in rotation order. Returns the index, or -1 when no member
    is eligible; a pick moves ``next_offset`` past the picked member.

    The plan calls this for every request without a session (plan.py, ``_quick_choice``):
    compiled (choice.pxd), it is a C call with C locals, and the best member's distance and
    lb_value are kept in locals rather than read again for every comparison."""
    best = best_from(members, states, rule, stateless, rotation.next_offset)
    if best >= 0:
        rotation.next_offset = (best + 1) % len(members)
    return best


def best_from(
    members: Sequence[Member],
    states: list[State],
    rule: RuleExtensions,
    stateless: bool,
    offset: int,
) -> int:
    """``best_by_value``'s scan from ``offset``, which it leaves alone: the plan passes its
    engine's ``next_offset`` as a C value and moves it itself, where reading and writing the
    attribute of an object of unknown type cost ~300 instructions per request."""
    n = len(members)
    if n == 0:
        return -1
    offset = offset % n
    by_value = not stateless
    overrides = rule.activation
    best_i = -1
    best_distance = best_value = value = 0
    for j in range(offset, offset + n):
        i = j - n if j >= n else j
        if not takes_requests(states[i]):
            continue
        member = members[i]
        activation = overrides.get(member.name) if overrides else None
        if (member.read_activation() if activation is None else activation) is not _ACTIVE:
            continue
        distance = member.read_distance()
        if by_value:
            value = member.read_lb_value()
        if (
            best_i < 0
            or distance < best_distance
            or (distance == best_distance and by_value and value < best_value)
        ):
            best_i, best_distance, best_value = i, distance, value
    return best_i


def _better(candidate: Member, best: Member, *, by_value: bool) -> bool:
    if candidate.distance != best.distance:
        return candidate.distance < best.distance
    return by_value and candidate.lb_value < best.lb_value
