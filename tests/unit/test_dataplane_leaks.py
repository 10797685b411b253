"""What the data plane must not keep once a request is over (issue 11 item 6).

Every check counts live objects of one type after many requests: on the old code a
module-level parser-stop exception, raised again and again, chained every traceback onto
itself and kept every frame — with it every upstream and client connection it went through.
"""

from __future__ import annotations

import asyncio
import gc
import time

from balancer.config.model import LbConfig, MemberConfig
from balancer.dataplane import ProxyTo
from balancer.dataplane.downstream import ClientConnection
from balancer.dataplane.upstream import UpstreamConnection
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from tests.unit.test_dataplane_support import Backend, Proxy, get, ok, uvloop_test

H = b"Host: example.test\r\n"


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def always_503(conn: object, req: object) -> bytes:
    return ok(b"down", status=503)


def members(*ports: int, fail_on_status: tuple[int, ...]) -> list[MemberConfig]:
    return [
        MemberConfig(
            name=f"n{i}",
            type="http",
            host="127.0.0.1",
            port=port,
            retry_interval=1,
            fail_on_status=fail_on_status,
        )
        for i, port in enumerate(ports, 1)
    ]


async def _drive_fail_on_status(codes: tuple[int, ...]) -> tuple[int, int]:
    async with Backend(always_503) as a, Backend(always_503) as b:
        a.keep_bodies = b.keep_bodies = False
        cfgs = members(a.port, b.port, fail_on_status=codes)
        engine = LbEngine(
            LbConfig(name="lb", balance_workers=("n1", "n2"), retry_interval=1),
            cfgs,
            60,
            time.monotonic(),
        )
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            proxy.server.access_log = None
            client = await proxy.connect()
            statuses = set()
            for _ in range(60):
                client.send(get("/x"))
                statuses.add((await client.response()).status)
                for m in engine.members:  # hard fail_on_status puts members in ERR
                    m.state = State.OK
            client.close()
            return len(statuses), live(UpstreamConnection)


@uvloop_test
async def test_soft_fail_on_status_responses_leave_no_upstream_connection_behind() -> None:
    kinds, left = await _drive_fail_on_status((-503,))
    # each request tried both members twice: ~240 discarded connections on the old code
    assert kinds == 1
    assert left <= 4


@uvloop_test
async def test_hard_fail_on_status_responses_leave_no_upstream_connection_behind() -> None:
    _, left = await _drive_fail_on_status((503,))
    assert left <= 4


@uvloop_test
async def test_closing_and_refused_requests_leave_no_client_connection_behind() -> None:
    async with Backend() as a:
        a.keep_bodies = False
        engine = LbEngine(
            LbConfig(name="lb", balance_workers=("n1",)),
            members(a.port, fail_on_status=()),
            60,
            time.monotonic(),
        )
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            proxy.server.access_log = None
            for i in range(40):
                # Connection: close stops the parser after the head; a bad one is refused
                raw = (
                    b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
                    if i % 2
                    else b"GET / HTTP/1.1\r\n" + H + b"Host: twice\r\n\r\n"
                )
                resp = await proxy.request(raw)
                assert resp.status == (200 if i % 2 else 400)
            left = live(ClientConnection)
    assert left <= 2


@uvloop_test
async def test_a_closed_client_connection_is_freed_without_the_cyclic_collector() -> None:
    # llhttp's parser holds bound methods of its connection: a reference cycle per connection
    # that only the cyclic collector freed, ~9 objects per Connection: close request, and its
    # passes (up to 33 ms for the oldest generation) landed in the close scenario's tail.
    async with Backend() as a:
        a.keep_bodies = False
        engine = LbEngine(
            LbConfig(name="lb", balance_workers=("n1",)),
            members(a.port, fail_on_status=()),
            60,
            time.monotonic(),
        )
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            proxy.server.access_log = None
            gc.collect()
            gc.disable()
            try:
                for _ in range(20):
                    raw = b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
                    assert (await proxy.request(raw)).status == 200
                deadline = time.monotonic() + 5
                while proxy.server.connections and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)  # connection_lost runs in a later loop pass
                await asyncio.sleep(0)
                left = sum(1 for o in gc.get_objects() if type(o) is ClientConnection)
                wheel = proxy.server.wheel
                assert wheel is not None
                # the deadline wheel lets go of a closed connection (not at its deadline)
                in_wheel = sum(len(bucket) for bucket in wheel.slots.values())
            finally:
                gc.enable()
    assert not proxy.server.connections
    assert left == 0
    assert in_wheel == 0
