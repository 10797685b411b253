"""ajp13 members that misbehave: malformed or oversized packets give 502 and never break the
balancer; a container that stops mid-response breaks that request only; timeouts; large bodies
both ways in bounded memory; the real lb engine over AJP (sticky, failover, fail_on_status)."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest

from balancer.ajp import ForwardRequest
from balancer.ajp.reply import encode_body_chunk, encode_send_headers
from balancer.config.model import LbConfig, MemberConfig
from balancer.dataplane import Limits, ProxyTo
from balancer.lb.decisions import OutcomeKind
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from tests.unit.test_ajp_support import Container, Talk, ajp_member, ajp_proxied, echo
from tests.unit.test_dataplane_support import (
    FakeEngine,
    Proxy,
    dead_port,
    eventually,
    get,
    uvloop_test,
)

H = b"Host: example.test\r\n"

MALFORMED = {
    "wrong magic": b"XY\x00\x01\x09",
    "packet over max_packet_size": b"AB\xff\xf0" + b"\x03" * 100,
    "unknown message type": b"AB\x00\x01\x42",
    "forward request from the container": b"AB\x00\x01\x02",
    "headers cut short": b"AB\x00\x05\x04\x00\xc8\x00\x09",
    "string without NUL": b"AB\x00\x0a\x04\x00\xc8\x00\x02OKX\x00\x00",
    "unknown response header code": encode_send_headers(200, b"OK", [])[:-2]
    + b"\x00\x01\xa0\x42\x00\x01x\x00",
    "status 0": encode_send_headers(0, b"", []),
    "status 101": encode_send_headers(101, b"", [(b"Upgrade", b"websocket")]),
    "CR LF in a header value": encode_send_headers(200, b"OK", [(b"X-A", b"a\r\nSet-Cookie: x=1")]),
    "header name not a token": encode_send_headers(200, b"OK", [(b"X A", b"1")]),
    "control byte in the reason": encode_send_headers(200, b"O\nK", []),
    "two different Content-Lengths": encode_send_headers(
        200, b"OK", [(b"Content-Length", b"5"), (b"Content-Length", b"6")]
    ),
    "Content-Length not a number": encode_send_headers(200, b"OK", [(b"Content-Length", b"5x")]),
    "body before headers": encode_body_chunk(b"hello"),
    "end before headers": b"AB\x00\x02\x05\x01",
    "CPong in a response": b"AB\x00\x01\x09",
    "zero-length body request": b"AB\x00\x03\x06\x00\x00",
    "body chunk length past its packet": b"AB\x00\x05\x03\x00\x09ab",
}


@pytest.mark.parametrize("name", list(MALFORMED))
@uvloop_test
async def test_a_malformed_reply_gives_502_and_the_balancer_keeps_serving(name: str) -> None:
    bad = MALFORMED[name]

    async def script(talk: Talk, req: ForwardRequest) -> None:
        if req.uri == b"/bad":
            talk.send(bad)
        else:
            talk.respond(b"fine")

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(get("/bad"))
        engine = proxy.engine
        outcomes = engine.last.outcomes
        after = await proxy.request(get("/good"))
    assert resp.status == 502, name
    assert [o.kind for o in outcomes] == [OutcomeKind.BAD_RESPONSE]
    assert outcomes[0].reason.startswith("bad-response: ")
    assert after.status == 200 and after.body == b"fine"


@pytest.mark.parametrize(
    "bad",
    [b"garbage!", b"AB\x00\x02\x05\x07", b"AB\x00\x05\x03\x00\x09ab", b"AB\xff\xff"],
    ids=["garbage", "bad reuse flag", "chunk length past its packet", "oversized"],
)
@uvloop_test
async def test_a_malformed_packet_after_the_head_cuts_that_response_off_only(bad: bytes) -> None:
    head_seen = asyncio.Event()

    async def script(talk: Talk, req: ForwardRequest) -> None:
        if req.uri == b"/bad":
            talk.headers(200, [(b"Content-Length", b"100")])
            talk.chunk(b"x" * 10)
            await head_seen.wait()
            talk.send(bad)
        else:
            talk.respond(b"fine")

    async with ajp_proxied(script) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/bad"))
        assert (await client.reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        head_seen.set()
        await client.reader.readuntil(b"\r\n\r\n")
        with pytest.raises(asyncio.IncompleteReadError):
            await client.reader.readexactly(100)
        client.close()
        outcome = proxy.engine.last.outcomes[0]
        assert (await proxy.request(get("/good"))).body == b"fine"
    assert outcome.kind is OutcomeKind.READ_FAILED and outcome.response_started


@uvloop_test
async def test_a_container_that_stops_mid_response_breaks_that_request_only() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        if req.uri == b"/die":
            talk.headers(200, [(b"Content-Length", b"100000")])
            talk.chunk(b"y" * 20000)
            await talk.drain()
            talk.conn.abort()
        else:
            talk.respond(b"alive")

    async with ajp_proxied(script) as (_, proxy):
        other = await proxy.connect()  # a second client, busy meanwhile
        client = await proxy.connect()
        client.send(get("/die"))
        other.send(get("/other"))
        assert (await other.response()).body == b"alive"
        with pytest.raises(asyncio.IncompleteReadError):
            await client.response()
        assert await client.closed()
        kinds = [o.kind for p in proxy.engine.plans for o in p.outcomes]
        assert (await proxy.request(get("/after"))).body == b"alive"
        other.close()
    assert kinds == [OutcomeKind.READ_FAILED]


@uvloop_test
async def test_a_container_that_closes_before_answering_is_a_read_failure() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.conn.abort()

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(get("/"))
        (outcome,) = proxy.engine.last.outcomes
    assert resp.status == 502
    assert outcome.kind is OutcomeKind.READ_FAILED and outcome.request_sent


@uvloop_test
async def test_a_short_body_then_end_response_cuts_the_client_off() -> None:
    head_seen = asyncio.Event()

    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", b"10")])
        talk.chunk(b"abc")
        await head_seen.wait()
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        assert (await client.reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        head_seen.set()
        await client.reader.readuntil(b"\r\n\r\n")
        with pytest.raises(asyncio.IncompleteReadError):
            await client.reader.readexactly(10)
        (outcome,) = proxy.engine.last.outcomes
        client.close()
    assert outcome.kind is OutcomeKind.READ_FAILED and outcome.response_started


@uvloop_test
async def test_more_body_than_content_length_cuts_the_client_off() -> None:
    head_seen = asyncio.Event()

    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", b"3")])
        await head_seen.wait()
        talk.chunk(b"abcdef")
        talk.end()

    async with ajp_proxied(script) as (container, proxy):
        client = await proxy.connect()
        client.send(get("/") + get("/second"))
        head = await client.reader.readuntil(b"\r\n\r\n")
        head_seen.set()
        body = await client.rest()  # never more than the announced 3 bytes, then closed
        client.close()
        (outcome,) = proxy.engine.last.outcomes
    assert head.startswith(b"HTTP/1.1 200") and len(body) <= 3 and b"HTTP/1.1" not in body
    assert outcome.kind is OutcomeKind.READ_FAILED
    assert len(container.seen) == 1  # the pipelined request behind it was not served


@pytest.mark.parametrize(
    ("length", "sent"), [(b"10", b"abc"), (b"3", b"abcdef")], ids=["short", "long"]
)
@uvloop_test
async def test_a_wrong_body_in_the_same_read_as_its_head_gives_a_clean_502(
    length: bytes, sent: bytes
) -> None:
    # nothing of it had gone to the client when the read turned out bad (as HAProxy answers)
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", length)])
        talk.chunk(sent)
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        resp = await client.response()
        client.close()
        (outcome,) = proxy.engine.last.outcomes
    assert resp.status == 502 and sent not in resp.body
    assert not outcome.response_started


@uvloop_test
async def test_a_silent_container_gives_a_reply_timeout() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        await asyncio.sleep(10)

    async with ajp_proxied(script, engine={"reply_timeout_ms": 150}) as (_, proxy):
        started = time.monotonic()
        resp = await proxy.request(get("/"))
        took = time.monotonic() - started
        (outcome,) = proxy.engine.last.outcomes
    assert resp.status == 504 and outcome.kind is OutcomeKind.REPLY_TIMEOUT
    assert 0.1 < took < 2


@uvloop_test
async def test_the_reply_timeout_does_not_run_while_the_client_is_slow_with_its_body() -> None:
    async with ajp_proxied(engine={"reply_timeout_ms": 150}) as (_, proxy):
        client = await proxy.connect()
        client.send(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nabc")
        await asyncio.sleep(0.4)  # the container waits for us, we wait for the client
        client.send(b"def")
        resp = await client.response()
        client.close()
    assert resp.status == 200 and resp.body == b"abcdef"


@uvloop_test
async def test_fail_on_status_throws_the_ajp_response_away_and_tries_the_next_member() -> None:
    async def not_found(talk: Talk, req: ForwardRequest) -> None:
        talk.respond(b"nope", status=404)

    async with Container(not_found) as first, Container() as second:
        engine = FakeEngine(
            [ajp_member("t1", first.port), ajp_member("t2", second.port)], fail_on_status=(404,)
        )
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/x"))
    assert resp.status == 200 and resp.body == b"/x"
    assert [e[0] for e in engine.last.events] == ["forward", "head", "forward", "head", "finish"]


# --- big bodies ------------------------------------------------------------------------------

BIG = 24 * 1024 * 1024
PIECE = 64 * 1024


@uvloop_test
async def test_a_large_upload_streams_to_the_container_in_bounded_memory() -> None:
    async def count(talk: Talk, req: ForwardRequest) -> None:
        n = 0
        left = int(talk.header("content-length") or 0)
        first = True
        while left > 0:
            data = (await talk.conn.next_packet())[2:] if first else await talk.one_chunk()
            first = False
            n += len(data)
            left -= len(data)
        talk.respond(b"%d" % n)

    async with ajp_proxied(count, limits=Limits(max_body_size=0)) as (container, proxy):
        container.record = False
        client = await proxy.connect()
        tracemalloc.start()
        try:
            client.send(b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % BIG)
            piece = b"u" * PIECE
            for _ in range(BIG // PIECE):
                client.send(piece)
                await client.writer.drain()
            resp = await client.response(timeout=60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        client.close()
    assert resp.body == b"%d" % BIG
    assert peak < 8 * 1024 * 1024, peak  # about 1.5 MiB measured


@uvloop_test
async def test_a_large_download_streams_to_the_client_in_bounded_memory() -> None:
    async def stream(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", b"%d" % BIG)])
        piece = b"d" * 8184
        sent = 0
        while sent < BIG:
            await talk.drain()
            n = min(len(piece), BIG - sent)
            talk.chunk(piece[:n])
            sent += n
        talk.end()

    async with ajp_proxied(stream) as (container, proxy):
        container.record = False
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=PIECE)
        tracemalloc.start()
        try:
            writer.write(get("/big"))
            head = await reader.readuntil(b"\r\n\r\n")
            got = 0
            while got < BIG:
                data = await reader.read(PIECE)
                assert data
                got += len(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        writer.close()
    assert b"Content-Length: %d" % BIG in head and got == BIG
    assert peak < 8 * 1024 * 1024, peak  # about 1.5 MiB measured


# --- the real engine ------------------------------------------------------------------------


def ajp_cfg(name: str, port: int, **kw: object) -> MemberConfig:
    return MemberConfig(
        name=name,
        type="ajp13",
        host="127.0.0.1",
        port=port,
        retry_interval=10,
        **kw,  # type: ignore[arg-type]
    )


def lb_engine(*members: MemberConfig, **lb: object) -> LbEngine:
    config = LbConfig(name="lb", balance_workers=tuple(m.name for m in members), **lb)  # type: ignore[arg-type]
    return LbEngine(config, members, 60, time.monotonic())


@uvloop_test
async def test_the_engine_routes_sticky_sessions_to_ajp_members_by_route() -> None:
    async with Container() as n1, Container() as n2:
        engine = lb_engine(ajp_cfg("n1", n1.port), ajp_cfg("n2", n2.port))
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            for _ in range(4):
                resp = await proxy.request(get("/app", extra=b"Cookie: JSESSIONID=abc.n2\r\n"))
                assert resp.status == 200
    assert len(n2.seen) == 4 and n1.seen == []
    assert {s.request.route for s in n2.seen} == {b"n2"}
    assert {s.attribute("JK_LB_ACTIVATION") for s in n2.seen} == {b"ACT"}


@uvloop_test
async def test_the_engine_fails_over_from_a_dead_ajp_member_and_marks_it() -> None:
    async with Container() as n2:
        engine = lb_engine(
            ajp_cfg("n1", dead_port()), ajp_cfg("n2", n2.port), set_session_cookie=True
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
async def test_the_engine_fails_over_when_a_cping_goes_unanswered() -> None:
    async with Container(echo, answer_cping=False) as n1, Container() as n2:
        engine = lb_engine(
            ajp_cfg("n1", n1.port, ping_mode="P", prepost_timeout=100),
            ajp_cfg("n2", n2.port, ping_mode="P", prepost_timeout=100),
        )
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            resp = await proxy.request(
                b"POST /app HTTP/1.1\r\n" + H + b"Cookie: JSESSIONID=abc.n1\r\n"
                b"Content-Length: 4\r\n\r\nbody"
            )
            await eventually(lambda: engine.busy == 0)
    assert resp.status == 200 and resp.body == b"body"
    assert n1.seen == [] and n1.cpings >= 1  # the POST never went to n1
    assert engine.member("n1").state is State.ERR
    assert "cping" in engine.member("n1").last_error_reason


class _ClosesOnFirstBytes(asyncio.Protocol):
    """Accepts, reads whatever comes first (request head, CPing), closes without a byte."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.counts[0] += 1

    def data_received(self, data: bytes) -> None:
        self.transport.close()


