"""HealthMonitor against real loopback servers: members go out and come back without a client
request, reloads keep unchanged checks, stop ends every probe. Waits poll with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from balancer.config.model import LbConfig, MemberConfig
from balancer.health import ProbeSpec
from balancer.health_monitor import HealthMonitor
from balancer.health_probe import ProbeResult
from balancer.lb.engine import HEALTH_FAILED, HEALTH_PASSED, LbEngine, StateChange
from balancer.lb.member import State

DEADLINE = 5.0  # s: generous for a loaded machine; the probes come every 50 ms


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {DEADLINE}s: {what}")
        await asyncio.sleep(0.01)


class Backend:
    """A loopback HTTP server whose answer can be changed; counts the probes it got."""

    def __init__(self) -> None:
        self.status = 200
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


def member(name: str, port: int, interval: int = 50, **kw: object) -> MemberConfig:
    return MemberConfig(
        name, type="http", host="127.0.0.1", port=port, health_check_interval=interval,
        health_check_rise=2, health_check_fall=2, ping_timeout=1000, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def lb(*members: MemberConfig, now: float = 0.0) -> LbEngine:
    config = LbConfig("lb", balance_workers=tuple(m.name for m in members), recover_time=1)
    return LbEngine(config, members, 1, now)


def health_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("health ")]


@pytest.fixture
async def backend():
    b = await Backend().start()
    yield b
    await b.close()


@pytest.fixture
async def monitor():
    m = HealthMonitor()
    yield m
    await m.stop()


def collect(eng: LbEngine, into: list[StateChange]) -> Callable[[], list[StateChange]]:
    def drained() -> list[StateChange]:
        into.extend(eng.drain_changes())
        return into

    return drained


async def test_a_failing_member_goes_out_and_comes_back_without_client_requests(backend, monitor):
    eng = lb(member("n1", backend.port), MemberConfig("n2", type="http", port=1))
    n1 = eng.member("n1")
    changes: list[StateChange] = []
    drained = collect(eng, changes)
    monitor.update({"lb": eng})
    monitor.start()
    await until(lambda: backend.requests >= 3, "three passing probes")
    assert n1.state is State.OK_IDLE and drained() == []

    backend.status = 503
    await until(lambda: n1.state is State.ERR, "n1 out after two 503s")
    assert n1.health_down and n1.last_error_reason == f"{HEALTH_FAILED}: status 503"
    assert [(c.member, c.new, c.reason) for c in drained()] == [("n1", State.ERR, HEALTH_FAILED)]
    down_at = n1.last_error_time
    await until(lambda: n1.last_error_time != down_at, "a failed probe moves the error time")
    assert n1.errors == 1

    backend.status = 200
    await until(lambda: n1.state is State.OK, "n1 back after two passes")
    assert not n1.health_down and n1.last_error_time is None
    assert [(c.new, c.reason) for c in drained()][-1] == (State.OK, HEALTH_PASSED)

    await backend.close()  # the port now refuses connections
    await until(lambda: n1.state is State.ERR, "n1 out once its port is closed")
    assert n1.last_error_reason == f"{HEALTH_FAILED}: connect-refused"


async def test_members_without_health_checks_are_not_probed(backend, monitor):
    eng = lb(member("n1", backend.port), member("n2", backend.port, interval=0))
    monitor.update({"lb": eng})
    monitor.start()
    assert monitor.probed() == [("lb", "n1")]
    assert [t.get_name() for t in health_tasks()] == ["health lb/n1"]


async def test_the_clock_given_is_the_time_the_engine_sees(backend):
    backend.status = 503
    monitor = HealthMonitor(clock=lambda: 1234.5)
    eng = lb(member("n1", backend.port), MemberConfig("n2", type="http", port=1))
    monitor.update({"lb": eng})
    monitor.start()
    try:
        await until(lambda: eng.member("n1").state is State.ERR, "n1 out")
    finally:
        await monitor.stop()
    assert eng.member("n1").last_error_time == 1234.5
    assert [c.at for c in eng.drain_changes()] == [1234.5]


async def test_a_reload_keeps_the_check_of_an_unchanged_member_and_feeds_the_new_engine(
    backend, monitor
):
    configs = [member("n1", backend.port), member("n2", backend.port)]
    old = lb(*configs)
    monitor.update({"lb": old})
    monitor.start()
    await until(lambda: backend.requests >= 2, "probes running")
    kept = monitor.tracker("lb", "n1")

    changed = [configs[0], member("n2", backend.port, interval=60)]
    new = LbEngine.from_previous(old, old.config, changed, 1, 1.0)
    monitor.update({"lb": new})
    assert monitor.tracker("lb", "n1") is kept
    assert monitor.tracker("lb", "n2") is not None
    assert monitor.tracker("lb", "n2") is not kept

    backend.status = 503
    n1 = new.member("n1")
    await until(lambda: n1.state is State.ERR, "n1 out")
    assert [c.member for c in new.drain_changes() if c.member == "n1"] == ["n1"]
    assert old.drain_changes() == []


async def test_a_reload_that_turns_the_check_off_stops_probing(backend, monitor):
    configs = [member("n1", backend.port), member("n2", backend.port)]
    old = lb(*configs)
    monitor.update({"lb": old})
    monitor.start()
    await until(lambda: len(health_tasks()) == 2, "two probe tasks")
    new = LbEngine.from_previous(old, old.config, [configs[0], member("n2", 1, 0)], 1, 1.0)
    monitor.update({"lb": new})
    assert monitor.probed() == [("lb", "n1")] and monitor.tracker("lb", "n2") is None
    await until(lambda: len(health_tasks()) == 1, "the n2 task ended")
    monitor.update({})
    await until(lambda: health_tasks() == [], "every task ended")


async def test_update_before_start_probes_nothing_until_started(backend, monitor):
    monitor.update({"lb": lb(member("n1", backend.port), member("n2", backend.port))})
    assert health_tasks() == []
    monitor.start()
    monitor.start()  # idempotent
    assert len(health_tasks()) == 2


async def test_stop_ends_every_probe(backend):
    monitor = HealthMonitor()
    monitor.update({"lb": lb(member("n1", backend.port), member("n2", backend.port))})
    monitor.start()
    await until(lambda: backend.requests >= 2, "probes running")
    await monitor.stop()
    assert health_tasks() == []


async def test_a_failing_prober_does_not_end_the_checks():
    calls = 0

    async def flaky(spec: ProbeSpec) -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a probe")
        return ProbeResult(False, "status 503", 503)

    monitor = HealthMonitor(prober=flaky)
    eng = lb(member("n1", 1), MemberConfig("n2", type="http", port=1))
    monitor.update({"lb": eng})
    monitor.start()
    try:
        await until(lambda: eng.member("n1").state is State.ERR, "n1 out after the bug")
    finally:
        await monitor.stop()
    assert calls >= 3
