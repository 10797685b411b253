"""When a request may be sent again (issue 11 item 1), with the real lb engine over loopback.

The rules (README "Where pyjk differs from mod_jk", docs/operations.md "Retries"):
- once any byte of a request was written to a member, re-sending it — to that member or
  another — follows mod_jk's ``recovery_options`` (1 forbids it; 8/16 allow HEAD/GET anyway)
  and pyjk's idempotency rule (a POST only with 0x80);
- the transparent retry of a stale pooled connection is such a re-send: it is taken only on a
  reused connection, before any response byte, and only when the rules above allow it;
- a member that provably received nothing (connect refused, reset before the first write)
  may always be tried again.

Member ``a`` misbehaves, member ``b`` answers; the session's route sends every request to
``a`` first. Each case checks the status and how many requests each member received.
"""

from __future__ import annotations

import time

import pytest

from balancer.config.model import LbConfig, MemberConfig
from balancer.dataplane import ProxyTo
from balancer.lb.decisions import OutcomeKind
from balancer.lb.engine import LbEngine
from tests.unit.test_ajp_support import Container, Talk
from tests.unit.test_dataplane_support import (
    Backend,
    BackendConn,
    BackendRequest,
    FakeEngine,
    Proxy,
    member,
    ok,
    uvloop_test,
)

H = b"Host: example.test\r\n"
TO_A = b"Cookie: JSESSIONID=s.a\r\n"


def request(method: str) -> bytes:
    if method == "POST":
        return b"POST /r HTTP/1.1\r\n" + H + TO_A + b"Content-Length: 5\r\n\r\norder"
    return b"GET /r HTTP/1.1\r\n" + H + TO_A + b"\r\n"


def engine_for(a_port: int, b_port: int, recovery_options: int, kind: str = "http") -> LbEngine:
    members = [
        MemberConfig(
            name=name,
            type=kind,
            host="127.0.0.1",
            port=port,
            retry_interval=5,
            recovery_options=recovery_options,
        )
        for name, port in (("a", a_port), ("b", b_port))
    ]
    config = LbConfig(name="lb", balance_workers=("a", "b"), retry_interval=5)
    return LbEngine(config, members, 60, time.monotonic())


def closes(conn: BackendConn, req: BackendRequest) -> None:
    conn.close()  # read the whole request, then close without a byte


def stale_after_first(conn: BackendConn, req: BackendRequest) -> bytes | None:
    # answers the first request of each connection and closes on the second, as a backend
    # whose keep-alive timeout ran out just as the pooled connection was reused
    served = getattr(conn, "served", 0)
    conn.served = served + 1  # type: ignore[attr-defined]
    if served:
        conn.close()
        return None
    return ok(b"a")


def answer_b(conn: BackendConn, req: BackendRequest) -> bytes:
    return ok(b"b")


# (method, recovery_options) -> (status, requests a received, requests b received)
CLOSES_WITHOUT_ANSWER = {
    ("GET", 0): (200, 2, 1),  # a's second try (member retries=2), then b
    ("GET", 1): (502, 1, 0),  # sent: recovery_options 1 forbids any re-send
    ("GET", 0x80): (200, 2, 1),
    ("GET", 16): (200, 2, 1),
    ("GET", 17): (200, 2, 1),  # 16 overrides 1 for a GET
    ("POST", 0): (502, 1, 0),  # sent: a POST is never re-sent without 0x80
    ("POST", 1): (502, 1, 0),
    ("POST", 0x80): (200, 2, 1),
    ("POST", 16): (502, 1, 0),  # 16 is for GET only
}


@pytest.mark.parametrize(("method", "options"), sorted(CLOSES_WITHOUT_ANSWER))
@uvloop_test
async def test_a_member_that_closes_without_answering(method: str, options: int) -> None:
    async with Backend(closes) as a, Backend(answer_b) as b:
        engine = engine_for(a.port, b.port, options)
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            resp = await proxy.request(request(method))
    assert (resp.status, len(a.requests), len(b.requests)) == CLOSES_WITHOUT_ANSWER[
        (method, options)
    ]
    assert engine.busy == 0


