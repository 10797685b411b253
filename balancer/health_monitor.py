"""The timers of the active health check: each probed member's probe runs on its own asyncio
task, and its results go to the member's ``HealthTracker`` (``balancer.health``, pure; what is
probed and what a result means are explained there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from balancer.health import HealthTracker, ProbeSpec, probe_spec
from balancer.health_probe import ProbeResult, run_probe
from balancer.lb.engine import LbEngine
from balancer.lb.member import Member

log = logging.getLogger("pyjk.health")

JITTER = 0.1  # each interval is drawn from +-10 %, so probes of many members spread out
FIRST_PROBE_WITHIN = 1.0  # s: the first probe comes within this (or the interval, if shorter)


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
