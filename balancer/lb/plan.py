"""One request's way through the lb: mod_jk's attempt loop as a sequence of decisions.

The loop (reference modjk.md §3.6, with the counts observed in §9.2):

    round 0 .. lb retries-1     (Wait(lb retry_interval) and a fresh copy of the states
                                 between rounds)
      attempt 0 .. min(members, lb_retries)-1
        choose a member (sticky.py, choice.py) on the request's local copy of the states
        none -> the first time, every ERR member goes ERR/FRC and the attempt is repeated;
                afterwards the attempt just counts ("no member": 503)
        ERR/REC -> ERR/PRB: this request is its probe
        busy_limit reached -> OK/BUSY, next attempt
        member tries 0 .. member retries-1   (Wait(member retry_interval) between tries,
                                              none after a refused connect: see below)
          Forward; a failure the request may be re-sent after is tried again on the same
          member; otherwise the failure is classified (table below) and the loop moves on
          or stops
    the client gets the status of the last failed attempt, 503 when it was "no member"

Classification of the last try on a member (§3.6 table; §9.3 for reply timeouts):

    success              -> OK, error times cleared
    client error         -> OK, error times cleared, client_errors+1; stop with 400
    fail_on_status -code -> OK, error times cleared; elsewhere; 503
    fail_on_status code  -> ERR, errors+1, error time now; elsewhere; 503
    reply timeout        -> reply_timeouts+1 on every try; ERR with errors+1 once
                            reply_timeouts > max_reply_timeouts; elsewhere; 504
    bad response         -> state kept (OK unless ERR); elsewhere; 502
    busy                 -> OK/BUSY (unless ERR); elsewhere; 503
    connect/send/read    -> errors+1, ERR when the member has no other request in flight, or
                            error_escalation_time is 0, or its first error is that old;
                            else a local error (state kept); 503 / 503 / 502

The request's local copy marks the member ERR (BUSY for busy) in every failure case, so the
same request does not choose it again until the next round. Whether a failed request may be
sent again at all is ``recovery.resend_refusal``: when it may not, the loop stops with 502 (504
after a reply timeout; 503 after fail_on_status).

Departure from mod_jk (failover time): after a *refused* connect (``CONNECT_REFUSED``) the
member's next try follows without the ``retry_interval`` pause. A refusal is certain — nothing
listens there, nothing was sent — and mod_jk's 100 ms sleep there is what made a dead member's
sessions wait ~100 ms for their next write (docs/benchmarks.md, failover). The tries themselves
(and so the counters) are mod_jk's; a refused connect costs well under a millisecond on a LAN.
The Wait between lb rounds, when every member failed, stays.

When every round has run out after reply timeouts the client gets 503, as §9.3 observed
("no more workers"). The try counts differ: §9.3 saw n1 tried 2x and n2 4x; this loop tries
each member 2x + 2x, since the observed run needs n1 to be unusable (BUSY or probing) in the
last round, which nothing here invents.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from enum import Enum
from typing import TYPE_CHECKING

from balancer.config.model import Activation
from balancer.lb import sticky as st
from balancer.lb.choice import Choice, Chooser, best_from, takes_requests
from balancer.lb.decisions import (
    CONNECT_REFUSED,
    Fail,
    Forward,
    Outcome,
    OutcomeKind,
    RequestFacts,
    Step,
    Wait,
    new_forward,
)
from balancer.lb.member import Member, State
from balancer.lb.recovery import resend_refusal
from balancer.lb.sticky import (
    NO_SESSION,
    session_routes,
    session_span,
    session_text,
)

if TYPE_CHECKING:
    from balancer.lb.engine import LbEngine

# Client status when the last failed attempt ended this way (§3.10, §9.2).
STATUS_BY_KIND = {
    OutcomeKind.CONNECT_FAILED: 503,
    OutcomeKind.BUSY: 503,
    OutcomeKind.SEND_FAILED: 503,
    OutcomeKind.READ_FAILED: 502,
    OutcomeKind.BAD_RESPONSE: 502,
    OutcomeKind.REPLY_TIMEOUT: 504,
    OutcomeKind.CLIENT_ERROR: 400,
}


class _Verdict(Enum):
    RETRY_SAME = "retry-same-member"
    NEXT = "next-attempt"
    STOP = "stop"
    DONE = "done"


# Hot-path aliases: an attribute of an Enum class is a slow lookup in CPython 3.11.
_DONE = _Verdict.DONE
_OK = State.OK
_ERR_REC = State.ERR_REC
_STOPPED = Activation.STOPPED
_ACTIVE = Activation.ACTIVE
_ACTIVE_VALUE: str = _ACTIVE.value
_SPAN_NONE = NO_SESSION  # compiled: a C constant (plan.pxd)


class RequestPlan:
    """Drive with ``next(now)``; close every Forward with ``report``, ``finish`` or a
    ``response_head`` that returns False (see ``balancer.lb.decisions``)."""

    def __init__(
        self,
        engine: LbEngine,
        facts: RequestFacts,
        now: float,
        states: list[State] | None = None,
    ) -> None:
        """``states``: the members' states as the engine just read them (``LbEngine.plan``);
        None reads them here."""
        self._init(engine, facts, now, states)

    def _init(
        self, engine: LbEngine, facts: RequestFacts, now: float, states: list[State] | None
    ) -> None:
        """What ``__init__`` does. ``LbEngine.plan`` makes its plans with
        ``RequestPlan.__new__(RequestPlan)`` and this: compiled, a C call where calling the
        class parses its arguments (plan.pxd)."""
        self._engine = engine
        self.facts = facts
        # The session id. The common case, one cookie value (sticky.session_span), is kept as
        # offsets into its Cookie header's bytes, the route found by comparing bytes with the
        # members' (LbEngine.route_at): no str, no list, no dict lookup per sticky request
        # (issue 12, session 8). ``session`` and ``_route_list`` make them when asked.
        settings = engine.settings
        k, at, stop = session_span(facts, settings)
        self._sid: bytes | None = None  # the Cookie header holding the id, in the common case
        self._sid_at, self._sid_end, self._route_at = at, stop, -1
        self._route_hit = -1  # the member _quick_choice found by the session's route
        self._session: str | None = None
        self._routes: list[str] | None = None
        if k >= 0:
            sid = facts.cookies[k]
            self._sid = sid
            self._route_at = st.route_start(sid, at, stop)  # -1: the id names no route
            self._has_session = True
        elif k == _SPAN_NONE:
            self._routes = []
            self._has_session = False
        else:
            # JK_ROUTE, a path parameter, several cookie values: read as text from where the
            # span's scan found it (not scanned for again)
            session = session_text(facts, settings, k, at, stop)
            self._session = session
            self._routes = session_routes(session) if session else []
            self._has_session = session is not None
        self._states = [m.state for m in engine.members] if states is None else states
        self._attempt = 0
        self._round = 0
        self._forced = False
        self._now = now
        # The Forward handed out and not yet closed: its member (None: none is open), the
        # member's index, the try on it, the status of its response head (0: none yet). Plain
        # fields rather than an object per Forward: compiled, they are C fields (plan.pxd).
        self._open: Member | None = None
        self._open_index = -1
        self._open_try = 0
        self._head_status = 0
        self._verdict: _Verdict | None = None
        # what the data plane and logs may read
        self.status = 503  # the answer so far: the last failed attempt's status
        self.reason = "no member"
        self.forwards = 0  # Forward steps handed out
        self.member: Member | None = None  # member of the current (or last) lb attempt
        self.sticky = False
        self._first_choice = True  # the session route's owner is judged once per request
        self._last_sent: Member | None = None  # member of the last Forward (failover count)
        self._pause = True  # retry_interval before the member's next try (not after a refusal)
        # The loop is a generator (_run), made only when the first Forward did not end the
        # request: the first Forward, which usually does, comes from _first_step.
        self._steps: Iterator[Step] | None = None
        # the current lb attempt: its member (None before the first), index, probe, cookie
        self._cur: Member | None = None
        self._cur_index = -1
        self._cur_probe = False
        self._cur_cookie: str | None = None

    @property
    def session(self) -> str | None:
        """The request's session id (sticky.session_id), None without one."""
        if self._session is None and self._sid is not None:
            self._session = self._sid[self._sid_at : self._sid_end].decode("latin-1")
        return self._session

    def _route_list(self) -> list[str]:
        """The routes the session id names, in order (sticky.session_routes)."""
        routes = self._routes
        if routes is None:
            sid = self._sid
            assert sid is not None  # routes are left unmade only for an id kept as bytes
            start = self._route_at
            routes = [sid[start : self._sid_end].decode("latin-1")] if start >= 0 else []
            self._routes = routes
        return routes

    def _names_route_of(self, m: Member) -> bool:
        """Whether one of the session's routes is member ``m``'s."""
        if self._sid is not None:
            start = self._route_at
            return start >= 0 and st.same_bytes(
                self._sid, start, self._sid_end, m.read_route_bytes()
            )
        return m.read_route() in self._route_list()

    @property
    def done(self) -> bool:
        return self._verdict in (_Verdict.DONE, _Verdict.STOP)

    # -- the data plane's calls -------------------------------------------------------------

    def next(self, now: float) -> Step:
        if self._open is not None:
            raise RuntimeError("next() with a Forward still open: report() or finish() it")
        if self._verdict is _DONE:
            raise RuntimeError("next() after finish(): the request was answered")
        self._now = now
        steps = self._steps
        if steps is None:
            if self.forwards == 0:
                return self._first_step()
            # the first Forward failed: the loop goes on right after it
            steps = self._steps = self._run(resume=True)
        return next(steps)

    def report(self, outcome: Outcome, now: float) -> None:
        """The open Forward ended without a relayed response (or broke while relaying)."""
        self._now = now
        m = self._close(outcome.bytes_sent, outcome.bytes_received)
        index, kind = self._open_index, outcome.kind
        reason = outcome.reason or kind.value
        status = STATUS_BY_KIND[kind]
        if kind is OutcomeKind.REPLY_TIMEOUT:
            m.reply_timeouts += 1  # every try counts (§9.3)
        if kind is OutcomeKind.CLIENT_ERROR:
            # Not the member's fault: it is fine, but this request goes nowhere else.
            m.client_errors += 1
            m.clear_error_times()
            self._engine.set_state(m, State.OK, "client-error", now)
            self._states[index] = State.ERR
            self._stop(status, reason)
            return
        if kind is OutcomeKind.BUSY:
            self._mark_busy(index, reason)
            self._verdict = _Verdict.NEXT
            return
        refusal = resend_refusal(
            self.facts.method,
            m.recovery_options,
            kind,
            request_sent=outcome.request_sent,
            replayable=outcome.replayable,
            response_started=outcome.response_started,
        )
        if refusal is None and self._open_try + 1 < m.retries:
            self._set_status(status, reason)
            self._verdict = _Verdict.RETRY_SAME
            self._pause = not (kind is OutcomeKind.CONNECT_FAILED and reason == CONNECT_REFUSED)
            return
        self._classify_failure(index, kind, reason, now)
        if refusal is None:
            self._set_status(status, reason)
            self._verdict = _Verdict.NEXT
        elif outcome.response_started or kind is OutcomeKind.REPLY_TIMEOUT:
            self._stop(status, f"{reason}; not sent again: {refusal}")
        else:
            self._stop(502, f"{reason}; not sent again: {refusal}")

    def response_head(
        self, status: int, now: float, *, replayable: bool = True, refusal: str | None = None
    ) -> bool:
        """A response head arrived. False: it matches fail_on_status and is to be discarded
        (the Forward is closed); True: relay it, then ``finish`` (or ``report`` a break).
        ``replayable``: the request body could be sent again. ``refusal``: the response's
        ``X-Pyjk-Refusal`` (a cluster-wide refusal, e.g. ``sessions-full``): relayed as it is,
        even when fail_on_status names its status — every member would answer the same, and
        trying them all would only delay the client's ``Retry-After``."""
        self._now = now
        m = self._open
        if m is None:
            raise RuntimeError("response_head() without an open Forward")
        rule_codes = self.facts.rule.fail_on_status
        codes = m.fail_on_status if rule_codes is None else rule_codes
        hard, soft = status in codes, -status in codes
        if not (hard or soft) or refusal is not None:
            self._head_status = status
            return True
        self._close(0, 0)
        reason = f"fail-on-status-{status}"
        refusal = resend_refusal(
            self.facts.method,
            m.recovery_options,
            OutcomeKind.READ_FAILED,
            request_sent=True,
            replayable=replayable,
            response_started=False,
        )
        # The same member is asked again first, like any failure (§9.5: ~105 ms after a hard
        # fail_on_status with the default member retries).
        if refusal is None and self._open_try + 1 < m.retries:
            self._set_status(503, reason)
            self._verdict = _Verdict.RETRY_SAME
            self._pause = True
            return False
        self._states[self._open_index] = State.ERR
        m.last_error_reason = reason
        if hard:
            m.errors += 1
            m.first_error_time = m.last_error_time = now
            self._engine.set_state(m, State.ERR, reason, now)
        else:
            m.clear_error_times()
            self._engine.set_state(m, State.OK, reason, now)
        if refusal is None:
            self._set_status(503, reason)
            self._verdict = _Verdict.NEXT
        else:
            self._stop(503, f"{reason}; not sent again: {refusal}")
        return False

    def finish(self, bytes_sent: int, bytes_received: int, now: float) -> None:
        """The response was relayed completely: the member served the request."""
        self._now = now
        m = self._close(bytes_sent, bytes_received)
        m.clear_error_times()
        if m.read_state() is not _OK:
            self._engine.set_state(m, _OK, "success", now)
        self._states[self._open_index] = _OK
        self.status = self._head_status or 200
        self.reason = "served"
        self._verdict = _DONE

    # -- the loop ---------------------------------------------------------------------------

    def _first_step(self) -> Step:
        """The loop's first step, without the generator (the same as ``_run``'s first one)."""
        settings = self._engine.settings
        if settings.read_lb_retries() < 1:
            steps = self._steps = self._run()
            return next(steps)
        index = self._quick_choice()
        if index >= 0:
            sticky = self._has_session
            self._first_choice = False
        else:
            choice = self._choose()
            if choice is None:
                steps = self._steps = self._run(choice=None)
                return next(steps)
            index, sticky = choice.index, choice.sticky
        if not self._begin_attempt(index, sticky):
            self._attempt += 1
            steps = self._steps = self._run()
            return next(steps)
        return self._forward(0)

    def _quick_choice(self) -> int:
        """What ``Chooser.choose`` answers in the two common cases, or -1 for the full pass.

        With several members and no per-rule activation: a session whose first route names a
        member usable for sticky gets that member, sticky (and counts no sticky miss); a
        request without a session gets ``best_by_value``, not sticky, when it finds one."""
        engine = self._engine
        members = engine.members
        rule = self.facts.rule
        if len(members) < 2 or rule.activation:
            return -1
        sid = self._sid
        routes = self._routes
        if sid is not None or routes:
            if sid is None:
                i = engine.route_index(routes[0])  # type: ignore[index]  # routes is a list
            elif self._route_at >= 0:
                i = engine.route_at(sid, self._route_at, self._sid_end)
            else:
                return -1  # an id without a route: the full pass
            if i < 0:
                return -1
            self._route_hit = i
            m = members[i]
            # state.sticky_ok: the sticky states are the four that take requests (member.py),
            # and takes_requests is a C call where the Enum's attribute is a generic lookup
            if not takes_requests(self._states[i]) or m.read_activation() is _STOPPED:
                return -1
            return i
        if self._has_session:
            return -1
        # choice.best_by_value, with the engine's rotation offset read and moved as C fields
        best = best_from(members, self._states, rule, rule.stateless, engine.next_offset)
        if best >= 0:
            engine.next_offset = (best + 1) % len(members)
        return best

    def _run(self, *, resume: bool = False, choice: Choice | bool | None = False) -> Iterator[Step]:
        """The attempt loop. ``resume``: start right after the first Forward (handed out by
        ``_first_step``); ``choice``: the first attempt's choice was made already (None)."""
        engine = self._engine
        n = len(engine.members)
        while True:
            if resume:
                resume = False
                verdict = yield from self._attempt_on(-1, False)
                if verdict is _Verdict.STOP:
                    break
                self._attempt += 1
                continue
            if choice is False:
                settings = engine.settings  # runtime edits apply from the next step on
                if self._attempt >= min(n, settings.lb_retries):
                    self._round += 1
                    if self._round >= settings.retries:
                        if self.status == 504:
                            # Every round ran out of members to wait for: mod_jk answers "no
                            # more workers" here (§9.3), and so does pyjk. 504 stays for a
                            # request that timed out and may not be sent again.
                            self._set_status(503, f"{self.reason}; no member left")
                        break
                    if settings.retry_interval > 0:
                        yield Wait(settings.retry_interval / 1000)
                    self._states = [m.state for m in engine.members]
                    self._attempt = 0
                self._set_status(503, "no member")
                choice = self._choose()
            if choice is None:
                choice = False
                if not self._forced:
                    self._forced = True
                    if engine.force_recovery(self._states, self._now):
                        continue  # the same attempt again, now with the forced members
                self._attempt += 1
                continue
            assert isinstance(choice, Choice)
            verdict = yield from self._attempt_on(choice.index, choice.sticky)
            choice = False
            if verdict is _Verdict.STOP:
                break
            self._attempt += 1
        self._verdict = _Verdict.STOP
        while True:
            yield Fail(self.status, self.reason)

    def _choose(self) -> Choice | None:
        choice = self._chooser().choose(self.session, self._route_list())
        if self._first_choice:
            self._first_choice = False
            if self._route_list():
                self._count_sticky_miss(choice)
        return choice

    def _attempt_on(self, index: int, sticky: bool) -> Generator[Step, None, _Verdict | None]:
        """One lb attempt on member ``index``: its tries; returns the verdict of the last one.
        ``index`` -1: the attempt began in ``_first_step`` and its first try is over."""
        if index >= 0:
            if not self._begin_attempt(index, sticky):
                return _Verdict.NEXT
            yield self._forward(0)
        m = self._cur
        assert m is not None
        try_no = 0
        while self._verdict is _Verdict.RETRY_SAME:
            try_no += 1
            if m.retry_interval > 0 and self._pause:
                yield Wait(m.retry_interval / 1000)
            self._engine.open_busyness(m)
            yield self._forward(try_no)
        return self._verdict

    def _begin_attempt(self, i: int, sticky: bool) -> bool:
        """The attempt's bookkeeping before its first try on member ``i``; False: the member
        is at its busy_limit (OK/BUSY, next attempt)."""
        engine, now = self._engine, self._now
        m = engine.members[i]
        self.member, self.sticky = m, sticky
        probe = m.read_state() is _ERR_REC
        if probe:
            engine.set_state(m, State.ERR_PRB, "probe", now)
            self._states[i] = State.ERR_PRB
        limit = m.read_busy_limit()
        if limit and m.read_busy() >= limit:
            self._mark_busy(i, "busy-limit")
            return False
        rule = self.facts.rule
        engine.count_choice(m, self._has_session, rule.stateless, now)
        # (a member found by the session's route needs no second look)
        if sticky and (i == self._route_hit or self._names_route_of(m)):
            m.add_sticky_hit()
        last = self._last_sent
        if last is not None and last is not m:
            last.failovers += 1
        self._last_sent = m
        cookie = None
        settings = engine.settings
        if not sticky and (rule.set_session_cookie or settings.read_set_session_cookie()):
            cookie = self._routing_cookie(m, sticky)
        self._cur, self._cur_index, self._cur_probe, self._cur_cookie = m, i, probe, cookie
        return True

    def _forward(self, try_no: int) -> Forward:
        """Open the attempt's try ``try_no``."""
        m = self._cur
        assert m is not None  # _begin_attempt set it
        self._engine.open_forward(m)
        self._open, self._open_index, self._open_try = m, self._cur_index, try_no
        self._head_status = 0
        self._verdict = None
        self.forwards += 1
        rule = self.facts.rule
        override = rule.reply_timeout
        overrides = rule.activation
        activation = overrides.get(m.name) if overrides else None  # effective_activation
        if activation is None:
            activation = m.read_activation()
        return new_forward(  # Forward(...) as a C call (decisions.py)
            m,
            self.sticky,
            self._cur_cookie,
            override if override is not None and override >= 0 else m.read_reply_timeout(),
            self._cur_probe,
            # .value is a Python-level descriptor call, _value_ a generic lookup
            _ACTIVE_VALUE if activation is _ACTIVE else activation._value_,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _chooser(self) -> Chooser:
        engine = self._engine
        rule = self.facts.rule
        return Chooser(
            engine.members,
            self._states,
            rule,
            rule.stateless,
            engine.settings.sticky_session_force,
            engine,
        )

    def _count_sticky_miss(self, choice: Choice | None) -> None:
        """The member the session's route names did not get the request (pyjk's counter)."""
        for route in self._route_list():
            for i, m in enumerate(self._engine.members):
                if m.route == route:
                    if choice is None or choice.index != i or not choice.sticky:
                        m.sticky_misses += 1
                    return

    def _close(self, sent: int, received: int) -> Member:
        """Close the open Forward; its member (its index and try stay in ``_open_*``)."""
        m = self._open
        if m is None:
            raise RuntimeError("no open Forward to close")
        self._open = None
        self._engine.close_forward(m, sent, received, self._now)
        return m

    def _set_status(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason

    def _stop(self, status: int, reason: str) -> None:
        self._set_status(status, reason)
        self._verdict = _Verdict.STOP

    def _mark_busy(self, index: int, reason: str) -> None:
        m = self._engine.members[index]
        if m.state is not State.ERR:
            self._engine.set_state(m, State.OK_BUSY, reason, self._now)
        self._states[index] = State.OK_BUSY
        self._set_status(503, reason)

    def _classify_failure(self, index: int, kind: OutcomeKind, reason: str, now: float) -> None:
        engine = self._engine
        settings = engine.settings
        m = engine.members[index]
        self._states[index] = State.ERR
        m.last_error_reason = reason
        if kind is OutcomeKind.BAD_RESPONSE:
            self._ran(m, reason)
        elif kind is OutcomeKind.REPLY_TIMEOUT:
            if m.reply_timeouts > settings.max_reply_timeouts:
                m.errors += 1
                m.first_error_time = m.last_error_time = now
                engine.set_state(m, State.ERR, reason, now)
            else:
                self._ran(m, reason)
        else:
            m.errors += 1
            escalation = settings.error_escalation_time
            first = m.first_error_time
            if m.busy == 0 or escalation == 0 or (first is not None and now - first >= escalation):
                engine.set_state(m, State.ERR, reason, now)
            else:
                self._ran(m, reason)  # a local error: other requests keep using the member
            if first is None:
                m.first_error_time = now
            m.last_error_time = now

    def _ran(self, m: Member, reason: str) -> None:
        """mod_jk counts any completed attempt as OK unless the member is ERR."""
        if m.state is not State.ERR:
            self._engine.set_state(m, State.OK, reason, self._now)

    def _routing_cookie(self, m: Member, sticky: bool) -> str | None:
        """Set-Cookie for a request not routed sticky (§3.11, format from §9.4). The lb's
        cookie name and path are used even when the rule overrides session_cookie."""
        settings = self._engine.settings
        if sticky or not (self.facts.rule.set_session_cookie or settings.set_session_cookie):
            return None
        value = f"{settings.session_cookie}=.{m.route}"
        if settings.session_cookie_path:
            value += f";PATH={settings.session_cookie_path}"
        value += ";HttpOnly"
        if self.facts.secure:
            value += ";Secure"
        return value
