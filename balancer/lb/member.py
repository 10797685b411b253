"""One lb member at runtime: its editable settings, its state and its counters.

A ``Member`` is plain mutable data. Only the engine (``balancer.lb.engine``, the request plan
and the maintenance run) changes it; the data plane and the status worker read it.

States and their order follow mod_jk (reference modjk.md §3.7): everything up to ``ERR_FRC``
may take new requests, ``OK_BUSY`` and worse may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from balancer.config.model import Activation, MemberConfig, RuleExtensions


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


def derive_domain(route: str) -> str:
    """mod_jk's default domain: the route up to its first ``.``, or "" without a dot."""
    head, dot, _ = route.partition(".")
    return head if dot else ""


@dataclass(eq=False, slots=True)
class Member:
    """An lb member: config as loaded, runtime settings (status-worker editable), counters."""

    config: MemberConfig
    name: str = ""
    # member settings the status worker may change (mod_jk §5.1 vw*, va*)
    route: str = ""
    domain: str = ""
    redirect: str = ""
    distance: int = 0
    lbfactor: int = 1
    activation: Activation = Activation.ACTIVE
    retries: int = 2
    retry_interval: int = 100  # ms
    recovery_options: int = 0
    busy_limit: int = 0
    reply_timeout: int = 0  # ms
    fail_on_status: tuple[int, ...] = ()
    # load balancing
    state: State = State.OK_IDLE
    lb_mult: int = 1
    lb_value: int = 0
    first_error_time: float | None = None  # monotonic s; None = no error since the last success
    last_error_time: float | None = None
    last_error_reason: str = ""
    # counters
    elected: int = 0  # lb attempts that chose this member ("used", "Acc")
    sessions: int = 0  # requests without a session id that were sent here
    errors: int = 0
    client_errors: int = 0
    reply_timeouts: int = 0  # decays at maintenance
    bytes_read: int = 0  # received from the backend
    bytes_transferred: int = 0  # sent to the backend
    busy: int = 0  # Forwards in flight
    max_busy: int = 0
    # pyjk's own (status page): lb attempts routed here by the session's own route; requests
    # whose route named this member but went elsewhere; requests tried here that moved on to
    # another member
    sticky_hits: int = 0
    sticky_misses: int = 0
    failovers: int = 0
    chosen_since_maintenance: bool = False
    last_reset: float = 0.0
    # pyjk: the active health check took this member out (balancer.health); maintenance then
    # leaves it in ERR, and the health check brings it back. Cleared whenever it is OK again.
    health_down: bool = False
    # pyjk: slow start (balancer.lb.slowstart): when the member came back (None = no ramp),
    # and the part of a load unit not yet added to lb_value
    slow_start_since: float | None = None
    slow_start_carry: float = 0.0

    @classmethod
    def from_config(cls, config: MemberConfig, now: float) -> Member:
        route = config.route or config.name
        return cls(
            config=config,
            name=config.name,
            route=route,
            domain=config.domain or derive_domain(route),
            redirect=config.redirect,
            distance=max(0, config.distance),
            lbfactor=max(1, config.lbfactor),
            activation=config.activation,
            retries=max(1, config.retries),
            retry_interval=max(0, config.retry_interval),
            recovery_options=config.recovery_options,
            busy_limit=max(0, config.busy_limit),
            reply_timeout=max(0, config.reply_timeout),
            fail_on_status=tuple(config.fail_on_status),
            last_reset=now,
        )

    def effective_activation(self, rule: RuleExtensions | None = None) -> Activation:
        """The rule's per-member override (uriworkermap ``active=`` etc.) wins (mod_jk §4.5)."""
        if rule is not None:
            override = rule.activation.get(self.name)
            if override is not None:
                return override
        return self.activation

    def note_busy(self, delta: int) -> None:
        # the engine does this itself for a plain Member (engine._note_busy): keep them alike
        self.busy = max(0, self.busy + delta)
        self.max_busy = max(self.max_busy, self.busy)

    def clear_error_times(self) -> None:
        self.first_error_time = None
        self.last_error_time = None

    def reset_counters(self, now: float) -> None:
        """The status worker's reset (mod_jk §5.1, §9.8): statistics only, activation kept."""
        self.lb_value = 0
        self.elected = 0
        self.sessions = 0
        self.errors = 0
        self.client_errors = 0
        self.reply_timeouts = 0
        self.bytes_read = 0
        self.bytes_transferred = 0
        self.max_busy = self.busy
        self.sticky_hits = 0
        self.sticky_misses = 0
        self.failovers = 0
        self.chosen_since_maintenance = False
        self.last_error_reason = ""
        self.clear_error_times()
        self.last_reset = now
