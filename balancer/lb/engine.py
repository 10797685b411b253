"""The lb engine: one ``type=lb`` worker's members, states and counters, free of I/O.

The data plane asks it for a ``RequestPlan`` per request (``plan``) and carries out the plan's
steps; a timer calls ``maintain`` (every second is fine: it does its work only once
``worker.maintain`` seconds have passed since the last run). The status worker reads the members
and the counters and edits them through ``update_member``, ``update_settings``, ``reset`` and
``recover``. Time is always an argument (``now``: monotonic seconds, float).

State changes are reported so the data plane can log them
(``lb=lb member=n2 state=ERR reason=connect-refused from=OK``):
- ``maintain(now)`` returns the changes its run made;
- every other change (request outcomes, forced recovery, reset, recover, the health check's
  ``health_down``/``health_up``) is queued and handed out by ``drain_changes()``.
OK/IDLE <-> OK is bookkeeping rather than news and is not reported.

The recovery_options bits are importable from here: mod_jk's 1-16 and pyjk's own
``RECOVERY_REPLAY_UNSAFE`` (0x80: allow re-sending a non-idempotent request the backend may have
received); see recovery.py.

mod_jk behaviour followed here: reference modjk.md §3 (§9 where it differs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from balancer.config.model import LbConfig, MemberConfig, Method
from balancer.lb import controls, slowstart
from balancer.lb import sticky as st
from balancer.lb.decisions import RequestFacts
from balancer.lb.errors import LbError, UnknownMember
from balancer.lb.maintenance import run_maintenance, seconds_to_maintenance, seconds_to_recover
from balancer.lb.member import LB_VALUE_MAX, Member, State, lb_multipliers
from balancer.lb.plan import RequestPlan
from balancer.lb.recovery import (  # noqa: F401
    RECOVERY_ALWAYS_RETRY_GET,
    RECOVERY_ALWAYS_RETRY_HEAD,
    RECOVERY_CLOSE_ON_CLIENT_ERROR,
    RECOVERY_NO_RETRY_AFTER_HEADERS,
    RECOVERY_NO_RETRY_AFTER_SEND,
    RECOVERY_REPLAY_UNSAFE,
)
from balancer.lb.state import LOCAL, LbState

# Silent transitions: OK/IDLE <-> OK happens on every first request after a quiet spell.
_QUIET = {(State.OK_IDLE, State.OK), (State.OK, State.OK_IDLE)}
# A member in one of these is out of service or on its way back; passing health checks bring
# it back to OK (balancer.health).
DOWN_STATES = frozenset({State.ERR, State.ERR_REC, State.ERR_FRC, State.ERR_PRB})
HEALTH_FAILED = "health-check-failed"
# Hot-path aliases: an attribute of an Enum class is a slow lookup in CPython 3.11.
_BUSYNESS = Method.BUSYNESS
_REQUEST = Method.REQUEST
_SESSIONS = Method.SESSIONS
_NEXT = Method.NEXT
_TRAFFIC = Method.TRAFFIC
_OK_BUSY = State.OK_BUSY
HEALTH_PASSED = "health-check-passed"
# Up to this many members, route_at compares a session's route with each member's bytes
_ROUTE_SCAN = 8


@dataclass(frozen=True, slots=True)
class StateChange:
    lb: str
    member: str
    old: State
    new: State
    reason: str
    at: float  # monotonic s

    def __str__(self) -> str:
        return (
            f"lb={self.lb} member={self.member} state={self.new.value} "
            f"reason={self.reason} from={self.old.value}"
        )


class LbEngine:
    """One lb worker at runtime. Single-threaded: call it from the event loop only."""

    def __init__(
        self,
        config: LbConfig,
        members: Sequence[MemberConfig],
        maintain_interval: int,
        now: float,
        state: LbState = LOCAL,
    ) -> None:
        if not members and not config.cluster:  # a dynamic lb waits for its first member
            raise LbError(f"lb {config.name!r} has no members")
        self.config = config
        self.name = config.name
        # the numbers live where ``state`` keeps them: objects, or records N processes share
        self.lb_state = state
        self.settings = state.settings(config)
        self.members: tuple[Member, ...] = tuple(state.member(self.name, m, now) for m in members)
        self._check_unique()
        self.maintain_interval = maintain_interval  # s, worker.maintain; 0 = never
        self.next_offset = 0  # where find_best_byvalue starts scanning
        self._busy = 0  # Forwards in flight through this lb, from this process
        # with shared state, the lb's Forwards in flight are its members' (every process's)
        self._busy_of_members = state is not LOCAL
        self.max_busy = 0
        self.last_maintain_time = now
        self.last_reset = now
        # Set by the data plane: does the member's connection pool have a free slot? A member
        # left OK/BUSY is put back to OK at the start of a request when it has (mod_jk §3.6).
        # None = assume it has.
        self.pool_has_room: Callable[[Member], bool] | None = None
        self._changes: list[StateChange] = []
        self._routes: dict[str, int] = {}  # route_index's table
        self.update_multipliers()

    @property
    def busy(self) -> int:
        """Forwards in flight through this lb (all processes' with shared state)."""
        return self._busy_now()

    def _busy_now(self) -> int:
        # the property's value as a C call for open_forward (a property is a generic lookup)
        if self._busy_of_members:
            total = 0
            for m in self.members:
                total += m.read_busy()
            return total
        return self._busy

    def _check_unique(self) -> None:
        names = [m.name for m in self.members]
        routes = [m.route for m in self.members]
        for label, values in (("name", names), ("route", routes)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise LbError(f"lb {self.name!r}: members share a {label}: {', '.join(dupes)}")

    # -- lookups ----------------------------------------------------------------------------

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise UnknownMember(self.name, name)

    def route_index(self, route: str) -> int:
        """Index of the member whose route is ``route``, or -1 (routes are unique in an lb).
        A lookup table, checked on every hit and rebuilt when a route has changed."""
        i = self._routes.get(route, -1)
        members = self.members
        if 0 <= i < len(members):
            m = members[i]
            if m.read_route() == route:
                return i
        self._routes = {}
        for k, m in enumerate(members):
            self._routes.setdefault(m.read_route(), k)
        return self._routes.get(route, -1)

    def route_at(self, data: bytes, at: int, stop: int) -> int:
        """``route_index`` of the route ``data[at:stop]`` (bytes of a Cookie header), without
        making it a str: compared with each member's route bytes (``read_route_bytes``, which
        follows route edits). Past ``_ROUTE_SCAN`` members the table of ``route_index`` is
        cheaper than the scan."""
        members = self.members
        if len(members) > _ROUTE_SCAN:
            return self.route_index(data[at:stop].decode("latin-1"))
        for i in range(len(members)):
            m = members[i]
            if st.same_bytes(data, at, stop, m.read_route_bytes()):
                return i
        return -1

    def index(self, member: Member) -> int:
        for i, m in enumerate(self.members):
            if m is member:
                return i
        raise UnknownMember(self.name, member.name)

    # -- requests ---------------------------------------------------------------------------

    def plan(self, facts: RequestFacts, now: float) -> RequestPlan:
        """Start routing one request; drive it with ``next``/``report``/``finish``."""
        states = []  # the plan's own copy, read here once (a shared state is a record's word)
        for m in self.members:
            state = m.read_state()
            if state is _OK_BUSY and self._has_room(m):
                self.set_state(m, State.OK, "busy-cleared", now)
                state = m.read_state()
            states.append(state)
        plan = RequestPlan.__new__(RequestPlan)  # compiled: no argument parsing (_init)
        plan._init(self, facts, now, states)
        return plan

    def _has_room(self, member: Member) -> bool:
        limit = member.read_busy_limit()
        if limit and member.read_busy() >= limit:
            return False
        return self.pool_has_room is None or self.pool_has_room(member)

    # -- what plans and maintenance use -----------------------------------------------------

    def set_state(self, member: Member, new: State, reason: str, now: float) -> None:
        old = member.state
        if old is new:
            return
        member.state = new
        if new is State.OK or new is State.OK_IDLE:
            member.health_down = False  # it serves (or was reset): no longer the checker's call
            if old in DOWN_STATES:
                slowstart.begin(member, now)
        if (old, new) not in _QUIET:
            self._changes.append(StateChange(self.name, member.name, old, new, reason, now))

    def count_choice(
        self, member: Member, has_session: bool, stateless: bool, now: float | None = None
    ) -> None:
        """Counters of one lb attempt on ``member`` (mod_jk §3.3); with ``now``, a member in
        its slow start counts more (slowstart.py)."""
        new_session = not has_session and not stateless
        member.note_elected(new_session)  # elected, sessions
        settings = self.settings
        method = settings.read_method()
        if method is _BUSYNESS:
            member.add_lb_value(member.read_lb_mult())
        elif method is _REQUEST or (new_session and (method is _SESSIONS or method is _NEXT)):
            if not member.ramping() or now is None:
                member.add_lb_value(member.read_lb_mult())  # slowstart.scaled without a ramp
            else:
                member.add_lb_value(slowstart.scaled(member, member.read_lb_mult(), now))

    def open_forward(self, member: Member) -> None:
        member.note_busy(1)
        self._busy += 1
        busy = self._busy_now()
        if busy > self.max_busy:
            self.max_busy = busy

    def close_forward(
        self, member: Member, sent: int, received: int, now: float | None = None
    ) -> None:
        """End of one Forward: in-flight counts, byte counters, T and B load values."""
        member.note_busy(-1)
        self._busy = self._busy - 1 if self._busy > 0 else 0
        member.add_traffic(sent, received)
        settings = self.settings
        method = settings.read_method()
        if method is _TRAFFIC:
            moved = max(0, sent) + max(0, received)
            mult = member.read_lb_mult()
            # clamped before the product and after the slow-start scaling: add_lb_value takes
            # a 64-bit C integer (it saturates there, member.py)
            load = LB_VALUE_MAX if mult > 0 and moved > LB_VALUE_MAX // mult else moved * mult
            member.add_lb_value(min(slowstart.scaled(member, load, now), LB_VALUE_MAX))
        elif method is _BUSYNESS:
            member.set_lb_value(max(0, member.read_lb_value() - member.read_lb_mult()))

    def open_busyness(self, member: Member) -> None:
        """B counts Forwards in flight: one more for a member retry on the same lb attempt
        (the lb attempt itself was counted by ``count_choice``)."""
        if self.settings.method is Method.BUSYNESS:
            member.add_lb_value(member.read_lb_mult())

    def force_recovery(self, states: list[State] | None, now: float) -> int:
        """Every ERR member to ERR/FRC with reply_timeouts cleared; returns how many.

        pyjk: not a member the active health check holds down. mod_jk forces every ERR member
        because it has nothing better than a guess; a failing check is evidence. Forcing such
        a member sent traffic to a worker still answering 503 on /-/ready (restarting, taking
        its state over) as soon as the others' pools ran dry, and lost sessions.
        """
        forced = 0
        for i, m in enumerate(self.members):
            if m.state is State.ERR and not m.health_down:
                m.reply_timeouts = 0
                self.set_state(m, State.ERR_FRC, "forced-recovery", now)
                if states is not None:
                    states[i] = State.ERR_FRC
                forced += 1
        return forced

    def max_lb_value(self) -> int:
        return max(m.lb_value for m in self.members)

    def reset_lb_values(self) -> None:
        """mod_jk resets every lb_value after an activation change, except for Busyness,
        whose value counts requests in flight."""
        if self.settings.method is not Method.BUSYNESS:
            for m in self.members:
                m.lb_value = 0

    def update_multipliers(self) -> None:
        """lb_mult = LCM(lbfactors) / lbfactor (mod_jk §3.2; pyjk approximates it where it
        would be too large, see ``lb_multipliers``); lb_values are kept."""
        mults = lb_multipliers([m.lbfactor for m in self.members])
        for m, mult in zip(self.members, mults, strict=True):
            m.lb_mult = mult

    # -- the active health check (balancer.health) ------------------------------------------

    def health_down(self, member: Member, now: float, detail: str = "") -> None:
        """The health check failed ``health_check_fall`` times in a row: ERR, reason
        ``health-check-failed``. The first call counts an error; while the member stays ERR,
        later calls only move its last error time, and maintenance does not mark it ERR/REC
        (no client request is sent to probe a member the check knows is dead)."""
        member.last_error_reason = f"{HEALTH_FAILED}: {detail}" if detail else HEALTH_FAILED
        if member.first_error_time is None:
            member.first_error_time = now
        member.last_error_time = now
        if member.health_down and member.state is State.ERR:
            return
        member.health_down = True
        member.errors += 1
        self.set_state(member, State.ERR, HEALTH_FAILED, now)

    def health_up(self, member: Member, now: float) -> bool:
        """The health check passed ``health_check_rise`` times in a row: a member in ERR,
        ERR/REC, ERR/FRC or ERR/PRB (whoever put it there) goes back to OK as recovery would
        leave it: error times and reply_timeouts cleared, lb_value the largest of the lb (not
        for Busyness). Returns whether it came back."""
        member.health_down = False
        if member.state not in DOWN_STATES:
            return False
        member.clear_error_times()
        member.reply_timeouts = 0
        if self.settings.method is not Method.BUSYNESS:
            member.lb_value = self.max_lb_value()
        self.set_state(member, State.OK, HEALTH_PASSED, now)
        return True

    # -- maintenance and reporting ----------------------------------------------------------

    def maintain(self, now: float) -> list[StateChange]:
        """Decay and recovery (mod_jk §3.8), if ``maintain_interval`` s passed since the last
        run; returns the state changes it made (they are not queued for ``drain_changes``)."""
        mark = len(self._changes)
        ran = run_maintenance(self, now)
        if not ran:
            return []
        made = self._changes[mark:]
        del self._changes[mark:]
        return made

    def seconds_to_maintenance(self, now: float) -> float | None:
        return seconds_to_maintenance(self, now)

    def seconds_to_recover(self, member: str, now: float) -> float | None:
        """For an ERR member: seconds until the maintenance run that recovers it."""
        return seconds_to_recover(self, self.member(member), now)

    def drain_changes(self) -> list[StateChange]:
        """State changes since the last drain, oldest first (not those of ``maintain``)."""
        changes, self._changes = self._changes, []
        return changes

    # -- the status worker's commands (balancer.lb.controls) --------------------------------

    def update_member(self, name: str, now: float, **changes: object) -> None:
        """Edit member settings: activation, lbfactor, route, redirect, domain, distance,
        retries, retry_interval, recovery_options, busy_limit, reply_timeout."""
        controls.update_member(self, self.member(name), now, changes)

    def update_settings(self, **changes: object) -> None:
        """Edit lb settings (``LbSettings`` field names)."""
        controls.update_settings(self, changes)

    def reset(self, now: float, member: str | None = None) -> None:
        """Clear statistics of one member or (None) of the whole lb (mod_jk §5.1, §9.8)."""
        controls.reset(self, None if member is None else self.member(member), now)

    def recover(self, member: str, now: float) -> None:
        """ERR -> ERR/REC now; raises ``RecoverRefused`` in any other state."""
        controls.recover(self, self.member(member), now)

    # -- reload -----------------------------------------------------------------------------

    @classmethod
    def from_previous(
        cls,
        old: LbEngine,
        config: LbConfig,
        members: Sequence[MemberConfig],
        maintain_interval: int,
        now: float,
        state: LbState | None = None,
    ) -> LbEngine:
        """A new engine for a reloaded config that keeps what is still true.

        A member whose name and whole ``MemberConfig`` are unchanged is carried over as the
        same object: state, runtime edits and counters stay, and requests still in flight on
        the old engine keep counting on it. Other members start fresh. The lb's settings come
        from the new config (a reload is an explicit edit); its counters and maintenance clock
        are kept.
        """
        # the numbers stay where the old engine kept them unless told otherwise
        new = cls(config, members, maintain_interval, now, state or old.lb_state)
        fresh = new.members
        previous = {m.name: m for m in old.members}
        rebuilt = [
            kept if (kept := previous.get(m.name)) is not None and kept.config == m.config else m
            for m in fresh
        ]
        # A carried runtime route edit must not clash with a route of the new config.
        routes = [m.route for m in rebuilt]
        rebuilt = [
            fresh[i] if m is not fresh[i] and routes.count(m.route) > 1 else m
            for i, m in enumerate(rebuilt)
        ]
        new.members = tuple(rebuilt)
        new.update_multipliers()
        new.next_offset = old.next_offset % max(1, len(new.members))
        new.max_busy = old.max_busy
        new.last_reset = old.last_reset
        new.last_maintain_time = old.last_maintain_time
        new.pool_has_room = old.pool_has_room
        return new
