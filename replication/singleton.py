"""Running the app's singletons (worker/singletons.py) where the election says: the I/O side.

`SingletonRunner` holds one `Election` (pure, election.py), feeds it what the cluster node
hears, and carries out its answers: a `Start` creates a supervised task for the daemon or the
job, a `Stop` ends the context, awaits the app's `stop`, cancels the task, and only then tells
the election (whose next advert, sent at once through `announce`, drops the claim — so the
next owner never starts before this one's stop finished).

Budget that keeps "stop before another may start" true after a partition: the owner notices
the lost quorum at most `lease + frequency` after it last heard the others, and its stop
takes at most `drop_time - lease - frequency`, so it is over before the others drop it
(`drop_time` of silence plus a failed probe). `lease` is 0.6 x drop_time.

Elections, handovers and stops are logged as `singleton=NAME owner=ROUTE epoch=N
reason=...` and counted (`singleton_*` counters of /cluster-manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.singletons import SingletonContext, SingletonSpec

from .election import FAILOVER, HANDOVER, Advert, Election, Start, Stop

log = logging.getLogger("pyjk.singleton")

LEASE_SHARE = 0.6  # of drop_time
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # s, restart delay of a daemon that raised
HEALTHY_RUN = 30.0  # s; a daemon that ran this long before raising restarts at BACKOFF_FIRST
GRACEFUL_STOP = 10.0  # s; at most this long for an app's stop on a graceful handover
# s at most, after the cancel, for the daemon's task to end: one that swallows CancelledError
# would otherwise hold the handover (and the next owner) forever. Not cut to what is left of
# the stop's budget: a task needs a turn of the loop to see its cancel at all, and one that
# obeys it ends at once; only a stubborn one waits this long.
CANCEL_GRACE = 2.0


@dataclass(slots=True)
class _Running:
    spec: SingletonSpec
    ctx: SingletonContext
    task: asyncio.Task[None]
    since: float


class SingletonRunner:
    def __init__(
        self,
        specs: Iterable[SingletonSpec],
        *,
        member_id: str,
        route: str,
        started: float,
        drop_time: float = math.inf,
        frequency: float = 0.5,
        clock: Callable[[], float] = time.time,
        counters: Counter[str] | None = None,
        announce: Callable[[], None] = lambda: None,
        may_start: Callable[[], bool] = lambda: True,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.route, self.clock, self.announce = route, clock, announce
        self.may_start = may_start  # False while this node's copy of the data is incomplete
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.frequency = frequency
        alone = math.isinf(drop_time)  # no cluster: this node is the only candidate
        self.lease = math.inf if alone else LEASE_SHARE * drop_time
        self.forced_stop = GRACEFUL_STOP if alone else max(0.1, drop_time - self.lease - frequency)
        settle = 0.0 if alone else min(self.lease, 3 * frequency)
        sticky = [s.name for s in self.specs.values() if s.sticky]
        self.election = Election(member_id, route, started, self.specs,
                                 lease=self.lease, settle=settle, sticky=sticky)  # fmt: skip
        self.failures: Counter[str] = Counter()
        self._routes: dict[str, str] = {}
        self._running: dict[str, _Running] = {}
        self._stops: set[asyncio.Task[None]] = set()
        self._stray: set[asyncio.Task[None]] = set()  # tasks that ignored their cancel
        self._timer: asyncio.Task[None] | None = None

    # -- what the cluster node tells us --------------------------------------------------------
    def heard(self, member: str, route: str, start: float, advert: Advert | None) -> None:
        self._routes[member] = route
        self.election.heard(member, route, start, advert, self.clock())
        self.decide()

    def left(self, member: str, *, certain: bool) -> None:
        self.election.left(member, certain=certain, now=self.clock())
        self.decide()

    def advert(self) -> Advert:
        return self.election.advert(self.clock())

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._timer = asyncio.create_task(self._tick())
        self.decide()

    async def release(self) -> None:
        """Graceful: stop every singleton held here (their stops finish) and say so at once."""
        self._act(self.election.leave(), graceful=True)
        await self.drain()
        self.announce()

    async def drain(self) -> None:
        while self._stops:
            await asyncio.gather(*self._stops, return_exceptions=True)

    async def close(self) -> None:
        """Release, then end the timer and cancel once more the tasks that ignored their
        cancel. Safe to call again (the cleanup of an abnormal exit after a stop)."""
        try:
            await self.release()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
                self._timer = None
            for task in self._stray:
                task.cancel()
            if self._stray:  # one more grace for them; a task that still runs is left
                await asyncio.wait(set(self._stray), timeout=CANCEL_GRACE)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(self.frequency, 1.0))
            try:
                self.decide()
            except Exception:
                log.exception("singleton election step failed")

    # -- carrying out decisions -----------------------------------------------------------------
    def decide(self) -> None:
        self._act(self.election.decide(self.clock(), may_start=self.may_start()))

    def _act(self, actions: Sequence[Start | Stop], *, graceful: bool = False) -> None:
        for action in actions:
            if isinstance(action, Start):
                self._start(action)
            else:
                task = asyncio.ensure_future(self._stop(action, graceful))
                self._stops.add(task)
                task.add_done_callback(self._stops.discard)

    def _start(self, action: Start) -> None:
        spec = self.specs[action.name]
        ctx = SingletonContext(action.name, action.epoch, self.route)
        task = asyncio.create_task(self._supervise(spec, ctx))
        self._running[action.name] = _Running(spec, ctx, task, self.clock())
        self.counters["singleton_starts"] += 1
        if action.reason in (FAILOVER, HANDOVER):
            self.counters[f"singleton_{action.reason}s"] += 1
        log.info("singleton=%s owner=%s epoch=%d reason=%s", action.name, self.route,
                 action.epoch, action.reason)  # fmt: skip
        self.announce()  # the claim travels now, not at the next heartbeat

    async def _stop(self, action: Stop, graceful: bool) -> None:
        began = self.clock()
        run = self._running.pop(action.name, None)
        try:
            if run is not None:
                run.ctx.end()
                budget = GRACEFUL_STOP if graceful else self.forced_stop
                if run.spec.stop is not None:
                    try:
                        # a task of its own, as under wait_for: the daemon's task sees the end
                        # while the stop runs (a stop that is no coroutine raises here)
                        stopping = asyncio.ensure_future(run.spec.stop(run.ctx))
                        async with asyncio.timeout(budget):
                            await stopping  # a timeout cancels it
                    except Exception as exc:  # reported, the stop goes on
                        self._report(action.name, run.ctx.epoch, "stop-failed", exc)
                run.task.cancel()
                await asyncio.wait((run.task,), timeout=CANCEL_GRACE)
                if not run.task.done():
                    self._stray.add(run.task)  # cancelled again at close()
                    run.task.add_done_callback(self._stray.discard)  # gone once it ends
                    self.counters["singleton_cancel_ignored"] += 1
                    log.error("singleton=%s owner=%s epoch=%d reason=cancel-ignored: its task "
                              "did not end %.1fs after the cancel; the handover goes on",
                              action.name, self.route, run.ctx.epoch, CANCEL_GRACE)  # fmt: skip
                elif not run.task.cancelled():
                    run.task.exception()  # retrieved: its failure was reported already
        finally:
            self.election.stopped(action.name)
            self.counters["singleton_stops"] += 1
            self.counters[f"singleton_stops_{action.reason.replace('-', '_')}"] += 1
            log.info("singleton=%s stopped owner=%s epoch=%d reason=%s took_ms=%d",
                     action.name, self.route, action.epoch, action.reason,
                     (self.clock() - began) * 1000)  # fmt: skip
            self.announce()

    async def _supervise(self, spec: SingletonSpec, ctx: SingletonContext) -> None:
        delay = BACKOFF_FIRST
        while ctx.active:
            began = self.clock()
            try:
                if spec.every is None:
                    await spec.start(ctx)
                    return  # a daemon that returns is done until the next ownership
                await self._run_job(spec, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the daemon's failure is reported
                if self.clock() - began >= HEALTHY_RUN:
                    delay = BACKOFF_FIRST
                self._report(spec.name, ctx.epoch, "crashed", exc, restart_in=delay)
                if not await ctx.sleep(delay):
                    return
                delay = min(2 * delay, BACKOFF_MAX)

    async def _run_job(self, spec: SingletonSpec, ctx: SingletonContext) -> None:
        assert spec.every is not None
        due = self.clock()
        while ctx.active:
            try:
                await spec.start(ctx)
                self.counters["singleton_job_runs"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one run failed; the next one is due
                self._report(spec.name, ctx.epoch, "job-failed", exc)
            due += spec.every
            if not await ctx.sleep(max(0.0, due - self.clock())):
                return

    def _report(
        self, name: str, epoch: int, reason: str, exc: BaseException, restart_in: float = 0.0
    ) -> None:
        self.failures[name] += 1
        self.counters[f"singleton_{reason.replace('-', '_')}"] += 1
        log.error("singleton=%s owner=%s epoch=%d reason=%s error=%r restart_in_s=%.2f",
                  name, self.route, epoch, reason, exc, restart_in)  # fmt: skip

    # -- visible --------------------------------------------------------------------------------
    def listing(self) -> list[dict[str, Any]]:
        out = []
        for o in self.election.ownerships():
            out.append({
                "name": o.name, "owner": o.route, "owner_id": o.owner, "epoch": o.epoch,
                "since": o.since, "here": o.owner == self.election.me,
                "runs_here": o.name in self.specs, "failures": self.failures[o.name],
            })  # fmt: skip
        return out
