"""Slow start (pyjk's ``slow_start``, s): a member that comes back gets a growing share.

A member that was out (ERR, ERR/REC, ERR/FRC, ERR/PRB) and is OK again -- through the health
check, a request that succeeded on it after recovery, forced recovery or a reset -- or whose
activation is set back to Active, starts a ramp of ``slow_start`` seconds. During the ramp the
load one request adds to its lb_value (mod_jk §3.3) is divided by

    share = max(MIN_SHARE, seconds since it came back / slow_start)

so a request first counts ten times, halfway twice, and since the lowest lb_value wins
(§3.4) the member gets about ``share`` of the new requests its weight would give it. The
fractions are carried, so the average is exact. Nothing changes when ``slow_start`` is 0.

Methods R, S and N ramp (load counted when a member is chosen), T too (counted after the
request). B does not: its lb_value is the requests in flight and must come back to zero.
Stateless requests (§4.5) ignore lb_values, so they are not ramped either.
"""

from __future__ import annotations

from balancer.lb.member import Member

MIN_SHARE = 0.1  # the share right after coming back


def begin(member: Member, now: float) -> None:
    """The member came back: start its ramp (when it has one)."""
    if member.config.slow_start > 0:
        member.slow_start_since = now
        member.slow_start_carry = 0.0


def share(member: Member, now: float) -> float:
    """The member's share of its weight now: MIN_SHARE..1 during the ramp, 1 otherwise."""
    since = member.slow_start_since
    length = member.config.slow_start
    if since is None or length <= 0 or now - since >= length:
        return 1.0
    return max(MIN_SHARE, (now - since) / length)


def scaled(member: Member, load: int, now: float | None) -> int:
    """The load to add to the member's lb_value for ``load`` at full weight."""
    if member.slow_start_since is None or now is None:
        return load
    part = share(member, now)
    if part >= 1.0:
        member.slow_start_since = None  # the ramp is over
        member.slow_start_carry = 0.0
        return load
    exact = load / part + member.slow_start_carry
    whole = int(exact)
    member.slow_start_carry = exact - whole
    return whole
