"""One lb member at runtime: its editable settings, its state and its counters.

A ``Member`` is plain mutable data. Only the engine (``balancer.lb.engine``, the request plan
and the maintenance run) changes it; the data plane and the status worker read it.

Compiled (member.pxd, setup.py), it is an extension type whose fields are C fields, and the
engine's per-request reads and writes go through the small methods at the end of the class
(``read_state``, ``add_lb_value``, ...): C calls on C fields, where a field of a slotted
dataclass was a generic attribute lookup (and an int boxed) for each of some 30 a request
(docs/benchmarks.md, issue 12, session 6). They are methods rather than field reads because a
``SharedMember`` (shared.py) keeps those numbers in a record every process shares and
overrides them at C level; code off the per-request path (status worker, maintenance,
controls) uses the fields, which a ``SharedMember`` maps to its record as well.

``lb_value`` and ``lb_mult`` are 64-bit C integers (mod_jk: unsigned ones): ``add_lb_value``
saturates at ``LB_VALUE_MAX`` rather than wrapping, and ``lb_multipliers`` keeps each lb_mult at
most ``MAX_LB_MULT``.

States and their order follow mod_jk (reference modjk.md §3.7): everything up to ``ERR_FRC``
may take new requests, ``OK_BUSY`` and worse may not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from balancer.config.model import MAX_LBFACTOR, Activation, MemberConfig, RuleExtensions


class State(Enum):
    """Member state; ``value`` is the status page's text (mod_jk §3.7)."""

    OK_IDLE = "OK/IDLE"
    OK = "OK"
    ERR_REC = "ERR/REC"
    ERR_FRC = "ERR/FRC"
    OK_BUSY = "OK/BUSY"
    ERR = "ERR"
    ERR_PRB = "ERR/PRB"

    # Plain attributes of every member, set below: the chooser reads them for every member
    # of every request, and an Enum's hash (for set or dict lookups) is a Python-level call.
    rank: int  # position in the order above
    takes_requests: bool  # may be chosen (mod_jk: state <= ERR/FRC)
    sticky_ok: bool  # in STICKY_STATES


# States a sticky request may still use (mod_jk §3.5 "usable for sticky"). OK/BUSY is not one of
# them: a member whose pool is exhausted makes its sticky requests fail over (reference §3.7).
STICKY_STATES = frozenset({State.OK_IDLE, State.OK, State.ERR_REC, State.ERR_FRC})

_ORDER = list(State)
for _state in _ORDER:
    _state.rank = _ORDER.index(_state)
    _state.takes_requests = _state.rank <= _ORDER.index(State.ERR_FRC)
    _state.sticky_ok = _state in STICKY_STATES
del _ORDER, _state


# The largest lb_value, and load added at once: a 64-bit C field (member.pxd), signed like
# mod_jk's counter is not, so it saturates here instead of wrapping (``add_lb_value``).
LB_VALUE_MAX = (1 << 63) - 1
_LB_VALUE_MAX = LB_VALUE_MAX  # a C constant, compiled (member.pxd)


# The largest lb_mult. mod_jk's multipliers (§3.2) are LCM(lbfactors) / lbfactor, which grows
# with every coprime factor: twelve members weighted 43..97 give 2**70, more than the field
# holds, and even a product that fits would make one request's load saturate the lb_value.
MAX_LB_MULT = 1 << 32