# after one GET that a answered on a new connection (counted in a's requests)
STALE_POOLED_CONNECTION = {
    ("GET", 0): (200, 3, 0),  # the transparent retry: a fresh connection to a answers
    ("GET", 1): (502, 2, 0),  # no transparent retry either: the request was written
    ("GET", 0x80): (200, 3, 0),
    ("GET", 16): (200, 3, 0),
    ("POST", 0): (502, 2, 0),
    ("POST", 1): (502, 2, 0),
    ("POST", 0x80): (200, 3, 0),
    ("POST", 16): (502, 2, 0),
}


@pytest.mark.parametrize(("method", "options"), sorted(STALE_POOLED_CONNECTION))
@uvloop_test
async def test_a_pooled_connection_the_member_closes_on_reuse(method: str, options: int) -> None:
    async with Backend(stale_after_first) as a, Backend(answer_b) as b:
        engine = engine_for(a.port, b.port, options)
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            assert (await proxy.request(request("GET"))).body == b"a"
            resp = await proxy.request(request(method))
    assert (resp.status, len(a.requests), len(b.requests)) == STALE_POOLED_CONNECTION[
        (method, options)
    ]
    if resp.status == 200:
        assert resp.body == b"a" and a.connections == 2


@pytest.mark.parametrize(("options", "expected"), [(0, (200, 1)), (1, (502, 0))])
@uvloop_test
async def test_a_stale_retry_that_cannot_connect_does_not_make_the_request_unsent(
    options: int, expected: tuple[int, int]
) -> None:
    # a answers once, then stops listening and closes the pooled connection on reuse: the
    # fresh connection is refused. The request was written to a, so with recovery_options 1
    # it goes nowhere else (the old code reported "not sent" and b answered).
    async with Backend(stale_after_first) as a, Backend(answer_b) as b:
        engine = engine_for(a.port, b.port, options)
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            assert (await proxy.request(request("GET"))).body == b"a"
            assert a.server is not None
            a.server.close()
            await a.server.wait_closed()
            resp = await proxy.request(request("GET"))
    assert (resp.status, len(b.requests)) == expected
    assert len(a.requests) == 2


@uvloop_test
async def test_every_report_after_a_write_says_sent() -> None:
    async with Backend(stale_after_first) as a:
        engine = FakeEngine([member("a", a.port)])
        async with Proxy(engine) as proxy:
            assert (await proxy.request(request("GET"))).status == 200
            assert a.server is not None
            a.server.close()
            await a.server.wait_closed()
            resp = await proxy.request(request("GET"))
    assert resp.status == 503
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.CONNECT_FAILED and outcome.request_sent


@uvloop_test
async def test_a_post_to_a_refused_member_always_goes_to_the_next() -> None:
    from tests.unit.test_dataplane_support import dead_port

    async with Backend(answer_b) as b:
        engine = engine_for(dead_port(), b.port, 1)
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            resp = await proxy.request(request("POST"))
    assert (resp.status, resp.body, len(b.requests)) == (200, b"b", 1)


# --- ajp13 members follow the same rules ------------------------------------------------------


async def ajp_stale_after_first(talk: Talk, req: object) -> None:
    if talk.conn.requests > 1:
        talk.close()
        return
    await talk.body()
    talk.respond(b"a")


async def ajp_answer_b(talk: Talk, req: object) -> None:
    await talk.body()
    talk.respond(b"b")


@pytest.mark.parametrize(("method", "options"), sorted(STALE_POOLED_CONNECTION))
@uvloop_test
async def test_an_ajp_connection_the_container_closes_on_reuse(method: str, options: int) -> None:
    async with Container(ajp_stale_after_first) as a, Container(ajp_answer_b) as b:
        engine = engine_for(a.port, b.port, options, kind="ajp13")
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            assert (await proxy.request(request("GET"))).body == b"a"
            resp = await proxy.request(request(method))
    assert (resp.status, len(a.seen), len(b.seen)) == STALE_POOLED_CONNECTION[(method, options)]
