"""SingletonRunner (replication/singleton.py) with real asyncio tasks and in-memory adverts:
daemons and jobs start, stop, restart with backoff, and hand over in the right order."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from replication import singleton as singleton_module
from replication.singleton import SingletonRunner
from tests.support.procs import until
from worker.singletons import SingletonContext, SingletonSpec


def alone(*specs: SingletonSpec) -> SingletonRunner:
    return SingletonRunner(specs, member_id="a" * 32, route="node1", started=time.time())


async def test_a_lone_node_runs_its_daemon_with_epoch_one_and_stops_it_before_cancelling():
    events: list[str] = []

    async def daemon(ctx: SingletonContext) -> None:
        events.append(f"start {ctx.name} {ctx.epoch} {ctx.route}")
        while await ctx.sleep(10):
            pass
        events.append(f"saw the end active={ctx.active}")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def stop(ctx: SingletonContext) -> None:
        events.append("stop")

    runner = alone(SingletonSpec("counter", daemon, stop))
    runner.start()
    await until(lambda: events == ["start counter 1 node1"])
    assert runner.advert().owns == {"counter": 1}
    await runner.close()
    assert sorted(events[1:3]) == ["saw the end active=False", "stop"]
    assert events[3:] == ["cancelled"]  # the task is cancelled only after stop returned
    assert runner.advert().owns == {} and runner.advert().runs == frozenset()
    assert runner.counters["singleton_starts"] == runner.counters["singleton_stops"] == 1


async def test_a_daemon_that_raises_is_restarted_with_backoff_and_reported(monkeypatch, caplog):
    monkeypatch.setattr(singleton_module, "BACKOFF_FIRST", 0.05)
    starts: list[float] = []

    async def flaky(ctx: SingletonContext) -> None:
        starts.append(time.monotonic())
        if len(starts) < 4:
            raise RuntimeError("boom")
        await ctx.sleep(10)

    runner = alone(SingletonSpec("flaky", flaky))
    runner.start()
    await until(lambda: len(starts) == 4)
    delays = [r.getMessage().rpartition("restart_in_s=")[2] for r in caplog.records]
    assert delays == ["0.05", "0.10", "0.20"]  # the delay doubles
    assert all("singleton=flaky owner=node1 epoch=1 reason=crashed" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert runner.failures["flaky"] == 3 and runner.counters["singleton_crashed"] == 3
    [row] = runner.listing()
    assert (row["name"], row["owner"], row["epoch"], row["failures"]) == ("flaky", "node1", 1, 3)
    await runner.close()


async def test_a_job_runs_every_period_and_a_failing_run_does_not_end_it():
    runs: list[int] = []

    async def job(ctx: SingletonContext) -> None:
        runs.append(ctx.epoch)
        if len(runs) == 2:
            raise ValueError("one bad run")

    runner = alone(SingletonSpec("report", job, every=0.03))
    runner.start()
    await until(lambda: len(runs) >= 5)
    await runner.close()
    assert runner.counters["singleton_job_failed"] == 1
    count = len(runs)
    await asyncio.sleep(0.1)
    assert len(runs) == count  # nothing runs after the stop


async def test_handover_starts_the_next_owner_only_after_the_old_owners_stop_finished():
    timeline: list[str] = []
    runners: dict[str, SingletonRunner] = {}

    def make(member: str, route: str) -> SingletonRunner:
        async def daemon(ctx: SingletonContext) -> None:
            timeline.append(f"{route} start {ctx.epoch}")
            await ctx.sleep(60)

        async def stop(ctx: SingletonContext) -> None:
            await asyncio.sleep(0.2)  # a slow stop: the next owner must wait for it
            timeline.append(f"{route} stopped {ctx.epoch}")

        def announce() -> None:  # the heartbeat, delivered in memory
            for other_id, other in runners.items():
                if other_id != member:
                    other.heard(member, route, 1.0, runners[member].advert())

        runner = SingletonRunner(
            [SingletonSpec("counter", daemon, stop)], member_id=member, route=route,
            started=time.time() - 10, drop_time=3.0, frequency=0.05, announce=announce,
        )  # fmt: skip
        runners[member] = runner
        return runner

    a, b = make("a" * 32, "node1"), make("b" * 32, "node2")
    for r in (a, b):
        r.announce()
    for r in (a, b):
        r.start()
    await until(lambda: len(timeline) == 1)
    owner, other = (a, b) if timeline[0].startswith("node1") else (b, a)
    await owner.release()
    await until(lambda: len(timeline) == 3)
    assert timeline[1] == f"{owner.route} stopped 1"
    assert timeline[2] == f"{other.route} start 2"
    await other.close()
    await owner.close()


def test_bad_names_and_periods_are_refused():
    from aiohttp import web

    from worker.singletons import job, singleton

    app = web.Application()

    async def noop(ctx: SingletonContext) -> None:
        return None

    with pytest.raises(ValueError, match="singleton name"):
        singleton(app, "has space", noop)
    with pytest.raises(ValueError, match="every="):
        job(app, "j", every=0)(noop)
    singleton(app, "ok", noop)
    with pytest.raises(ValueError, match="twice"):
        singleton(app, "ok", noop)


async def test_a_daemon_that_swallows_its_cancel_does_not_block_the_handover(monkeypatch, caplog):
    """Review finding: ``_stop`` awaited the cancelled task without a bound, so a daemon that
    caught CancelledError and went on held the handover (and the next owner) forever."""
    monkeypatch.setattr(singleton_module, "CANCEL_GRACE", 0.2)
    started = asyncio.Event()
    stubborn_now = True

    async def stubborn(ctx: SingletonContext) -> None:
        started.set()
        while stubborn_now:
            with contextlib.suppress(asyncio.CancelledError):  # the bug: a swallowed cancel
                await asyncio.sleep(0.01)

    runner = alone(SingletonSpec("stubborn", stubborn))
    runner.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(runner.release(), 3)  # the old code never returned
    assert runner.advert().owns == {}  # the claim is dropped: another node may start it
    assert runner.counters["singleton_cancel_ignored"] == 1
    assert any("singleton=stubborn owner=node1 epoch=1 reason=cancel-ignored" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    [stray] = runner._stray
    stubborn_now = False  # it gives in at last (or the test's loop could not close)
    await runner.close()  # cancelled once more
    await asyncio.wait_for(asyncio.wait((stray,)), 3)


async def test_a_forced_stop_with_no_budget_left_still_waits_for_an_obedient_daemon():
    """The wait after the cancel is not cut to the stop's budget: with none left (a slow
    stop) an obedient daemon still gets the moment it needs to end before the claim goes."""
    ended: list[str] = []

    async def obedient(ctx: SingletonContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)  # a short clean-up of its own (flush, close)
            ended.append("ended")

    async def slow_stop(ctx: SingletonContext) -> None:
        await asyncio.sleep(0.3)

    spec = SingletonSpec("obedient", obedient, slow_stop)
    runner = SingletonRunner([spec], member_id="a" * 32, route="node1", started=time.time(),
                             drop_time=1.0, frequency=0.5)  # fmt: skip
    runner.start()
    await until(lambda: runner.advert().owns == {"obedient": 1})
    assert runner.forced_stop == pytest.approx(0.1)  # 1.0 - lease 0.6 - frequency 0.5 -> 0.1
    runner._act(runner.election.leave())  # a forced stop (not graceful): budget forced_stop
    await runner.drain()
    assert ended == ["ended"]  # it ended before the claim was dropped
    assert runner.counters["singleton_cancel_ignored"] == 0
    await runner.close()


async def test_a_stray_task_is_forgotten_when_it_ends_and_awaited_at_close(monkeypatch):
    """Review finding: tasks that ignored their cancel were kept in ``_stray`` for ever and
    close() returned without giving them a moment to end."""
    monkeypatch.setattr(singleton_module, "CANCEL_GRACE", 0.2)
    started = asyncio.Event()
    swallow = [2]  # it ignores two cancels (the stop's), then ends at close()'s

    async def stubborn(ctx: SingletonContext) -> None:
        started.set()
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                swallow[0] -= 1
                if swallow[0] < 0:
                    await asyncio.sleep(0.05)  # a clean-up after the cancel, then it ends
                    raise

    runner = alone(SingletonSpec("stubborn", stubborn))
    runner.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(runner.release(), 3)
    [stray] = runner._stray
    swallow[0] = 0  # the next cancel ends it
    await runner.close()
    assert stray.done()  # close() waited for it
    assert runner._stray == set()  # and it was pruned when it ended


async def test_a_stop_that_is_no_coroutine_is_reported_and_the_daemon_is_still_cancelled():
    cancelled = asyncio.Event()

    async def daemon(ctx: SingletonContext) -> None:
        try:
            await asyncio.sleep(60)  # ignores ctx.active: only the cancel ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def stop(ctx: SingletonContext) -> None:  # a plain function where a coroutine is expected
        return None

    runner = alone(SingletonSpec("plain", daemon, stop))  # type: ignore[arg-type]
    runner.start()
    await until(lambda: runner.advert().owns == {"plain": 1})
    await runner.close()
    assert cancelled.is_set()  # not left running while another node starts it
    assert runner.counters["singleton_stop_failed"] == 1
