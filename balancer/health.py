"""Active health checks: what to probe (``probe_spec``) and what results mean
(``HealthTracker``). Pure; the timers that run the probes are ``balancer.health_monitor``, the
probes themselves ``balancer.health_probe``.

mod_jk judges members by real traffic only: a dead member is found by a failing client request,
and it is tried again by a client request once ``recover_time`` has passed (reference modjk.md
§3.6, §3.8). pyjk's health check finds and re-admits members without spending client requests:

- ``health_check_fall`` failed probes in a row take a member out (ERR, reason
  ``health-check-failed``, errors+1); while it stays out, each further failed probe moves its
  last error time and maintenance leaves it in ERR (no ERR/REC, so no client request probes it);
- ``health_check_rise`` passed probes in a row, counted since the member's last error, bring a
  member in ERR, ERR/REC, ERR/FRC or ERR/PRB back to OK, whoever put it there (a failed
  request, a probe, forced recovery). The changes come out of ``LbEngine.drain_changes()``.

Which members are probed (``probe_spec``):
- ``health_check_interval`` > 0 (ms): GET ``health_check_path`` every interval; 2xx and 3xx
  pass. This is the readiness check (a pyjk worker answers ``/-/ready`` with 503 when not
  ready).
- otherwise ``ping_mode`` with any of C, P, I (A = all): mod_jk probes its AJP connections
  (CPing) after connect (C), before each request (P) and when idle (I). pyjk's pool does not
  probe its HTTP connections; each of these letters turns on the interval probe instead, every
  ``connection_ping_interval`` s (the config reader derives ping_timeout/100 s for I; the same
  default is used for C or P alone). Like a CPing it asks "does the server answer?", not "is the
  app ready?": any status below 500 passes, so a ported mod_jk config whose backends lack the
  check path (404) keeps its members.
- neither: not probed (mod_jk's behaviour).
Probe timeout: ``ping_timeout`` ms for the answer; the TCP connect uses
``socket_connect_timeout``. ajp13 members are probed with CPing/CPong instead of a GET.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from balancer.config.model import MemberConfig
from balancer.lb.engine import DOWN_STATES, LbEngine
from balancer.lb.member import Member

HEALTH_CHECK_PASS_BELOW = 400  # health_check_interval: 2xx and 3xx pass
PING_PASS_BELOW = 500  # ping_mode: any answer below 500 shows the server is alive
DEFAULT_PING_TIMEOUT = 10.0  # s, when ping_timeout is 0


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """How one member is probed. Times in seconds."""

    protocol: str  # "http" (GET path) or "ajp13" (CPing)
    host: str
    port: int
    path: str
    interval: float
    timeout: float  # for the answer, once connected
    connect_timeout: float
    rise: int
    fall: int
    pass_below: int  # statuses 200 .. pass_below-1 pass
    source: str = ""  # local address to connect from


def probe_spec(cfg: MemberConfig) -> ProbeSpec | None:
    """The probe for a member, or None when it is not probed (see the module docstring)."""
    timeout = cfg.ping_timeout / 1000 if cfg.ping_timeout > 0 else DEFAULT_PING_TIMEOUT
    if cfg.health_check_interval > 0:
        interval = cfg.health_check_interval / 1000
        pass_below = HEALTH_CHECK_PASS_BELOW
    elif any(flag in cfg.ping_mode.upper() for flag in "CPIA"):
        seconds = cfg.connection_ping_interval or cfg.ping_timeout // 100
        interval = float(max(1, seconds))
        pass_below = PING_PASS_BELOW
    else:
        return None
    connect_ms = cfg.socket_connect_timeout or cfg.socket_timeout * 1000
    return ProbeSpec(
        protocol="ajp13" if cfg.type == "ajp13" else "http",
        host=cfg.host,
        port=cfg.port,
        path=cfg.health_check_path,
        interval=interval,
        timeout=timeout,
        connect_timeout=connect_ms / 1000 if connect_ms > 0 else timeout,
        rise=max(1, cfg.health_check_rise),
        fall=max(1, cfg.health_check_fall),
        pass_below=pass_below,
        source=cfg.source,
    )


@dataclass(slots=True)
class HealthTracker:
    """Consecutive results of one member's probes; decides, and tells the engine. Pure."""

    rise: int
    fall: int
    passes: int = 0  # in a row, since the member's last error
    fails: int = 0  # in a row
    probes: int = 0
    last_probe_at: float | None = None  # monotonic s
    last_detail: str = ""
    _seen_error_time: float | None = field(default=None, repr=False)

    def record(
        self, engine: LbEngine, member: Member, passed: bool, detail: str, now: float
    ) -> None:
        self.probes += 1
        self.last_probe_at = now
        self.last_detail = detail
        if passed:
            error_time = member.last_error_time
            if error_time is not None and error_time != self._seen_error_time:
                # A request failed on it since the last probe: count passes from here.
                self.passes = 0
            self.passes += 1
            self.fails = 0
            if self.passes >= self.rise and member.state in DOWN_STATES:
                engine.health_up(member, now)
        else:
            self.fails += 1
            self.passes = 0
            if self.fails >= self.fall:
                engine.health_down(member, now, detail)
        self._seen_error_time = member.last_error_time
