"""PlannedWrites (replication/planned_writes.py): a request's writes go out once, on the first
sink call, and every delta of the request gets the same answer."""

from __future__ import annotations

import asyncio

import pytest

from replication.planned_writes import Plan, PlannedWrites
from worker.backend import SessionNotSaved
from worker.delta import SessionDelta


def deltas(n: int) -> list[SessionDelta]:
    return [SessionDelta(f"{i:032X}.node1", 1.0) for i in range(n)]


async def test_the_writes_of_a_request_go_out_once_for_all_its_deltas():
    sent: list[list[str]] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def write(writes: list[str]) -> None:
        sent.append(writes)
        started.set()
        await gate.wait()

    planned: PlannedWrites[str] = PlannedWrites(write)
    ds = deltas(3)
    planned.plan(ds, Plan(["a", "b"]))
    plans = [planned.take(d) for d in ds]
    assert plans[0] is not None and all(p is plans[0] for p in plans) and len(planned) == 0
    sinks = [asyncio.ensure_future(planned.send(p)) for p in plans if p is not None]
    async with asyncio.timeout(5):
        await started.wait()
    await asyncio.sleep(0)  # the sinks run on to their wait
    assert sent == [["a", "b"]] and not any(s.done() for s in sinks)
    gate.set()
    await asyncio.gather(*sinks)
    assert sent == [["a", "b"]]


async def test_a_failed_write_fails_every_delta_and_drops_the_rest_of_the_plan():
    async def write(writes: list[str]) -> None:
        raise SessionNotSaved("not confirmed")

    planned: PlannedWrites[str] = PlannedWrites(write)
    ds = deltas(2)
    planned.plan(ds, Plan(["a"]))
    first = planned.take(ds[0])
    assert first is not None
    with pytest.raises(SessionNotSaved, match="not confirmed"):
        await planned.send(first)
    assert len(planned) == 0 and planned.take(ds[1]) is None  # the rest went with it


async def test_a_refused_plan_sends_nothing():
    sent: list[list[str]] = []

    async def write(writes: list[str]) -> None:
        sent.append(writes)

    planned: PlannedWrites[str] = PlannedWrites(write)
    ds = deltas(2)
    planned.plan(ds, Plan(["a"], refused="unverified request"))
    plan = planned.take(ds[0])
    assert plan is not None
    with pytest.raises(SessionNotSaved, match="unverified request"):
        await planned.send(plan)
    assert sent == [] and len(planned) == 0


def test_a_delta_not_seen_at_commit_has_no_plan_even_when_its_id_is_reused():
    planned: PlannedWrites[str] = PlannedWrites(lambda writes: asyncio.sleep(0))
    kept = deltas(1)
    planned.plan(kept, Plan(["a"]))
    other = SessionDelta(f"{0:032X}.node1", 1.0)
    assert planned.take(other) is None
