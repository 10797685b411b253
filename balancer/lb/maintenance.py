"""The lb's periodic maintenance: load decay and error recovery (reference modjk.md §3.8).

Runs only when ``worker.maintain`` seconds have passed since the last run (0 turns it off; an
ERR member then only comes back through forced recovery). One run:

1. ``exponent = floor(elapsed / maintain)`` -- more than 1 after an idle spell, capped at 64
   (C leaves a shift of 64 or more undefined; any lb_value is 0 after it anyway);
2. decay: lb_value >>= exponent (R, T, S); Busyness never decays; Next subtracts the smallest
   lb_value among usable members (Active and state <= ERR/FRC) from every member, floor 0;
   reply_timeouts >>= exponent for every method;
3. per member: ERR for strictly more than recover_time since its *last* error -> ERR/REC with
   lb_value = the largest lb_value after decay (not for B) and reply_timeouts = 0; else a local
   error older than error_escalation_time -> ERR (not from ERR/REC); else OK not chosen since
   the last run -> OK/IDLE;
4. if no member is left outside ERR, every ERR member -> ERR/FRC.

pyjk: a member the active health check took out (``Member.health_down``) stays ERR in steps 3
and 4: only the check brings it back (``LbEngine.force_recovery`` skips it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from balancer.config.model import Activation, Method
from balancer.lb.member import Member, State

if TYPE_CHECKING:
    from balancer.lb.engine import LbEngine

MAX_EXPONENT = 64


def run_maintenance(engine: LbEngine, now: float) -> bool:
    """One maintenance run if it is due; returns whether it ran."""
    interval = engine.maintain_interval
    if interval <= 0:
        return False
    elapsed = now - engine.last_maintain_time
    if elapsed < interval:
        return False
    engine.last_maintain_time = now
    exponent = min(int(elapsed // interval), MAX_EXPONENT)
    curmax = _decay(engine, exponent)
    if _recover(engine, curmax, now) == 0:
        engine.force_recovery(None, now)
    return True


def _decay(engine: LbEngine, exponent: int) -> int:
    method = engine.settings.method
    members = engine.members
    for m in members:
        if method not in (Method.BUSYNESS, Method.NEXT):
            m.lb_value >>= exponent
        m.reply_timeouts >>= exponent
    if method is Method.NEXT:
        # Rule activation overrides cannot be known here; the configured activation is used.
        usable = [
            m.lb_value
            for m in members
            if m.state.takes_requests and m.activation is Activation.ACTIVE
        ]
        floor = min(usable, default=0)
        for m in members:
            m.lb_value = max(0, m.lb_value - floor)
    if method is Method.BUSYNESS:
        return 0
    return max(m.lb_value for m in members)


def _recover(engine: LbEngine, curmax: int, now: float) -> int:
    """Per-member step 3; returns how many members are not in ERR afterwards."""
    settings = engine.settings
    non_error = 0
    for m in engine.members:
        if m.state is State.ERR:
            last = m.last_error_time
            # pyjk: a member the health check took out stays ERR; the check brings it back.
            if not m.health_down and (last is None or now - last > settings.recover_time):
                if settings.method is not Method.BUSYNESS:
                    m.lb_value = curmax
                m.reply_timeouts = 0
                engine.set_state(m, State.ERR_REC, "recover-time-elapsed", now)
                non_error += 1
        elif (
            m.first_error_time is not None
            and now - m.first_error_time >= settings.error_escalation_time
            and m.state is not State.ERR_REC
        ):
            engine.set_state(m, State.ERR, "local-error-escalated", now)
        else:
            non_error += 1
            if m.state is State.OK and not m.chosen_since_maintenance:
                engine.set_state(m, State.OK_IDLE, "idle", now)
        m.chosen_since_maintenance = False
    return non_error


def seconds_to_maintenance(engine: LbEngine, now: float) -> float | None:
    """Seconds until maintenance is next due (None when it is off)."""
    if engine.maintain_interval <= 0:
        return None
    return max(0.0, engine.last_maintain_time + engine.maintain_interval - now)


def seconds_to_recover(engine: LbEngine, member: Member, now: float) -> float | None:
    """Seconds until the maintenance run that will mark this ERR member ERR/REC, assuming
    maintenance runs as soon as it is due; None when the member is not ERR or maintenance is
    off. (mod_jk's status page shows this as "Rs".)"""
    interval = engine.maintain_interval
    if member.state is not State.ERR or interval <= 0 or member.health_down:
        return None
    run_at = engine.last_maintain_time + interval
    if member.last_error_time is not None:
        due = member.last_error_time + engine.settings.recover_time
        if run_at <= due:  # recovery needs strictly more than recover_time
            run_at += (math.floor((due - run_at) / interval) + 1) * interval
    return max(0.0, run_at - now)