async def _accept_and_close(kind: str, **settings: object) -> list[tuple[object, ...]]:
    loop = asyncio.get_running_loop()
    counts = [[0], [0]]
    servers = [
        await loop.create_server(lambda c=c: _ClosesOnFirstBytes(c), "127.0.0.1", 0) for c in counts
    ]
    cfgs = [
        MemberConfig(
            name=f"n{i}",
            type=kind,
            host="127.0.0.1",
            port=s.sockets[0].getsockname()[1],
            retry_interval=5,
            **settings,  # type: ignore[arg-type]
        )
        for i, s in enumerate(servers, 1)
    ]
    engine = lb_engine(*cfgs, retry_interval=5)
    seen: list[tuple[object, ...]] = []
    try:
        async with Proxy(router=lambda req: ProxyTo(engine, name="lb")) as proxy:
            for _ in range(2):
                resp = await proxy.request(get("/app"))
                seen.append(
                    (
                        resp.status,
                        [c[0] for c in counts],
                        [(m.state, m.errors) for m in engine.members],
                    )
                )
    finally:
        for s in servers:
            s.close()
    return seen


# ping_mode A in workers.properties sets connect_timeout and prepost_timeout (config/build.py)
@pytest.mark.parametrize("settings", [{}, {"connect_timeout": 500, "prepost_timeout": 500}])
@uvloop_test
async def test_ajp_members_that_accept_and_close_fail_as_http_members_do(
    settings: dict[str, object],
) -> None:
    # mod_jk (modjk.md §9 item 2): the first request gets 502 (the last member failure was a
    # read), 4 connections per member; the second 503 with 2 more; every member ERR
    http = await _accept_and_close("http")
    ajp = await _accept_and_close("ajp13", **settings)
    assert ajp == http
    first, second = ajp
    assert first == (502, [4, 4], [(State.ERR, 2), (State.ERR, 2)])
    assert second[:2] == (503, [6, 6])
