"""What goes up and what comes back: fields, framing, interim responses, upgrades, streaming."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from balancer.config.model import RuleExtensions
from balancer.dataplane import Limits, LocalHandler, LocalResponse, ProxyTo, http11, http_request
from balancer.dataplane.request_head import PAUSE_HOLD
from balancer.lb.decisions import OutcomeKind
from tests.unit.test_dataplane_support import (
    Backend,
    BackendConn,
    BackendRequest,
    Client,
    FakeEngine,
    Proxy,
    eventually,
    get,
    member,
    ok,
    proxied,
    uvloop_test,
)

H = b"Host: example.test\r\n"


# --- request fields -------------------------------------------------------------------------


@uvloop_test
async def test_hop_by_hop_fields_and_those_named_in_connection_do_not_reach_the_backend() -> None:
    extra = (
        b"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 300\r\n"
        b"TE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic eA==\r\n"
        b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
    )
    async with proxied() as (backend, proxy):
        assert (await proxy.request(get("/", extra=extra))).status == 200
    seen = backend.requests[0]
    names = {n.lower() for n, _ in seen.headers}
    for gone in (
        b"connection",
        b"x-private",
        b"keep-alive",
        b"te",
        b"trailer",
        b"proxy-authorization",
        b"proxy-connection",
        b"upgrade",
    ):
        assert gone not in names
    assert seen.header("x-kept") == b"yes"


@uvloop_test
async def test_many_client_fields_reach_the_backend_whole_and_in_order() -> None:
    # a head of many parts (four a field): compiled, head_bytes.join writes it in C
    fields = [(b"X-Many-%d" % k, b"v%d-" % k * k + b"end") for k in range(12)]
    extra = b"".join(b"%s: %s\r\n" % (name, value) for name, value in fields)
    async with proxied() as (backend, proxy):
        assert (await proxy.request(get("/", extra=extra))).status == 200
    assert [(n, v) for n, v in backend.requests[0].headers if n.startswith(b"X-Many-")] == fields


@uvloop_test
async def test_request_ids_are_the_process_prefix_and_a_count_in_hex() -> None:
    # compiled: the count a C field of the server's base, its digits written in C (hex_id)
    async with proxied() as (backend, proxy):
        for _ in range(17):
            assert (await proxy.request(get("/"))).status == 200
        proxy.server.rid_counter = 2**64 - 2  # the widest count: 16 digits
        assert (await proxy.request(get("/"))).status == 200
        prefix = proxy.server.rid_prefix
    ids = [r.header("x-pyjk-request-id") for r in backend.requests]
    assert len(prefix) == 13 and prefix.endswith(b"-")
    assert ids[:17] == [prefix + b"%x" % k for k in range(1, 18)]  # ... e, f, 10, 11
    assert ids[17] == prefix + b"f" * 16


@uvloop_test
async def test_a_client_cannot_have_forwarded_fields_or_its_cookie_stripped_via_connection() -> (
    None
):
    extra = (
        b"Connection: X-Forwarded-For, Cookie, Host, X-Forwarded-Proto, Authorization\r\n"
        b"Cookie: JSESSIONID=abc.n1\r\nAuthorization: Bearer t\r\n"
    )
    async with proxied() as (backend, proxy):
        assert (await proxy.request(get("/", extra=extra))).status == 200
    seen = backend.requests[0]
    assert seen.header("cookie") == b"JSESSIONID=abc.n1"
    assert seen.header("authorization") == b"Bearer t"
    assert seen.header("x-forwarded-for") == b"127.0.0.1"
    assert seen.header("x-forwarded-proto") == b"http"
    assert seen.header("host") == b"example.test"


@uvloop_test
async def test_forwarded_fields_from_an_untrusted_peer_are_replaced() -> None:
    extra = (
        b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: evil.test\r\nForwarded: for=6.6.6.6\r\n"
    )
    async with proxied() as (backend, proxy):
        assert (await proxy.request(get("/", extra=extra))).status == 200
    seen = backend.requests[0]
    assert seen.all("x-forwarded-for") == [b"127.0.0.1"]
    assert seen.all("x-forwarded-proto") == [b"http"]
    assert seen.all("x-forwarded-host") == [b"example.test"]
    assert seen.all("forwarded") == []


@uvloop_test
async def test_per_connection_fields_kept_per_process_follow_each_host_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Host checks and X-Forwarded-* are kept per process (not redone per connection); the
    # caches are emptied when full, and an invalid Host is refused whatever they hold.
    monkeypatch.setattr(http11, "CACHE_LIMIT", 2)
    monkeypatch.setattr(http_request, "CACHE_LIMIT", 2)
    hosts = [b"a.test", b"b.test", b"c.test", b"a.test", b"a.test:123456"]
    async with proxied() as (backend, proxy):
        statuses = [
            (await proxy.request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")).status
            for host in hosts
        ]
        assert len(proxy.server.valid_hosts) <= 2
        assert len(proxy.server.forwarded_cache) <= 2
    assert statuses == [200, 200, 200, 200, 400]
    assert [r.header("x-forwarded-host") for r in backend.requests] == hosts[:4]


@uvloop_test
async def test_forwarded_fields_follow_the_peer_of_each_new_connection() -> None:
    # the last connection's X-Forwarded-* fields are reused only for the same peer, scheme
    # and Host (ProxyCore.fwd_*): peers taking turns each get their own address
    peers = ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.2"]
    async with proxied() as (backend, proxy):
        for peer in peers:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", proxy.port, local_addr=(peer, 0)
            )
            client = Client(reader, writer)
            client.send(get("/", extra=b"Connection: close\r\n"))
            assert (await client.response()).status == 200
            client.close()
    assert [r.header("x-forwarded-for") for r in backend.requests] == [p.encode() for p in peers]


@uvloop_test
async def test_forwarded_fields_from_a_trusted_proxy_are_kept_and_appended_to() -> None:
    extra = (
        b"X-Forwarded-For: 203.0.113.7, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: shop.test\r\nForwarded: for=203.0.113.7\r\n"
    )
    async with proxied(trusted_proxies=["127.0.0.0/8"]) as (backend, proxy):
        assert (await proxy.request(get("/", extra=extra))).status == 200
    seen = backend.requests[0]
    assert seen.all("x-forwarded-for") == [b"203.0.113.7, 10.0.0.2, 127.0.0.1"]
    assert seen.all("x-forwarded-proto") == [b"https"]
    assert seen.all("x-forwarded-host") == [b"shop.test"]
    assert seen.all("forwarded") == [b"for=203.0.113.7"]


@uvloop_test
async def test_the_balancer_sets_its_own_fields_and_ignores_the_clients() -> None:
    extra = b"X-Pyjk-Activation: ACT\r\nX-Pyjk-Request-Id: forged\r\n"
    async with Backend() as backend:
        engine = FakeEngine([member("a", backend.port)], activation="DIS")
        async with Proxy(engine) as proxy:
            await proxy.request(get("/", extra=extra))
            await proxy.request(get("/"))
    first, second = backend.requests
    assert first.all("x-pyjk-activation") == [b"DIS"]
    ids = first.all("x-pyjk-request-id") + second.all("x-pyjk-request-id")
    assert len(ids) == 2 and b"forged" not in ids and ids[0] != ids[1]


@uvloop_test
async def test_the_forwarded_uri_keeps_jsessionid_and_the_engine_sees_path_and_cookies() -> None:
    target = b"/app;jsessionid=ABC.n1/x?q=1"
    extra = b"Cookie: a=1\r\nCookie: JSESSIONID=DEF.n2\r\n"
    async with Backend() as backend:
        engine = FakeEngine([member("a", backend.port)])
        async with Proxy(engine) as proxy:
            await proxy.request(get(target.decode(), extra=extra))
    assert backend.requests[0].url == target
    facts = engine.last.facts
    assert facts.method == "GET"
    assert facts.uri == b"/app;jsessionid=ABC.n1/x"
    assert list(facts.cookies) == [b"a=1", b"JSESSIONID=DEF.n2"]  # as sent: the lb scans bytes


# --- response checks ------------------------------------------------------------------------

BAD_RESPONSES = {
    "control byte in the reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi",
    "NUL in the reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nhi",
    "LF splitting the reason": b"HTTP/1.1 200 OK\nSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nhi",
    "status 999": b"HTTP/1.1 999 X\r\nContent-Length: 2\r\n\r\nhi",
    "status 000": b"HTTP/1.1 000 X\r\nContent-Length: 2\r\n\r\nhi",
    "HTTP/2.0 status line": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "control byte in a value": b"HTTP/1.1 200 OK\r\nX-A: a\x01\r\nContent-Length: 2\r\n\r\nhi",
    "invalid field name": b"HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 2\r\n\r\nhi",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    "duplicate content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi"
    ),
    "content-length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi",
    # two fields are one list: gzip must not be lost by reading only the last (llhttp takes it)
    "transfer-encoding gzip, then chunked in a second field": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    ),
    "101 nobody asked for": b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "not HTTP at all": b"SSH-2.0-OpenSSH_9.0\r\n",
    "a head that never ends": b"HTTP/1.1 200 OK\r\nX-Endless: " + b"v" * (200 * 1024),
    # chunked bodies broken in the read that brought the head: nothing was relayed yet, so
    # the client gets a clean 502 rather than a started 200 and a cut connection (HAProxy)
    "malformed chunk size with the head": (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n"
    ),
    "a good chunk, then a malformed size, with the head": (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n-1\r\nhi\r\n0\r\n\r\n"
    ),
    "chunk longer than its size with the head": (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi!\r\n0\r\n\r\n"
    ),
    # a 1xx in that read has not left either: no 103, then a 200 cut off (a 103 relayed was)
    "a 103, then a malformed chunk size with the head": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
@uvloop_test
async def test_an_invalid_backend_response_becomes_502_and_is_never_relayed(case: str) -> None:
    raw = BAD_RESPONSES[case]
    async with Backend(lambda c, r: raw) as backend:
        engine = FakeEngine([member("a", backend.port)])
        async with Proxy(engine) as proxy:
            resp = await proxy.request(get("/"))
    assert resp.status == 502
    assert resp.body == b"502 Bad Gateway\n"
    assert resp.header("set-cookie") is None and resp.header("x-a") is None
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.BAD_RESPONSE
    assert outcome.request_sent and not outcome.response_started


@uvloop_test
async def test_hop_by_hop_fields_from_the_backend_do_not_reach_the_client() -> None:
    raw = ok(
        b"hi",
        headers=(
            b"Connection: X-Secret",
            b"X-Secret: 1",
            b"Keep-Alive: timeout=5",
            b"Proxy-Connection: x",
            b"Trailer: X-T",
            b"Upgrade: foo",
            b"Set-Cookie: s=1",
            b"X-Public: 2",
        ),
    )
    async with proxied(responder=lambda c, r: raw) as (_, proxy):
        resp = await proxy.request(get("/"))
    names = {n.lower() for n, _ in resp.headers}
    assert names.isdisjoint({b"x-secret", b"keep-alive", b"proxy-connection", b"trailer"})
    assert b"upgrade" not in names and resp.header("connection") is None
    assert resp.header("set-cookie") == b"s=1"
    assert resp.header("x-public") == b"2"


@uvloop_test
async def test_a_backend_cannot_strip_set_cookie_by_naming_it_in_connection() -> None:
    raw = ok(b"hi", headers=(b"Connection: Set-Cookie", b"Set-Cookie: s=1"))
    async with proxied(responder=lambda c, r: raw) as (_, proxy):
        resp = await proxy.request(get("/"))
    assert resp.header("set-cookie") == b"s=1"


# --- framing --------------------------------------------------------------------------------


@uvloop_test
async def test_head_response_has_no_body_and_the_upstream_connection_is_reused() -> None:
    def responder(conn: BackendConn, req: BackendRequest) -> bytes:
        if req.method == b"HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        return ok(b"after")

    async with proxied(responder=responder) as (backend, proxy):
        client = await proxy.connect()
        client.send(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n")
        head = await client.response(head=True)
        client.send(get("/next"))
        nxt = await client.response()
        client.close()
    assert head.status == 200 and head.header("content-length") == b"100"
    assert nxt.body == b"after"
    assert backend.connections == 1


@pytest.mark.parametrize("status", [204, 304])
@uvloop_test
async def test_204_and_304_are_relayed_without_a_body(status: int) -> None:
    raw = b'HTTP/1.1 %d X\r\nETag: "e"\r\n\r\n' % status
    async with proxied(responder=lambda c, r: raw) as (backend, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        resp = await client.response()
        client.send(get("/again"))
        again = await client.response()
        client.close()
    assert resp.status == status and resp.body == b""
    assert resp.header("transfer-encoding") is None
    assert again.status == status
    assert backend.connections == 1


@uvloop_test
async def test_expect_100_continue_is_answered_by_the_balancer_and_not_forwarded() -> None:
    async with proxied() as (backend, proxy):
        client = await proxy.connect()
        client.send(
            b"POST /up HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = await client.response()
        assert interim.status == 100
        client.send(b"hello")
        final = await client.response()
        client.close()
    assert final.status == 200 and final.body == b"hello"
    assert backend.requests[0].header("expect") is None


@uvloop_test
async def test_a_chunked_upload_streams_upstream_chunked() -> None:
    async with proxied() as (backend, proxy):
        client = await proxy.connect()
        client.send(
            b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        await eventually(lambda: b"hello" in backend.received)
        client.send(b"6\r\n world\r\n0\r\n\r\n")
        resp = await client.response()
        client.close()
    assert resp.body == b"hello world"
    seen = backend.requests[0]
    assert seen.header("transfer-encoding") == b"chunked"
    assert seen.header("content-length") is None


@uvloop_test
async def test_a_chunked_upload_read_whole_goes_upstream_with_a_content_length() -> None:
    async with proxied() as (backend, proxy):
        resp = await proxy.request(
            b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
    assert resp.body == b"hello world"
    seen = backend.requests[0]
    assert seen.header("content-length") == b"11"
    assert seen.header("transfer-encoding") is None
    assert seen.header("x-trailer") is None


@uvloop_test
async def test_a_chunked_response_is_rechunked_for_an_http11_client() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with proxied(responder=lambda c, r: raw) as (backend, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        resp = await client.response()
        client.send(get("/again"))
        again = await client.response()
        client.close()
    assert resp.chunked and resp.body == b"abcde"
    assert again.body == b"abcde"
    assert backend.connections == 1


@uvloop_test
async def test_a_close_delimited_response_is_chunked_for_11_and_closed_for_10() -> None:
    def responder(conn: BackendConn, req: BackendRequest) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end")
        conn.close()

    async with proxied(responder=responder) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        resp11 = await client.response()
        client.send(get("/"))
        again = await client.response()  # the client connection stays usable
        client.close()
        old = await proxy.connect()
        old.send(b"GET / HTTP/1.0\r\n\r\n")
        resp10 = await old.response()
        assert await old.closed()
    assert resp11.chunked and resp11.body == b"until the end"
    assert again.body == b"until the end"
    assert not resp10.chunked and resp10.body == b"until the end"
    assert resp10.header("content-length") is None


@uvloop_test
async def test_an_http10_client_gets_keep_alive_only_when_it_asks() -> None:
    async with proxied() as (_, proxy):
        plain = await proxy.connect()
        plain.send(b"GET /a HTTP/1.0\r\n\r\n")
        resp = await plain.response()
        assert resp.body == b"/a" and resp.header("connection") is None
        assert await plain.closed()
        kept = await proxy.connect()
        kept.send(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = await kept.response()
        assert first.header("connection") == b"keep-alive"
        kept.send(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert (await kept.response()).body == b"/c"
        kept.close()


@uvloop_test
async def test_connection_close_from_the_client_closes_after_the_response() -> None:
    async with proxied() as (_, proxy):
        client = await proxy.connect()
        client.send(get("/x", extra=b"Connection: close\r\n") + get("/never"))
        resp = await client.response()
        assert resp.header("connection") == b"close"
        assert await client.rest() == b""


@uvloop_test
async def test_a_complete_closing_request_is_closed_at_once_without_lingering() -> None:
    # Nothing unread: the balancer closes as nginx does, instead of sending FIN and waiting up
    # to LINGER_SECONDS for the client's (a timer, a shutdown and a read more per connection).
    async with proxied() as (_, proxy):
        client = await proxy.connect()
        client.send(get("/x", extra=b"Connection: close\r\n"))
        assert (await client.response()).header("connection") == b"close"
        deadline = asyncio.get_running_loop().time() + 1.0  # lingering would last 2 s
        while proxy.server.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert not proxy.server.connections  # while the client still holds its end open
        client.close()


@uvloop_test
async def test_a_request_sent_after_a_closing_one_in_a_later_read_is_never_forwarded() -> None:
    async def slow(req: BackendRequest) -> bytes:
        await asyncio.sleep(0.2)
        return ok(req.url)

    async with proxied(responder=lambda c, r: slow(r)) as (backend, proxy):
        client = await proxy.connect()
        client.send(get("/x", extra=b"Connection: close\r\n"))
        await asyncio.sleep(0.05)  # a later read, while the first is in flight
        client.send(get("/never"))
        resp = await client.response()
        assert resp.body == b"/x"
        assert await client.rest() == b""
    assert [r.url for r in backend.requests] == [b"/x"]


@uvloop_test
async def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(req: BackendRequest) -> bytes:
        await asyncio.sleep(0.1 if req.url == b"/1" else 0)
        return ok(req.url)

    async with proxied(responder=lambda c, r: slow_first(r)) as (backend, proxy):
        client = await proxy.connect()
        client.send(get("/1") + get("/2") + get("/3"))
        bodies = [(await client.response()).body for _ in range(3)]
        client.close()
    assert bodies == [b"/1", b"/2", b"/3"]
    assert [r.url for r in backend.requests] == [b"/1", b"/2", b"/3"]


@pytest.mark.parametrize(
    ("framing", "first", "rest"),
    [
        (b"Content-Length: 10\r\n", b"01234", b"56789"),
        (b"Transfer-Encoding: chunked\r\n", b"5\r\n01234\r\n", b"5\r\n56789\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
@uvloop_test
async def test_a_body_pipelined_behind_a_slow_request_is_read_on_when_its_turn_comes(
    framing: bytes, first: bytes, rest: bytes
) -> None:
    # The connection stops reading while a request waits behind the one in flight (the
    # hold). The waiting request's body may be unfinished: when its turn comes, the rest of
    # its body must be read (it was not: the hold was lifted only when the connection went
    # idle, so the request hung until the client gave up).
    release = {b"/slow": asyncio.Event(), b"/p": asyncio.Event()}

    async def held(req: BackendRequest) -> bytes:
        if req.url in release:
            await release[req.url].wait()
        return ok(req.body or req.url)

    async with proxied(responder=lambda c, r: held(r)) as (backend, proxy):
        client = await proxy.connect()
        client.send(get("/slow"))
        await eventually(lambda: len(backend.requests) == 1, what="/slow in flight")
        client.send(b"PUT /p HTTP/1.1\r\n" + H + framing + b"\r\n" + first)
        (conn,) = proxy.server.connections
        await eventually(
            lambda: (
                len(conn.queue) == 1
                and conn.queue[0].body_received == 5
                and bool(conn.pause_flags & PAUSE_HOLD)
            ),
            what="the PUT queued behind /slow and the connection held",
        )
        client.send(rest)  # a later read, not read while /slow is in flight
        release[b"/slow"].set()
        assert (await client.response(timeout=5)).body == b"/slow"
        await eventually(lambda: len(backend.requests) == 2, what="the whole PUT upstream")
        assert backend.requests[1].body == b"0123456789"
        # the hold still bounds a pipelining client: a request queued behind the PUT now in
        # flight stops the reading again
        client.send(get("/after"))
        await eventually(
            lambda: len(conn.queue) == 1 and bool(conn.pause_flags & PAUSE_HOLD),
            what="/after queued behind the PUT and the connection held",
        )
        release[b"/p"].set()
        assert (await client.response(timeout=5)).body == b"0123456789"
        assert (await client.response(timeout=5)).body == b"/after"
        client.close()
    assert [r.url for r in backend.requests] == [b"/slow", b"/p", b"/after"]


@uvloop_test
async def test_interim_103_is_relayed_and_a_backend_100_is_not() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + ok(b"done")
    )
    async with proxied(responder=lambda c, r: raw) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        hints = await client.response()
        final = await client.response()
        client.close()
    assert hints.status == 103 and hints.header("link") == b"</s.css>; rel=preload"
    assert final.status == 200 and final.body == b"done"


# --- upgrade --------------------------------------------------------------------------------


def websocket_backend(conn: BackendConn, req: BackendRequest) -> bytes:
    if req.header("upgrade") == b"websocket":
        conn.echo = True
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
        )
    return ok(b"plain")


@uvloop_test
async def test_a_websocket_upgrade_is_spliced_both_ways() -> None:
    async with Backend(websocket_backend) as backend:
        engine = FakeEngine([member("a", backend.port)])
        async with Proxy(engine) as proxy:
            client = await proxy.connect()
            client.send(
                b"GET /ws HTTP/1.1\r\n" + H + b"Connection: keep-alive, Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
                b"early"
            )
            resp = await client.response()
            assert resp.status == 101
            assert resp.header("upgrade") == b"websocket"
            assert await asyncio.wait_for(client.reader.readexactly(5), 5) == b"early"
            payload = bytes(range(256)) * 64
            client.send(payload)
            echoed = await asyncio.wait_for(client.reader.readexactly(len(payload)), 5)
            assert echoed == payload
            client.close()
            await eventually(lambda: not backend.open)
    seen = backend.requests[0]
    assert seen.header("upgrade") == b"websocket"
    assert seen.header("connection") == b"Upgrade"
    assert engine.last.events[-1] == ("finish", "a")


@uvloop_test
async def test_a_non_websocket_upgrade_is_ignored_and_its_body_served_as_http() -> None:
    async with proxied() as (backend, proxy):
        client = await proxy.connect()
        client.send(
            b"POST /h2c HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
            b"Content-Length: 4\r\n\r\nbody" + get("/next")
        )
        first = await client.response()
        second = await client.response()
        client.close()
    assert (first.status, first.body) == (200, b"body")
    assert second.body == b"/next"
    assert backend.requests[0].header("upgrade") is None
    assert backend.requests[0].header("http2-settings") is None


# --- streaming ------------------------------------------------------------------------------

BIG = 64 * 1024 * 1024
PIECE = 256 * 1024


@uvloop_test
async def test_a_64_mib_upload_streams_through_in_bounded_memory() -> None:
    def count(conn: BackendConn, req: BackendRequest) -> bytes:
        return ok(b"%d" % conn.backend.body_bytes)

    async with proxied(Limits(max_body_size=0), responder=count) as (backend, proxy):
        backend.keep_bodies = False
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
    assert peak < 24 * 1024 * 1024, peak


@uvloop_test
async def test_a_64_mib_download_streams_through_in_bounded_memory() -> None:
    async def stream(conn: BackendConn) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        piece = b"d" * PIECE
        for _ in range(BIG // PIECE):
            await conn.drain()
            conn.write(piece)

    def responder(conn: BackendConn, req: BackendRequest) -> None:
        asyncio.get_running_loop().create_task(stream(conn))

    async with proxied(responder=responder) as (_, proxy):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=PIECE)
        tracemalloc.start()
        try:
            writer.write(get("/big"))
            head = await reader.readuntil(b"\r\n\r\n")
            got = 0
            while got < BIG:
                data = await asyncio.wait_for(reader.read(PIECE), 10)
                assert data
                got += len(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        writer.close()
    assert b"Content-Length: %d" % BIG in head
    assert got == BIG
    assert peak < 24 * 1024 * 1024, peak


# --- routing answers ----------------------------------------------------------------------


@uvloop_test
async def test_the_routing_cookie_is_added_unless_the_backend_sets_the_same_cookie() -> None:
    def responder(conn: BackendConn, req: BackendRequest) -> bytes:
        if req.url == b"/login":
            return ok(b"x", headers=(b"Set-Cookie: JSESSIONID=real.n1; Path=/; HttpOnly",))
        return ok(b"x", headers=(b"Set-Cookie: other=1",))

    async with Backend(responder) as backend:
        engine = FakeEngine(
            [member("a", backend.port)], set_cookie="JSESSIONID=.n1;PATH=/;HttpOnly"
        )
        async with Proxy(engine) as proxy:
            plain = await proxy.request(get("/"))
            login = await proxy.request(get("/login"))
    assert plain.all("set-cookie") == [b"other=1", b"JSESSIONID=.n1;PATH=/;HttpOnly"]
    assert login.all("set-cookie") == [b"JSESSIONID=real.n1; Path=/; HttpOnly"]


@uvloop_test
async def test_use_server_errors_replaces_the_backend_error_body() -> None:
    raw = ok(b"Traceback: secret internals", status=500)
    async with Backend(lambda c, r: raw) as backend:
        engine = FakeEngine([member("a", backend.port)])

        def router(req: object) -> ProxyTo:
            return ProxyTo(engine, RuleExtensions(use_server_errors=500))

        async with Proxy(router=router) as proxy:
            resp = await proxy.request(get("/"))
    assert resp.status == 500
    assert b"secret" not in resp.body
    assert engine.last.events[-1] == ("finish", "a")


@uvloop_test
async def test_local_answers_and_handlers_that_read_the_body() -> None:
    async def handler(req: object, body: bytes) -> LocalResponse:
        return LocalResponse(200, b"got " + body, headers=((b"X-Local", b"1"),))

    def router(req: object) -> object:
        path = req.path  # type: ignore[attr-defined]
        if path == b"/status":
            return LocalHandler(handler, max_body=8)
        return LocalResponse(404)

    async with Proxy(router=router) as proxy:
        client = await proxy.connect()
        client.send(b"POST /status HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\nping")
        posted = await client.response()
        client.send(get("/elsewhere"))
        missing = await client.response()
        client.close()
        big = await proxy.request(
            b"POST /status HTTP/1.1\r\n" + H + b"Content-Length: 9\r\n\r\n123456789"
        )
    assert (posted.status, posted.body, posted.header("x-local")) == (200, b"got ping", b"1")
    assert missing.status == 404 and missing.body == b"404 Not Found\n"
    assert big.status == 413


@uvloop_test
async def test_the_access_log_gets_one_record_per_answered_request() -> None:
    async with proxied() as (_, proxy):
        await proxy.request(get("/logged?x=1"))
        await proxy.request(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # refused
    record, refused = proxy.records
    assert (record.method, record.target, record.status) == ("GET", "/logged?x=1", 200)
    assert (record.worker, record.member, record.client_ip) == ("lb", "a", "127.0.0.1")
    assert record.request_id and record.response_bytes == len(b"/logged?x=1")
    assert (refused.status, refused.method, refused.target, refused.member) == (400, "-", "-", "")


@uvloop_test
async def test_a_slow_backend_reader_pauses_the_client_upload_and_nothing_is_lost() -> None:
    from balancer.dataplane.downstream import PAUSE_UPSTREAM

    held: list[BackendConn] = []

    def count(conn: BackendConn, req: BackendRequest) -> bytes:
        return ok(b"%d" % conn.backend.body_bytes)

    async with proxied(Limits(max_body_size=0), responder=count) as (backend, proxy):
        backend.keep_bodies = False
        client = await proxy.connect()
        total = 8 * 1024 * 1024
        client.send(b"POST /up HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % total)
        await eventually(lambda: bool(backend.open))
        held.extend(backend.open)
        for conn in held:
            assert conn.transport is not None
            conn.transport.pause_reading()  # the backend stops reading the body
        sender = asyncio.ensure_future(_send_all(client, total))
        (conn,) = proxy.server.connections
        await eventually(lambda: bool(conn.pause_flags & PAUSE_UPSTREAM), what="backpressure")
        for bc in held:
            assert bc.transport is not None
            bc.transport.resume_reading()
        await sender
        resp = await client.response(timeout=30)
        client.close()
    assert resp.body == b"%d" % total


async def _send_all(client: object, total: int) -> None:
    piece = b"s" * PIECE
    for _ in range(total // PIECE):
        client.send(piece)  # type: ignore[attr-defined]
        await client.writer.drain()  # type: ignore[attr-defined]


@uvloop_test
async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    async def stream(conn: BackendConn) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        piece = b"d" * PIECE
        for _ in range(BIG // PIECE):
            await conn.drain()
            if conn.transport is None or conn.transport.is_closing():
                return
            conn.write(piece)

    def responder(conn: BackendConn, req: BackendRequest) -> None:
        asyncio.get_running_loop().create_task(stream(conn))

    async with Backend(responder) as backend:
        engine = FakeEngine([member("a", backend.port)])
        async with Proxy(engine, Limits(send_timeout=0.3)) as proxy:
            _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=PIECE)
            writer.transport.pause_reading()  # read nothing at all
            writer.write(get("/big"))
            await eventually(lambda: bool(engine.plans) and engine.last.balanced, timeout=10)
            writer.close()
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.CLIENT_ERROR and outcome.response_started
