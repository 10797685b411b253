"""Real balancer: reload under traffic, URI map file watch, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.integration.conftest import Stack, http_get, http_json, wait_for
from tests.support.procs import until

pytestmark = pytest.mark.integration


async def _traffic(url: str, stop: asyncio.Event, results: list) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    results.append((resp.status, (await resp.json())["node"]))
            except (aiohttp.ClientError, ValueError) as exc:
                results.append((0, repr(exc)))


async def test_reload_under_traffic_adds_a_member_without_failing_a_request(stack: Stack):
    for name in ("n1", "n2", "n3"):
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(["n1", "n2"]))
    stop = asyncio.Event()
    results: list = []
    clients = [asyncio.create_task(_traffic(f"{stack.url}/app/x", stop, results)) for _ in range(8)]
    await until(lambda: len(results) >= 200)
    assert stack.workers_file is not None
    stack.workers_file.write_text(stack.workers_properties(["n1", "n2", "n3"]))
    stack.balancer.signal(signal.SIGHUP)
    await until(lambda: any(node == "n3" for _, node in results[-50:]))
    # an invalid file is rejected and the running configuration stays live
    stack.workers_file.write_text("worker.list=lb\nworker.lb.type=lb\nworker.lb.hots=1\n")
    stack.balancer.signal(signal.SIGHUP)
    await until(lambda: "reload rejected" in stack.balancer.output())
    mark = len(results)
    await until(lambda: len(results) >= mark + 200)
    stop.set()
    await asyncio.gather(*clients)
    assert [r for r in results if r[0] != 200] == []
    assert {node for _, node in results[-100:]} == {"n1", "n2", "n3"}
    assert "worker.lb.hots" in stack.balancer.output()


def test_counters_of_unchanged_members_survive_a_reload(stack: Stack):
    for name in ("n1", "n2"):
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(["n1", "n2"]))
    for _ in range(10):
        http_json(f"{stack.url}/app/x")
    before = _elected(stack.status_txt())
    assert before == {"n1": 5, "n2": 5}
    assert stack.workers_file is not None
    stack.workers_file.write_text(stack.workers_properties(["n1", "n2"], "worker.n2.lbfactor=3"))
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "lbfactor=3" in stack.status_txt(), 10, what="reload")
    after = _elected(stack.status_txt())
    assert after["n1"] == 5  # unchanged member keeps its counters
    assert after["n2"] == 0  # a changed member starts fresh


def _elected(txt: str) -> dict[str, int]:
    out = {}
    for line in txt.splitlines():
        if line.startswith("Member:"):
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            out[fields["name"]] = int(fields["elected"])
    return out


def test_the_uri_map_is_reread_when_its_file_changes(stack: Stack):
    stack.start_backend("n1")
    workers = stack.workers_properties(["n1"], "worker.mount_reload=1")
    stack.start_balancer(workers, "/app|/*=lb\n!/app/hidden/*=lb\n/jkmanager|/*=jkstatus\n")
    assert http_get(f"{stack.url}/app/hidden/x")[0] == 404
    assert stack.mounts_file is not None
    stack.mounts_file.write_text("/app|/*=lb\n/jkmanager|/*=jkstatus\n")
    wait_for(lambda: http_get(f"{stack.url}/app/hidden/x")[0] == 200, 10, what="mount reload")


async def test_sigterm_drains_requests_in_flight_and_exits_0(stack: Stack):
    for name in ("n1", "n2"):
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(["n1", "n2"]))

    async def slow(session: aiohttp.ClientSession) -> int:
        async with session.get(f"{stack.url}/app/slow?ms=1500") as resp:
            await resp.read()
            return resp.status

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        tasks = [asyncio.create_task(slow(session)) for _ in range(10)]
        await until(lambda: " busy=10 " in _lb_line(stack.status_txt()), timeout=10)
        stack.balancer.signal(signal.SIGTERM)
        statuses = await asyncio.gather(*tasks)
    assert statuses == [200] * 10
    assert stack.balancer.wait(10) == 0


def _lb_line(txt: str) -> str:
    return next(line for line in txt.splitlines() if line.startswith("Balancer Worker:")) + " "
