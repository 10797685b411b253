"""The data plane driven by the real lb engine (balancer.lb.LbEngine), over loopback."""

from __future__ import annotations

import time

from balancer.config.model import LbConfig, MemberConfig
from balancer.dataplane import ProxyTo
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from tests.unit.test_dataplane_support import Backend, Proxy, dead_port, get, uvloop_test


def http_member(name: str, port: int) -> MemberConfig:
    return MemberConfig(name=name, type="http", host="127.0.0.1", port=port, retry_interval=10)


def lb_engine(*members: MemberConfig, **lb: object) -> LbEngine:
    config = LbConfig(name="lb", balance_workers=tuple(m.name for m in members), **lb)  # type: ignore[arg-type]
    return LbEngine(config, members, 60, time.monotonic())


@uvloop_test
async def test_a_session_sticks_to_the_member_named_by_its_route() -> None:
    async with Backend() as n1, Backend() as n2:
        engine = lb_engine(http_member("n1", n1.port), http_member("n2", n2.port))
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            for _ in range(4):
                resp = await proxy.request(get("/app", extra=b"Cookie: JSESSIONID=abc.n2\r\n"))
                assert resp.status == 200
    assert len(n2.requests) == 4 and n1.requests == []


@uvloop_test
async def test_a_dead_member_is_failed_over_and_marked_in_error() -> None:
    async with Backend() as n2:
        engine = lb_engine(
            http_member("n1", dead_port()), http_member("n2", n2.port), set_session_cookie=True
        )
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            engine.pool_has_room = proxy.server.pool_has_room
            resp = await proxy.request(get("/app", extra=b"Cookie: JSESSIONID=abc.n1\r\n"))
    assert resp.status == 200
    assert resp.all("set-cookie") == [b"JSESSIONID=.n2;PATH=/;HttpOnly"]
    assert engine.member("n1").state is State.ERR
    assert engine.member("n2").state is State.OK
    assert engine.busy == 0


@uvloop_test
async def test_everything_down_gives_503_after_the_engines_tries() -> None:
    engine = lb_engine(http_member("n1", dead_port()), http_member("n2", dead_port()))
    async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
        resp = await proxy.request(get("/"))
    assert resp.status == 503
    assert engine.busy == 0
    assert all(m.busy == 0 for m in engine.members)
