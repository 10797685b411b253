"""ajp13 members on the data plane: what goes to the container, what comes back, reuse, bodies
both ways, CPing. Real sockets on 127.0.0.1: the proxy in front, a fake AJP container behind."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from balancer.ajp import ForwardRequest
from balancer.dataplane import Limits, ProxyTo
from balancer.lb.decisions import OutcomeKind
from tests.unit.test_ajp_support import Container, Talk, ajp_member, ajp_proxied, echo
from tests.unit.test_dataplane_support import FakeEngine, Proxy, eventually, get, uvloop_test

H = b"Host: example.test\r\n"
NO_LIMIT = Limits(max_body_size=0)


# --- the forward request ------------------------------------------------------------------------


@uvloop_test
async def test_a_get_reaches_the_container_with_its_fields_and_attributes() -> None:
    extra = b"Cookie: JSESSIONID=abc.t1\r\nAccept: text/html\r\nX-Custom: yes\r\n"
    async with ajp_proxied(secret="s3cret", engine={"activation": "DIS"}) as (container, proxy):
        resp = await proxy.request(get("/app/x;jsessionid=abc.t1?a=1&b=2", extra=extra))
    assert resp.status == 200
    assert resp.body == b"/app/x;jsessionid=abc.t1?a=1&b=2"
    assert resp.header("x-method") == b"GET"
    (seen,) = container.seen
    req = seen.request
    assert (req.method, req.uri, req.query_string) == (
        b"GET",
        b"/app/x;jsessionid=abc.t1",
        b"a=1&b=2",
    )
    assert req.protocol == b"HTTP/1.1"
    assert req.remote_addr == b"127.0.0.1" and req.remote_host == b"127.0.0.1"
    assert (req.server_name, req.server_port, req.is_ssl) == (b"example.test", 80, False)
    assert seen.header("host") == b"example.test"
    assert seen.header("cookie") == b"JSESSIONID=abc.t1"
    assert seen.header("x-custom") == b"yes"
    assert seen.header("x-forwarded-for") == b"127.0.0.1"
    assert seen.header("x-pyjk-request-id")
    assert req.route == b"t1"
    assert req.secret == b"s3cret"
    assert seen.attribute("JK_LB_ACTIVATION") == b"DIS"
    assert seen.attribute("AJP_REMOTE_PORT") is not None
    assert seen.attribute("AJP_LOCAL_ADDR") == b"127.0.0.1"


@uvloop_test
async def test_without_a_secret_no_secret_attribute_is_sent() -> None:
    async with ajp_proxied() as (container, proxy):
        assert (await proxy.request(get("/"))).status == 200
    assert container.seen[0].request.secret is None
    assert container.seen[0].request.query_string is None


@uvloop_test
async def test_a_directly_mapped_member_gets_no_activation_attribute() -> None:
    # mod_jk sends JK_LB_ACTIVATION for lb members only; a worker mapped by its own name is
    # not one (the router's name is the member's)
    async with Container() as container:
        engine = FakeEngine([ajp_member("t1", container.port)])
        proxy = Proxy(router=lambda req: ProxyTo(engine, name="t1"))
        async with proxy:
            assert (await proxy.request(get("/"))).status == 200
    assert container.seen[0].attribute("JK_LB_ACTIVATION") is None


@uvloop_test
async def test_an_uncommon_method_travels_as_a_stored_method() -> None:
    raw = b"PATCH /p HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi"
    async with ajp_proxied() as (container, proxy):
        resp = await proxy.request(raw)
    assert resp.status == 200 and resp.header("x-method") == b"PATCH"
    assert container.seen[0].body == b"hi"


@uvloop_test
async def test_a_request_too_large_for_the_packet_size_is_answered_431_not_sent() -> None:
    extra = b"X-Big: " + b"x" * 9000 + b"\r\n"
    async with ajp_proxied() as (container, proxy):
        resp = await proxy.request(get("/", extra=extra))
        engine = proxy.engine
    assert resp.status == 431
    assert container.seen == []
    assert [o.kind for o in engine.last.outcomes] == [OutcomeKind.CLIENT_ERROR]


@uvloop_test
async def test_a_larger_max_packet_size_carries_a_larger_head() -> None:
    extra = b"X-Big: " + b"x" * 9000 + b"\r\n"
    async with ajp_proxied(max_packet_size=16384) as (container, proxy):
        resp = await proxy.request(get("/", extra=extra))
    assert resp.status == 200
    assert container.seen[0].header("x-big") == b"x" * 9000


# --- the response -----------------------------------------------------------------------------


@uvloop_test
async def test_coded_and_named_response_headers_reach_the_client() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(
            201,
            [
                (b"Content-Type", b"text/plain"),
                (b"Set-Cookie", b"JSESSIONID=X.t1; Path=/"),
                (b"Set-Cookie", b"b=2"),
                (b"X-Name", b"caf\xe9"),
                (b"Content-Length", b"2"),
            ],
            reason=b"Made",
        )
        talk.chunk(b"ok")
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(get("/"))
    assert (resp.status, resp.reason) == (201, b"Made")
    assert resp.header("content-type") == b"text/plain"
    assert resp.all("set-cookie") == [b"JSESSIONID=X.t1; Path=/", b"b=2"]
    assert resp.header("x-name") == b"caf\xe9"  # ISO-8859-1 bytes relayed as they are
    assert resp.body == b"ok"


@uvloop_test
async def test_a_response_without_content_length_is_chunked_to_the_client() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Type", b"text/plain")])
        for i in range(5):
            talk.chunk(b"part%d;" % i)
            await asyncio.sleep(0)
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(get("/"))
    assert resp.chunked
    assert resp.body == b"part0;part1;part2;part3;part4;"


@uvloop_test
async def test_hop_by_hop_and_framing_fields_from_the_container_are_dropped() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(
            200,
            [
                (b"Transfer-Encoding", b"chunked"),
                (b"Connection", b"X-Private"),
                (b"X-Private", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"X-Kept", b"yes"),
            ],
        )
        talk.chunk(b"abc")
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(get("/"))
    names = {n.lower() for n, _ in resp.headers}
    assert b"x-private" not in names and b"keep-alive" not in names
    assert resp.all("transfer-encoding") == [b"chunked"]  # ours, once
    assert resp.header("x-kept") == b"yes" and resp.body == b"abc"


@uvloop_test
async def test_head_gets_the_head_only() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", b"1234")])
        talk.end()

    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n", head=True)
    assert resp.status == 200 and resp.header("content-length") == b"1234"


@uvloop_test
async def test_interim_1xx_then_the_final_head() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(103, [(b"Link", b"</s.css>; rel=preload")])
        talk.respond(b"done")

    async with ajp_proxied(script) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        early = await client.response()
        final = await client.response()
        client.close()
    assert early.status == 103 and early.header("link") == b"</s.css>; rel=preload"
    assert final.status == 200 and final.body == b"done"


# --- connection reuse ---------------------------------------------------------------------------


@uvloop_test
async def test_end_response_with_reuse_keeps_the_connection_for_the_next_request() -> None:
    async with ajp_proxied() as (container, proxy):
        for i in range(3):
            assert (await proxy.request(get(f"/{i}"))).body == f"/{i}".encode()
    assert container.connections == 1
    assert len(container.seen) == 3


@uvloop_test
async def test_end_response_without_reuse_closes_the_connection() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Length", b"2")])
        talk.chunk(b"ok")
        talk.end(reuse=False)

    async with ajp_proxied(script) as (container, proxy):
        for _ in range(3):
            assert (await proxy.request(get("/"))).body == b"ok"
        await eventually(lambda: not container.open, what="connections closed")
    assert container.connections == 3


@uvloop_test
async def test_a_pooled_connection_the_container_closed_is_replaced_silently() -> None:
    async with ajp_proxied() as (container, proxy):
        assert (await proxy.request(get("/a"))).status == 200
        for conn in list(container.open):
            conn.close()  # e.g. Tomcat's connectionTimeout on an idle AJP connection
        await eventually(lambda: not container.open, what="closed")
        resp = await proxy.request(get("/b"))
        engine = proxy.engine
    assert resp.status == 200 and resp.body == b"/b"
    assert engine.last.outcomes == []  # not reported as a member failure


# --- request bodies -----------------------------------------------------------------------------


@uvloop_test
async def test_a_body_with_a_length_sends_its_first_packet_unasked_then_as_asked() -> None:
    body = bytes(range(256)) * 200  # 51200 bytes: several packets
    raw = b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
    async with ajp_proxied() as (container, proxy):
        resp = await proxy.request(raw)
    assert resp.status == 200 and resp.body == body
    seen = container.seen[0]
    assert seen.header("content-length") == b"%d" % len(body)
    assert seen.packets_before_asking == 1  # mod_jk's unasked first packet, and only that one
    sizes = [len(p) for p in container.packets[1:]]
    assert max(sizes) == 8186 + 2  # data length + data, within max_packet_size - 4


@uvloop_test
async def test_a_streamed_chunked_body_goes_only_as_asked_with_no_length() -> None:
    async with ajp_proxied(limits=NO_LIMIT) as (container, proxy):
        client = await proxy.connect()
        client.send(b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        await eventually(lambda: bool(container.seen), what="forward request")
        for i in range(4):
            client.send(b"%x\r\n%s\r\n" % (3, b"p%02d" % i))
            await asyncio.sleep(0.01)
        client.send(b"0\r\n\r\n")
        resp = await client.response()
        client.close()
    assert resp.body == b"p00p01p02p03"
    seen = container.seen[0]
    assert seen.header("content-length") is None
    assert seen.packets_before_asking == 0


@uvloop_test
async def test_a_chunked_body_read_whole_goes_with_its_length() -> None:
    raw = (
        b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    async with ajp_proxied() as (container, proxy):
        resp = await proxy.request(raw)
    assert resp.body == b"hello"
    assert container.seen[0].header("content-length") == b"5"


@uvloop_test
async def test_a_get_without_a_body_answers_a_body_request_with_the_empty_packet() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        body = await talk.body()  # no length: asks once, gets the empty packet
        talk.respond(b"[%s]" % body)

    async with ajp_proxied(script) as (container, proxy):
        resp = await proxy.request(get("/"))
        resp2 = await proxy.request(get("/again"))
    assert resp.body == b"[]" and resp2.body == b"[]"
    assert container.connections == 1  # still in step: reused


@uvloop_test
async def test_a_body_the_container_never_reads_does_not_spoil_the_connection() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        if req.method == b"POST":
            await talk.conn.next_packet()  # Tomcat swallows the unasked first packet
        talk.respond(b"ignored")

    body = b"z" * 30000
    raw = b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
    async with ajp_proxied(script) as (container, proxy):
        assert (await proxy.request(raw)).body == b"ignored"
        assert (await proxy.request(get("/next"))).body == b"ignored"
    assert [s.request.method for s in container.seen] == [b"POST", b"GET"]


@uvloop_test
async def test_the_container_may_echo_the_body_while_reading_it() -> None:
    async def script(talk: Talk, req: ForwardRequest) -> None:
        talk.headers(200, [(b"Content-Type", b"application/octet-stream")])
        await talk.conn.next_packet()  # the unasked first packet (length known)
        talk.chunk(b"<first>")
        while True:
            data = await talk.one_chunk(1000)
            if not data:
                break
            talk.chunk(data.upper())
        talk.end()

    body = b"abcdefghij" * 1000
    raw = b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
    async with ajp_proxied(script) as (_, proxy):
        resp = await proxy.request(raw)
    assert resp.body.startswith(b"<first>")
    assert resp.body[len(b"<first>") :] == body[8186:].upper()


# --- CPing ---------------------------------------------------------------------------------------


@uvloop_test
async def test_ping_mode_p_sends_a_cping_before_every_request() -> None:
    async with ajp_proxied(ping_mode="P", prepost_timeout=1000) as (container, proxy):
        for _ in range(3):
            assert (await proxy.request(get("/"))).status == 200
    assert container.cpings == 3 and container.connections == 1
    forwards = [i for i, p in enumerate(container.packets) if p[:1] == b"\x02"]
    assert len(forwards) == 3
    assert all(container.packets[i - 1] == b"\x0a" for i in forwards)


@uvloop_test
async def test_ping_mode_c_sends_a_cping_only_on_a_new_connection() -> None:
    async with ajp_proxied(ping_mode="C", connect_timeout=1000) as (container, proxy):
        for _ in range(3):
            assert (await proxy.request(get("/"))).status == 200
    assert container.cpings == 1


@uvloop_test
async def test_an_unanswered_cping_is_a_connect_failure_and_nothing_is_sent() -> None:
    async with Container(echo, answer_cping=False) as silent, Container() as alive:
        engine = FakeEngine(
            [
                ajp_member("t1", silent.port, prepost_timeout=100),
                ajp_member("t2", alive.port, prepost_timeout=100),
            ]
        )
        async with Proxy(engine) as proxy:
            resp = await proxy.request(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\nx")
    assert resp.status == 200 and resp.body == b"x"
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.CONNECT_FAILED and outcome.reason == "cping-timeout"
    assert not outcome.request_sent
    assert silent.cpings == 1 and silent.seen == []  # the POST never reached it


@uvloop_test
async def test_a_pooled_connection_lost_during_its_cping_is_replaced_silently() -> None:
    async with Container(echo, close_reused_on_cping=True) as container:
        engine = FakeEngine([ajp_member("t1", container.port, prepost_timeout=1000)])
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            for path in ("/a", "/b", "/c"):  # one keep-alive client: the pooled connection
                client.send(get(path))  # is reused at once, and dropped at its CPing
                assert (await client.response()).body == path.encode()
            client.close()
    assert all(plan.outcomes == [] for plan in engine.plans)  # no member failure reported
    assert container.connections == 3 and len(container.seen) == 3


@uvloop_test
async def test_a_changed_secret_applies_to_the_next_request_on_a_pooled_connection() -> None:
    async with ajp_proxied(secret="old") as (container, proxy):
        assert (await proxy.request(get("/1"))).status == 200
        member = proxy.engine.members[0]
        member.config = replace(member.config, secret="new")  # what a reload hands the engine
        assert (await proxy.request(get("/2"))).status == 200
    assert [s.request.secret for s in container.seen] == [b"old", b"new"]
    assert container.connections == 1