def lb_multipliers(lbfactors: Sequence[int]) -> list[int]:
    """Each member's lb_mult for these lbfactors (each >= 1), in the same order.

    mod_jk's exact LCM(lbfactors) / lbfactor whenever the largest of them is at most
    ``MAX_LB_MULT`` -- every lb of a few members with factors up to 100000 and common ones.
    Above that, pyjk's approximation instead of an overflow: the smallest factor gets
    ``MAX_LB_MULT`` and factor f gets ``MAX_LB_MULT * smallest / f`` rounded, so the weights'
    ratios are off by less than f / (2 * MAX_LB_MULT * smallest) <= 1.2e-5 (lbfactor is at
    most ``MAX_LBFACTOR``). Refusing the lb instead would refuse a dynamic member's join or a
    status-page edit over arithmetic; the shares a member gets cannot tell the difference."""
    if not lbfactors:
        return []
    lcm = math.lcm(*lbfactors)
    smallest = min(lbfactors)
    if lcm // smallest <= MAX_LB_MULT:
        return [lcm // f for f in lbfactors]
    top = MAX_LB_MULT * smallest
    return [max(1, (top + f // 2) // f) for f in lbfactors]


def derive_domain(route: str) -> str:
    """mod_jk's default domain: the route up to its first ``.``, or "" without a dot."""
    head, dot, _ = route.partition(".")
    return head if dot else ""


class Member:
    """An lb member: config as loaded, runtime settings (status-worker editable), counters.

    Not a dataclass (an extension type's fields are declared in member.pxd): ``FIELDS`` below
    lists the fields, ``__init__`` gives their starting values."""

    config: MemberConfig
    name: str
    # member settings the status worker may change (mod_jk §5.1 vw*, va*)
    route: str
    domain: str
    redirect: str
    distance: int
    lbfactor: int
    activation: Activation
    retries: int
    retry_interval: int  # ms
    recovery_options: int
    busy_limit: int
    reply_timeout: int  # ms
    fail_on_status: tuple[int, ...]
    # load balancing
    state: State
    lb_mult: int
    lb_value: int
    first_error_time: float | None  # monotonic s; None = no error since the last success
    last_error_time: float | None
    last_error_reason: str
    # counters
    elected: int  # lb attempts that chose this member ("used", "Acc")
    sessions: int  # requests without a session id that were sent here
    errors: int
    client_errors: int
    reply_timeouts: int  # decays at maintenance
    bytes_read: int  # received from the backend
    bytes_transferred: int  # sent to the backend
    busy: int  # Forwards in flight
    max_busy: int
    # pyjk's own (status page): lb attempts routed here by the session's own route; requests
    # whose route named this member but went elsewhere; requests tried here that moved on to
    # another member
    sticky_hits: int
    sticky_misses: int
    failovers: int
    chosen_since_maintenance: bool
    last_reset: float
    # pyjk: the active health check took this member out (balancer.health); maintenance then
    # leaves it in ERR, and the health check brings it back. Cleared whenever it is OK again.
    health_down: bool
    # pyjk: slow start (balancer.lb.slowstart): when the member came back (None = no ramp),
    # and the part of a load unit not yet added to lb_value
    slow_start_since: float | None
    slow_start_carry: float
    # (and, not fields: read_route_bytes' cache, _route_key and _route_bytes)

    def __init__(self, config: MemberConfig, now: float = 0.0) -> None:
        """The member as ``config`` loads it, mod_jk's minimums applied (§1.5)."""
        route = config.route or config.name
        self.config = config
        self.name = config.name
        self.route = route
        self.domain = config.domain or derive_domain(route)
        self.redirect = config.redirect
        self.distance = max(0, config.distance)
        self.lbfactor = min(max(1, config.lbfactor), MAX_LBFACTOR)
        self.activation = config.activation
        self.retries = max(1, config.retries)
        self.retry_interval = max(0, config.retry_interval)
        self.recovery_options = config.recovery_options
        self.busy_limit = max(0, config.busy_limit)
        self.reply_timeout = max(0, config.reply_timeout)
        self.fail_on_status = tuple(config.fail_on_status)
        self.state = State.OK_IDLE
        self.lb_mult = 1
        self.lb_value = 0
        self.first_error_time = None
        self.last_error_time = None
        self.last_error_reason = ""
        self.elected = self.sessions = self.errors = self.client_errors = 0
        self.reply_timeouts = self.bytes_read = self.bytes_transferred = 0
        self.busy = self.max_busy = 0
        self.sticky_hits = self.sticky_misses = self.failovers = 0
        self.chosen_since_maintenance = False
        self.last_reset = now
        self.health_down = False
        self.slow_start_since = None
        self.slow_start_carry = 0.0
        self.forget_route_bytes()

    @classmethod
    def from_config(cls, config: MemberConfig, now: float) -> Member:
        return cls(config, now)

    # The methods below reach the fields through ``_fields(self)``: compiled, ``self.x`` in a
    # method of the class is its C field, which a SharedMember does not use (its fields are
    # its record's words); an attribute of the plain object is the one both keep right.

    def __repr__(self) -> str:
        m = _fields(self)
        return (
            f"Member(name={m.name!r}, route={m.route!r}, state={m.state.value}, "
            f"activation={m.activation.value}, lb_value={m.lb_value}, busy={m.busy})"
        )

    def effective_activation(self, rule: RuleExtensions | None = None) -> Activation:
        """The rule's per-member override (uriworkermap ``active=`` etc.) wins (mod_jk §4.5)."""
        m = _fields(self)
        if rule is not None:
            override = rule.activation.get(m.name)
            if override is not None:
                return override
        return m.activation  # type: ignore[no-any-return]

    def note_busy(self, delta: int) -> None:
        """One Forward more (1) or less (-1) in flight (SharedMember: its process's own)."""
        busy = self.busy + delta
        self.busy = busy if busy > 0 else 0
        if self.busy > self.max_busy:
            self.max_busy = self.busy

    def clear_error_times(self) -> None:
        self.first_error_time = None
        self.last_error_time = None

    def reset_counters(self, now: float) -> None:
        """The status worker's reset (mod_jk §5.1, §9.8): statistics only, activation kept."""
        m = _fields(self)
        m.lb_value = 0
        m.elected = 0
        m.sessions = 0
        m.errors = 0
        m.client_errors = 0
        m.reply_timeouts = 0
        m.bytes_read = 0
        m.bytes_transferred = 0
        m.max_busy = m.busy
        m.sticky_hits = 0
        m.sticky_misses = 0
        m.failovers = 0
        m.chosen_since_maintenance = False
        m.last_error_reason = ""
        m.first_error_time = None
        m.last_error_time = None
        m.last_reset = now

    # -- the engine's per-request reads and writes (see the module docstring) -----------------
    # A SharedMember overrides every one of them: a method added here is added there.

    def read_state(self) -> State:
        return self.state

    def read_activation(self) -> Activation:
        return self.activation

    def read_distance(self) -> int:
        return self.distance

    def read_lb_value(self) -> int:
        return self.lb_value

    def read_lb_mult(self) -> int:
        return self.lb_mult

    def read_route(self) -> str:
        return self.route

    def read_busy(self) -> int:
        return self.busy

    def read_busy_limit(self) -> int:
        return self.busy_limit

    def read_reply_timeout(self) -> int:
        return self.reply_timeout

    def ramping(self) -> bool:
        """In its slow start (slowstart.py)."""
        return self.slow_start_since is not None

    def add_lb_value(self, delta: int) -> None:
        """Add a load (>= 0), saturating at ``LB_VALUE_MAX``: mod_jk's unsigned counter never
        goes negative, and a wrapped value would win every choice (lowest value wins)."""
        value = self.lb_value
        if delta > _LB_VALUE_MAX - value:
            self.lb_value = _LB_VALUE_MAX
        else:
            self.lb_value = value + delta

    def set_lb_value(self, value: int) -> None:
        self.lb_value = value

    def note_elected(self, new_session: bool) -> None:
        """The counters of one lb attempt on this member (mod_jk §3.3); the engine's
        ``count_choice`` adds its lb value."""
        self.elected += 1
        self.chosen_since_maintenance = True
        if new_session:
            self.sessions += 1

    def add_traffic(self, sent: int, received: int) -> None:
        """The bytes of one Forward: sent to the backend, received from it."""
        if sent > 0:
            self.bytes_transferred += sent
        if received > 0:
            self.bytes_read += received

    def add_sticky_hit(self) -> None:
        self.sticky_hits += 1

    # -- the route as bytes (not overridden: it reads the route through read_route) ---------

    def forget_route_bytes(self) -> None:
        """Drop ``read_route_bytes``' cache (called by ``__init__``, and by ShmState for a
        SharedMember, which is made without it)."""
        self._route_key: str | None = None
        self._route_bytes: bytes | None = None

    def read_route_bytes(self) -> bytes | None:
        """``read_route()`` as the bytes a session id's route is compared with (the plan's
        sticky lookup, issue 12 session 8): latin-1, as sticky.py decodes ids, or None when
        the route has a character latin-1 lacks (no id can name it). Encoded again whenever
        ``read_route`` gives another str than last time: a route edited on the status page,
        by the pair handover or a reload, or (SharedMember) in the shared record, is followed
        at the next request."""
        route = self.read_route()
        if route is not self._route_key:
            try:
                encoded: bytes | None = route.encode("latin-1")
            except UnicodeEncodeError:
                encoded = None
            self._route_key, self._route_bytes = route, encoded
        return self._route_bytes


def _fields(member: Member) -> Any:
    """``member`` as a plain object: its fields read and written by attribute (see above)."""
    return member


# Member's fields in declaration order (what dataclasses.fields gave when it was one; an
# extension type keeps no __annotations__). A unit test holds it equal to the class's.
FIELDS: tuple[str, ...] = (
    "config",
    "name",
    "route",
    "domain",
    "redirect",
    "distance",
    "lbfactor",
    "activation",
    "retries",
    "retry_interval",
    "recovery_options",
    "busy_limit",
    "reply_timeout",
    "fail_on_status",
    "state",
    "lb_mult",
    "lb_value",
    "first_error_time",
    "last_error_time",
    "last_error_reason",
    "elected",
    "sessions",
    "errors",
    "client_errors",
    "reply_timeouts",
    "bytes_read",
    "bytes_transferred",
    "busy",
    "max_busy",
    "sticky_hits",
    "sticky_misses",
    "failovers",
    "chosen_since_maintenance",
    "last_reset",
    "health_down",
    "slow_start_since",
    "slow_start_carry",
)
