"""Active health checks: what to probe (``probe_spec``), what results mean (``HealthTracker``,
pure) and the asyncio timers that run the probes (``HealthMonitor``).

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

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from balancer.config.model import MemberConfig
from balancer.health_probe import ProbeResult, run_probe
from balancer.lb.engine import DOWN_STATES, LbEngine
from balancer.lb.member import Member

log = logging.getLogger("pyjk.health")

HEALTH_CHECK_PASS_BELOW = 400  # health_check_interval: 2xx and 3xx pass
PING_PASS_BELOW = 500  # ping_mode: any answer below 500 shows the server is alive
DEFAULT_PING_TIMEOUT = 10.0  # s, when ping_timeout is 0
JITTER = 0.1  # each interval is drawn from +-10 %, so probes of many members spread out
FIRST_PROBE_WITHIN = 1.0  # s: the first probe comes within this (or the interval, if shorter)


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


Prober = Callable[[ProbeSpec], Awaitable[ProbeResult]]


@dataclass(slots=True, eq=False)
class _Check:
    engine: LbEngine  # replaced on reload; the member object is the same while unchanged
    member: Member
    spec: ProbeSpec
    tracker: HealthTracker
    task: asyncio.Task[None] | None = None


class HealthMonitor:
    """Runs every member's probe on its own timer and feeds the results to its tracker.

    ``update`` (at start and after each reload) keeps the checks of members carried over
    unchanged by ``LbEngine.from_previous`` (same member object, same probe), starts new ones
    and cancels the rest. A member in several lbs is probed once per lb.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        prober: Prober = run_probe,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._prober = prober
        self._rng = rng or random.Random()
        self._checks: dict[tuple[str, str], _Check] = {}
        self._running = False

    def update(self, engines: Mapping[str, LbEngine]) -> None:
        wanted: dict[tuple[str, str], _Check] = {}
        for lb, engine in engines.items():
            for member in engine.members:
                spec = probe_spec(member.config)
                if spec is None:
                    continue
                key = (lb, member.name)
                old = self._checks.get(key)
                if old is not None and old.member is member and old.spec == spec:
                    old.engine = engine
                    wanted[key] = old
                else:
                    wanted[key] = _Check(engine, member, spec, HealthTracker(spec.rise, spec.fall))
        for key, old in self._checks.items():
            if wanted.get(key) is not old and old.task is not None:
                old.task.cancel()
        self._checks = wanted
        if self._running:
            self._start_missing()

    def start(self) -> None:
        """Start probing (from the event loop); idempotent."""
        self._running = True
        self._start_missing()

    async def stop(self) -> None:
        """Cancel every probe and wait for them to end."""
        self._running = False
        tasks = [c.task for c in self._checks.values() if c.task is not None]
        for c in self._checks.values():
            c.task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def tracker(self, lb: str, member: str) -> HealthTracker | None:
        """The tracker of a probed member (for the status page), or None."""
        check = self._checks.get((lb, member))
        return None if check is None else check.tracker

    def probed(self) -> list[tuple[str, str]]:
        """(lb, member) of every probed member."""
        return list(self._checks)

    def _start_missing(self) -> None:
        for (lb, name), check in self._checks.items():
            if check.task is None:
                check.task = asyncio.get_running_loop().create_task(
                    self._run(check), name=f"health {lb}/{name}"
                )

    async def _run(self, check: _Check) -> None:
        loop = asyncio.get_running_loop()
        spec = check.spec
        delay = self._rng.uniform(0, min(spec.interval, FIRST_PROBE_WITHIN))
        while True:
            await asyncio.sleep(delay)
            started = loop.time()
            try:
                result = await self._prober(spec)
                check.tracker.record(
                    check.engine, check.member, result.passed, result.detail, self._clock()
                )
            except Exception:  # a bug must not silently end the member's checks
                log.exception(
                    "lb=%s member=%s health probe raised; the checks go on",
                    check.engine.name,
                    check.member.name,
                )
            else:
                log.debug(
                    "lb=%s member=%s health=%s detail=%s",
                    check.engine.name,
                    check.member.name,
                    "pass" if result.passed else "fail",
                    result.detail,
                )
            # The next probe is due an interval after this one started (with jitter).
            interval = spec.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            delay = max(0.0, interval - (loop.time() - started))
