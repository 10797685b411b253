"""The plan loop carried out: failover, what is never replayed, timeouts, pools.

The fake engine (test_dataplane_support.FakeEngine) tries its members in order, one Forward
each, and refuses to re-send what the backend may have received unless the method is
idempotent — the contract the real engine keeps. Every test checks that each Forward was
closed exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from balancer.dataplane import ProxyTo
from balancer.lb.decisions import Fail, Forward, Outcome, OutcomeKind, RequestFacts, Wait
from tests.unit.test_dataplane_support import (
    Backend,
    BackendConn,
    BackendRequest,
    FakeEngine,
    FakePlan,
    Proxy,
    dead_port,
    eventually,
    get,
    member,
    ok,
    uvloop_test,
)

H = b"Host: example.test\r\n"


def dies(conn: BackendConn, req: BackendRequest) -> None:
    conn.abort()  # read the whole request, then vanish without a byte


def kinds(plan: FakePlan) -> list[tuple[str, OutcomeKind]]:
    return [(e[1], e[2].kind) for e in plan.events if e[0] == "report"]


@uvloop_test
async def test_a_get_whose_member_dies_before_answering_is_served_by_the_next_member() -> None:
    async with Backend(dies) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/page"))
    assert (resp.status, resp.body) == (200, b"/page")
    plan = engine.last
    (outcome,) = plan.outcomes
    assert outcome.kind is OutcomeKind.READ_FAILED
    assert outcome.request_sent and outcome.replayable and not outcome.response_started
    assert plan.events[-1] == ("finish", "b")
    assert plan.balanced
    # one request, one id, whichever member sees it
    assert a.requests[0].header("x-pyjk-request-id") == b.requests[0].header("x-pyjk-request-id")


@uvloop_test
async def test_a_post_that_was_sent_is_not_replayed_on_another_member() -> None:
    async with Backend(dies) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(
                b"POST /order HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nitems"
            )
    assert resp.status == 502
    assert [r.body for r in a.requests] == [b"items"]
    assert b.requests == [] and b.connections == 0
    (outcome,) = engine.last.outcomes
    assert outcome.request_sent and outcome.kind is OutcomeKind.READ_FAILED
    assert engine.last.balanced


@uvloop_test
async def test_a_post_that_could_not_connect_goes_to_the_next_member_with_its_body() -> None:
    body = b"p" * (200 * 1024)  # more than the replay buffer: still unsent, so still whole
    async with Backend() as b:
        engine = FakeEngine([member("a", dead_port()), member("b", b.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(
                b"POST /order HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
    assert resp.status == 200 and resp.body == body
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.CONNECT_FAILED
    assert not outcome.request_sent
    assert outcome.reason == "connect-refused"
    assert engine.last.balanced


@uvloop_test
async def test_a_body_larger_than_the_replay_buffer_is_not_replayable_once_sent() -> None:
    body = b"q" * (200 * 1024)
    async with Backend(dies) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(
                b"PUT /doc HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
    assert resp.status == 502
    (outcome,) = engine.last.outcomes
    assert outcome.request_sent and not outcome.replayable
    assert b.requests == []


@uvloop_test
async def test_a_response_that_started_is_never_retried_and_is_cut_off() -> None:
    def half(conn: BackendConn, req: BackendRequest) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        conn.abort()

    async with Backend(half) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            client.send(get("/"))
            head = await client.reader.readuntil(b"\r\n\r\n")
            rest = await client.rest()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest == b"only ten b"  # the client sees a short body and a closed connection
    (outcome,) = engine.last.outcomes
    assert outcome.response_started and outcome.kind is OutcomeKind.READ_FAILED
    assert b.requests == []
    assert engine.last.balanced


@uvloop_test
async def test_an_unsent_103_before_a_broken_response_lets_the_next_member_answer() -> None:
    def broken(conn: BackendConn, req: BackendRequest) -> bytes:
        return (
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nX-From: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n"
        )

    async with Backend(broken) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            client.send(get("/page"))
            resp = await client.response()  # the first response: no 103, no cut 200 from a
            client.close()
    assert (resp.status, resp.body, resp.header("x-from")) == (200, b"/page", None)
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.BAD_RESPONSE and not outcome.response_started
    assert engine.last.balanced


@uvloop_test
async def test_a_request_failed_over_reaches_the_next_member_with_the_same_head() -> None:
    # every try builds the head's parts again and joins them with its own fields (upstream.py)
    def drop(conn: BackendConn, req: BackendRequest) -> None:
        conn.abort()

    extra = b"X-One: 1\r\nCookie: a=b\r\n"
    async with Backend(drop) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/x?y=1", extra=extra))
    assert resp.status == 200
    (first,), (second,) = a.requests, b.requests
    assert (first.method, first.url) == (second.method, second.url) == (b"GET", b"/x?y=1")
    assert first.headers == second.headers
    assert second.header("x-one") == b"1" and second.header("x-pyjk-request-id")


@uvloop_test
async def test_no_byte_within_the_reply_timeout_is_a_reply_timeout_and_fails_over() -> None:
    async with Backend(lambda c, r: None) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)], reply_timeout_ms=150)
        async with Proxy(engine) as proxy:
            loop = asyncio.get_running_loop()
            started = loop.time()
            resp = await proxy.request(get("/slow"))
            elapsed = loop.time() - started
    assert resp.status == 200
    assert kinds(engine.last) == [("a", OutcomeKind.REPLY_TIMEOUT)]
    assert 0.14 < elapsed < 2.0
    assert engine.last.balanced


@uvloop_test
async def test_a_reply_timeout_on_the_only_member_gives_504() -> None:
    async with Backend(lambda c, r: None) as a:
        engine = FakeEngine([member("a", a.port)], reply_timeout_ms=100)
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/slow"))
    assert resp.status == 504


@uvloop_test
async def test_a_gap_between_reads_longer_than_the_reply_timeout_breaks_the_response() -> None:
    async def trickle(conn: BackendConn) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await asyncio.sleep(0.5)
        conn.write(b"cd")

    def responder(conn: BackendConn, req: BackendRequest) -> None:
        asyncio.get_running_loop().create_task(trickle(conn))

    async with Backend(responder) as a:
        engine = FakeEngine([member("a", a.port)], reply_timeout_ms=150)
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            client.send(get("/"))
            await client.reader.readuntil(b"\r\n\r\n")
            assert await client.rest() == b"ab"
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.REPLY_TIMEOUT and outcome.response_started


@uvloop_test
async def test_a_fail_on_status_response_is_discarded_and_the_next_member_answers() -> None:
    async with Backend(lambda c, r: ok(b"down", status=503)) as a, Backend() as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)], fail_on_status=(503,))
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/"))
            pool_a = proxy.server.pools[("a", "127.0.0.1", a.port)]
    assert (resp.status, resp.body) == (200, b"/")
    assert engine.last.events[:3] == [("forward", "a"), ("head", "a", 503), ("forward", "b")]
    assert pool_a.idle_connections() == []  # the discarded response went with its connection
    assert engine.last.balanced


@uvloop_test
async def test_a_members_refusal_header_on_a_503_reaches_the_plan() -> None:
    full = ok(b"full", status=503, headers=(b"x-pyjk-refusal: sessions-full",))
    async with Backend(lambda c, r: full) as a, Backend(lambda c, r: ok(b"no", status=503)) as b:
        engine = FakeEngine([member("a", a.port), member("b", b.port)], fail_on_status=(503,))
        async with Proxy(engine) as proxy:
            await proxy.request(get("/"))
    refusals = [e for e in engine.last.events if e[0] == "refusal"]
    assert refusals == [("refusal", "a", "sessions-full")]  # b's plain 503 names nothing


@uvloop_test
async def test_a_fail_on_status_response_on_the_last_member_gives_503() -> None:
    async with Backend(lambda c, r: ok(b"oops", status=500)) as a:
        engine = FakeEngine([member("a", a.port)], fail_on_status=(500,))
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/"))
    assert resp.status == 503 and b"oops" not in resp.body


@uvloop_test
async def test_an_exhausted_pool_makes_the_request_busy_after_the_acquire_timeout() -> None:
    release = asyncio.Event()

    async def held(req: BackendRequest) -> bytes:
        await release.wait()
        return ok(b"first")

    async with Backend(lambda c, r: held(r)) as a:
        engine = FakeEngine(
            [member("a", a.port, connection_pool_size=1, connection_acquire_timeout=100)]
        )
        async with Proxy(engine) as proxy:
            first = asyncio.ensure_future(proxy.request(get("/1")))
            await eventually(lambda: len(a.requests) == 1)
            second = await proxy.request(get("/2"))
            release.set()
            assert (await first).body == b"first"
    assert second.status == 503
    busy_plan = engine.plans[1]
    assert kinds(busy_plan) == [("a", OutcomeKind.BUSY)]
    assert not busy_plan.outcomes[0].request_sent
    assert busy_plan.balanced


@uvloop_test
async def test_a_waiting_request_gets_the_connection_released_by_another() -> None:
    release = asyncio.Event()

    async def first_waits(req: BackendRequest) -> bytes:
        if req.url == b"/1":
            await release.wait()
        return ok(req.url)

    async with Backend(lambda c, r: first_waits(r)) as a:
        engine = FakeEngine(
            [member("a", a.port, connection_pool_size=1, connection_acquire_timeout=5000)]
        )
        async with Proxy(engine) as proxy:
            first = asyncio.ensure_future(proxy.request(get("/1")))
            await eventually(lambda: len(a.requests) == 1)
            second = asyncio.ensure_future(proxy.request(get("/2")))
            await eventually(lambda: len(engine.plans) == 2)
            release.set()
            assert (await first).body == b"/1"
            assert (await second).body == b"/2"
    assert a.connections == 1


def stale_after_first(conn: BackendConn, req: BackendRequest) -> bytes | None:
    # answers the first request of each connection; the second one finds it "closed"
    served = getattr(conn, "served", 0)
    conn.served = served + 1  # type: ignore[attr-defined]
    if served:
        conn.abort()
        return None
    return ok(req.url)


@uvloop_test
async def test_a_stale_pooled_connection_is_retried_once_on_a_fresh_one_for_a_get() -> None:
    async with Backend(stale_after_first) as a:
        engine = FakeEngine([member("a", a.port)])
        async with Proxy(engine) as proxy:
            assert (await proxy.request(get("/1"))).body == b"/1"
            second = await proxy.request(get("/2"))
    assert second.body == b"/2"
    assert a.connections == 2
    # not a member failure: the engine saw one clean try
    assert engine.last.events == [("forward", "a"), ("head", "a", 200), ("finish", "a")]


@uvloop_test
async def test_a_stale_pooled_connection_is_not_retried_behind_the_engines_back_for_a_post() -> (
    None
):
    async with Backend(stale_after_first) as a:
        engine = FakeEngine([member("a", a.port)])
        async with Proxy(engine) as proxy:
            assert (await proxy.request(get("/1"))).status == 200
            resp = await proxy.request(b"POST /2 HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\nx")
    assert resp.status == 502
    assert kinds(engine.last) == [("a", OutcomeKind.READ_FAILED)]


@uvloop_test
async def test_a_client_that_goes_away_is_reported_as_a_client_error() -> None:
    async def slow(req: BackendRequest) -> bytes:
        await asyncio.sleep(0.2)
        return ok(b"late")

    async with Backend(lambda c, r: slow(r)) as a:
        engine = FakeEngine([member("a", a.port)])
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            client.send(get("/"))
            await eventually(lambda: len(a.requests) == 1)
            client.writer.transport.abort()
            await eventually(
                lambda: bool(engine.plans) and engine.last.closed and kinds(engine.last)
            )
            assert (await proxy.request(get("/after"))).status == 200
    assert kinds(engine.plans[0]) == [("a", OutcomeKind.CLIENT_ERROR)]


@uvloop_test
async def test_fail_answers_with_its_status_and_keeps_the_connection() -> None:
    engine = FakeEngine([])
    async with Proxy(engine) as proxy:
        client = await proxy.connect()
        client.send(get("/") + get("/"))
        first = await client.response()
        second = await client.response()
        client.close()
    assert first.status == second.status == 503
    assert first.body == b"503 Service Unavailable\n"
    assert first.header("connection") is None


@uvloop_test
async def test_a_head_request_that_fails_gets_a_bodyless_error() -> None:
    async with Proxy(FakeEngine([])) as proxy:
        resp = await proxy.request(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n", head=True)
        client = await proxy.connect()
        client.send(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n" + get("/"))
        await client.response(head=True)
        after = await client.response()  # no stray body bytes in between
        client.close()
    assert resp.status == 503
    assert after.status == 503 and after.body == b"503 Service Unavailable\n"


class WaitingPlan:
    """Wait, then one Forward, then Fail: what an engine does between member retries."""

    def __init__(self, m: Any) -> None:
        self.steps: list[Any] = [Wait(0.1), None, Fail(503, "done")]
        self.m = m
        self.log: list[str] = []

    def next(self, now: float) -> Any:
        step = self.steps.pop(0)
        self.log.append(f"next@{now:.3f}")
        if step is None:
            return Forward(self.m, False, None, 0, False, "ACT")
        return step

    def report(self, outcome: Outcome, now: float) -> None:
        self.log.append("report")

    def response_head(
        self, status: int, now: float, *, replayable: bool = True, refusal: str | None = None
    ) -> bool:
        return True

    def finish(self, sent: int, received: int, now: float) -> None:
        self.log.append("finish")


@uvloop_test
async def test_a_wait_step_delays_the_next_try() -> None:
    async with Backend() as a:
        m = member("a", a.port)
        plans: list[WaitingPlan] = []

        class Engine:
            def plan(self, facts: RequestFacts, now: float) -> WaitingPlan:
                plans.append(WaitingPlan(m))
                return plans[-1]

        async with Proxy(router=lambda req: ProxyTo(Engine())) as proxy:
            resp = await proxy.request(get("/"))
    assert resp.status == 200
    first, second = (float(x.split("@")[1]) for x in plans[0].log[:2])
    assert second - first >= 0.09
    assert plans[0].log[-1] == "finish"


@uvloop_test
async def test_an_engine_that_raises_gives_500_not_a_hang() -> None:
    class Broken:
        def plan(self, facts: RequestFacts, now: float) -> Any:
            raise RuntimeError("engine bug")

    async with Proxy(router=lambda req: ProxyTo(Broken())) as proxy:
        resp = await proxy.request(get("/"))
    assert resp.status == 500
    assert b"engine bug" not in resp.body


@uvloop_test
async def test_a_socket_timeout_while_waiting_for_the_response_is_a_read_failure() -> None:
    async with Backend(lambda c, r: None) as a:
        engine = FakeEngine([member("a", a.port, socket_timeout=1)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/"))
    assert resp.status == 502
    (outcome,) = engine.last.outcomes
    assert (outcome.kind, outcome.reason) == (OutcomeKind.READ_FAILED, "socket-timeout")


@uvloop_test
async def test_keep_alive_connections_are_reused_and_idle_ones_closed_after_the_pool_timeout() -> (
    None
):
    async with Backend() as a:
        engine = FakeEngine(
            [member("a", a.port, connection_pool_timeout=1, connection_pool_minsize=0)]
        )
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            for i in range(20):
                client.send(get(f"/{i}"))
                assert (await client.response()).body == b"/%d" % i
            client.close()
            assert a.connections == 1
            await eventually(lambda: not a.open, timeout=4)
            pool = proxy.server.pools[("a", "127.0.0.1", a.port)]
            assert pool.total == 0
