"""A member's response body relayed from its reads (upstream.py: no llhttp body callback).

The connection follows where the body is in each read itself: past the head in the read that
ends it, a Content-Length count, ChunkLines for a chunked body, everything for a
close-delimited one. These tests make the member write its response in chosen pieces, each read
by the balancer on its own (the member writes the next piece only once the balancer's upstream
connection has counted the bytes before it), so every position edge is reached for certain:
a body byte by byte, a read ending exactly at the head or at the body, the body and bytes after
it in one read, a short body then close, a zero-length body. After each response the same
member connection serves the next request: the positions left it in step.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from balancer.dataplane import read_buffers as rb
from balancer.dataplane.limits import Limits
from balancer.lb.decisions import OutcomeKind
from tests.support.certs import make_pair
from tests.unit.test_dataplane_support import (
    Backend,
    BackendConn,
    BackendRequest,
    Client,
    FakeEngine,
    Proxy,
    Response,
    eventually,
    get,
    member,
    proxied,
    uvloop_test,
)

HEAD = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: %d\r\n\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"


def upstream_received(proxy: Proxy) -> int:
    """Bytes the balancer has read of the response in flight (-1: none in flight)."""
    for conn in proxy.server.connections:
        ex = conn.exchange
        if ex is not None and ex.up is not None:
            return int(ex.up.received)
    return -1


class Scripted:
    """A member that answers every request with the next script: its pieces written one at a
    time, each once the balancer has read all before it; then, with ``close``, it closes."""

    def __init__(self, *scripts: list[bytes], close: bool = False) -> None:
        self.scripts = list(scripts)
        self.close = close
        self.gate: asyncio.Queue[None] = asyncio.Queue()

    def __call__(self, conn: BackendConn, req: BackendRequest) -> None:
        pieces = self.scripts.pop(0)
        asyncio.get_running_loop().create_task(self._write(conn, pieces))

    async def _write(self, conn: BackendConn, pieces: list[bytes]) -> None:
        for i, piece in enumerate(pieces):
            if i:
                await self.gate.get()
            conn.write(piece)
        if self.close:
            conn.close()

    async def drive(self, proxy: Proxy, pieces: list[bytes]) -> None:
        """Let the member write ``pieces`` as separate reads of the balancer's."""
        total = 0
        for piece in pieces[:-1]:
            total += len(piece)
            await eventually(
                lambda total=total: upstream_received(proxy) == total,  # type: ignore[misc]
                what=f"the balancer to read {total} bytes",
            )
            self.gate.put_nowait(None)


async def exchange(proxy: Proxy, member: Scripted, client: Client, pieces: list[bytes]) -> Any:
    client.send(get("/"))
    answer = asyncio.get_running_loop().create_task(client.response())
    await member.drive(proxy, pieces)
    return await answer


async def served_then_reused(pieces: list[bytes]) -> Response:
    """The response the member writes in ``pieces``; the same member connection then serves
    a second request (the positions left it in step for the next response)."""
    member = Scripted(pieces, [HEAD % 2 + b"ok"])
    async with proxied(responder=member) as (backend, proxy):
        client = await proxy.connect()
        resp = await exchange(proxy, member, client, pieces)
        again = await exchange(proxy, member, client, [HEAD % 2 + b"ok"])
        client.close()
    assert again.body == b"ok"
    assert backend.connections == 1
    return resp  # type: ignore[no-any-return]


def by_bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


CONTENT_LENGTH_CASES = {
    "a body byte by byte": [HEAD % 5, *by_bytes(b"hello")],
    "the head byte by byte, then the body": [*by_bytes(HEAD % 5), b"hello"],
    "the head and part of the body, then the rest": [HEAD % 5 + b"he", b"llo"],
    "a read that ends exactly at the head, then the whole body": [HEAD % 5, b"hello"],
    "head and body in one read": [HEAD % 5 + b"hello"],
    "a zero-length body": [HEAD % 0],
    "a large body in uneven reads": [
        HEAD % 70000 + b"a" * 5000,
        b"b" * 3,
        b"c" * 40000,
        b"d" * 24997,
    ],
    "a large body with its head": [HEAD % 9000 + b"e" * 9000],
}


@pytest.mark.parametrize("case", sorted(CONTENT_LENGTH_CASES))
@uvloop_test
async def test_a_content_length_body_is_relayed_whole_at_any_read_boundary(case: str) -> None:
    pieces = CONTENT_LENGTH_CASES[case]
    body = b"".join(pieces).partition(b"\r\n\r\n")[2]
    resp = await served_then_reused(pieces)
    assert resp.status == 200 and resp.header("x-a") == b"1"
    assert resp.header("content-length") == b"%d" % len(body)
    assert resp.body == body


CHUNKED_CASES = {
    "the framing byte by byte": [
        CHUNKED_HEAD,
        *by_bytes(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"),
    ],
    "a chunk split inside its data": [CHUNKED_HEAD + b"5\r\nab", b"cde\r\n0\r\n\r\n"],
    "the head with the whole body": [CHUNKED_HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"],
    "a large chunk over reads": [
        CHUNKED_HEAD + b"4e20\r\n" + b"a" * 7000,
        b"b" * 13000 + b"\r\n",
        b"0\r\n\r\n",
    ],
}


@pytest.mark.parametrize("case", sorted(CHUNKED_CASES))
@uvloop_test
async def test_a_chunked_body_is_rechunked_from_its_data_at_any_read_boundary(case: str) -> None:
    pieces = CHUNKED_CASES[case]
    raw = b"".join(pieces).partition(b"\r\n\r\n")[2]
    body, at = b"", 0
    while True:  # the chunk data of the member's framing
        line_end = raw.index(b"\r\n", at)
        size = int(raw[at:line_end].split(b";")[0], 16)
        if not size:
            break
        body += raw[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2
    resp = await served_then_reused(pieces)
    assert resp.chunked and resp.body == body


@uvloop_test
async def test_a_close_delimited_body_is_relayed_from_every_read_until_the_close() -> None:
    pieces = [b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil", b" the", b" " + b"e" * 9000 + b"nd"]
    member = Scripted(pieces, close=True)
    async with proxied(responder=member) as (_, proxy):
        client = await proxy.connect()
        resp = await exchange(proxy, member, client, pieces)
        client.close()
    assert resp.chunked and resp.body == b"until the " + b"e" * 9000 + b"nd"


async def cut_off(member: Scripted, pieces: list[bytes]) -> tuple[bytes, bytes]:
    """The head and body a client gets of a response that breaks after it started: all the
    balancer sends before it closes the connection; the try failed as READ_FAILED."""
    async with proxied(responder=member) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        await member.drive(proxy, pieces)
        got = await client.rest()
        client.close()
    (outcome,) = proxy.engine.last.outcomes
    assert outcome.kind is OutcomeKind.READ_FAILED and outcome.response_started
    head, _, body = got.partition(b"\r\n\r\n")
    return head, body


@uvloop_test
async def test_a_body_cut_short_by_the_member_reaches_the_client_truncated() -> None:
    pieces = [HEAD % 10, b"hel", b"lo"]
    head, body = await cut_off(Scripted(pieces, close=True), pieces)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 10" in head
    assert body == b"hello"  # five of ten bytes, then the connection closes


@uvloop_test
async def test_a_content_length_past_a_c_integer_is_relayed_as_llhttp_reads_it() -> None:
    # llhttp takes up to 2**64 - 1; the count of what is left must not overflow on the way
    pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\nhel", b"lo"]
    head, body = await cut_off(Scripted(pieces, close=True), pieces)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 9223372036854775808" in head
    assert body == b"hello"


@uvloop_test
async def test_bytes_after_the_body_in_the_read_of_the_head_give_a_clean_502() -> None:
    pieces = [HEAD % 2 + b"hiHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"]
    member = Scripted(pieces)
    async with proxied(responder=member) as (_, proxy):
        resp = await proxy.request(get("/"))
    assert resp.status == 502
    (outcome,) = proxy.engine.last.outcomes
    assert outcome.kind is OutcomeKind.BAD_RESPONSE and not outcome.response_started


@uvloop_test
async def test_bytes_after_the_body_in_a_later_read_relay_the_body_then_close() -> None:
    pieces = [HEAD % 5 + b"he", b"lloHTTP/1.1 200 OK\r\n"]
    _, body = await cut_off(Scripted(pieces), pieces)
    assert body == b"hello"  # the whole body, then the close


@uvloop_test
async def test_a_response_to_head_relays_no_body_and_keeps_the_connection() -> None:
    member = Scripted([HEAD % 5], [HEAD % 2 + b"ok"])
    async with proxied(responder=member) as (backend, proxy):
        client = await proxy.connect()
        client.send(b"HEAD / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        head: Response = await client.response(head=True)
        again = await exchange(proxy, member, client, [HEAD % 2 + b"ok"])
        client.close()
    assert head.status == 200 and head.header("content-length") == b"5"
    assert again.body == b"ok"
    assert backend.connections == 1


@uvloop_test
async def test_large_body_pieces_reach_a_tls_client_whole(tmp_path: Path) -> None:
    # the pieces over _COPY_MAX go to the client transport as memoryviews of the member's reads:
    # the TLS transport takes them as it takes bytes
    pair = make_pair(tmp_path, "proxy", ["proxy.test"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pair.cert, pair.key)
    client_ctx = ssl.create_default_context(cafile=str(pair.cert))
    pieces = [HEAD % 70000 + b"a" * 5000, b"b" * 40000, b"c" * 25000]
    script = Scripted(pieces, pieces)  # the second read from pooled buffers (BufferedReads)
    async with Backend(script) as backend:
        proxy = Proxy(FakeEngine([member("a", backend.port)]))
        srv = await proxy.server.start("127.0.0.1", 0, ssl=server_ctx)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                srv.sockets[0].getsockname()[1],
                ssl=client_ctx,
                server_hostname="proxy.test",
                limit=1 << 22,
            )
            client = Client(reader, writer)
            resp = await exchange(proxy, script, client, pieces)
            again = await exchange(proxy, script, client, pieces)
            writer.close()
        finally:
            await proxy.__aexit__()
    assert resp.body == again.body == b"a" * 5000 + b"b" * 40000 + b"c" * 25000


# --- what the relay hands the client transport ----------------------------------------------


class Recording:
    """Stands in for a client connection's transport: keeps every call the relay makes with the
    objects it hands over (what the transport holds while the client does not read them), and
    passes them on."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.calls: list[tuple[str, list[Any]]] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", [data]))
        self.transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        self.calls.append(("writelines", parts))
        self.transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def views(self) -> list[memoryview]:
        return [p for _, parts in self.calls for p in parts if isinstance(p, memoryview)]


async def recorded(proxy: Proxy) -> tuple[Client, Recording]:
    """A client connection whose transport, on the balancer's side, is recorded."""
    client = await proxy.connect()
    await eventually(lambda: len(proxy.server.connections) == 1, what="the client connection")
    (conn,) = proxy.server.connections
    rec = Recording(conn.transport)
    conn.transport = rec  # type: ignore[assignment]
    return client, rec


async def member_read(proxy: Proxy, data: bytes) -> None:
    """``data`` as one read of the member connection in flight, exactly this size (the member
    itself never answers: the kernel would choose where its reads end)."""

    def up() -> Any:
        for conn in proxy.server.connections:
            ex = conn.exchange
            if ex is not None and ex.up is not None:
                return ex.up
        return None

    await eventually(lambda: up() is not None, what="a member connection in flight")
    up().data_received(data)


def silent(conn: BackendConn, req: BackendRequest) -> None:
    return None


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


SMALL_CHUNKS = [bytes([65 + i % 26]) * 5000 for i in range(50)]


@uvloop_test
async def test_a_body_piece_holds_no_more_than_eight_times_its_size_of_the_read() -> None:
    # 5000-byte chunks (over _COPY_MAX) in a ~250 KiB read: a memoryview of each would keep the
    # whole read alive while the client's write-buffer limit counts only the 5000 bytes — a
    # member could make a slow client hold ~50x that limit
    async with Backend(silent) as backend:  # noqa: SIM117 - the proxy needs backend.port
        async with Proxy(FakeEngine([member("a", backend.port)])) as proxy:
            client, rec = await recorded(proxy)
            client.send(get("/"))
            answer = asyncio.get_running_loop().create_task(client.response())
            await member_read(proxy, CHUNKED_HEAD + chunked(SMALL_CHUNKS))
            resp = await answer
            client.close()
    assert resp.chunked and resp.body == b"".join(SMALL_CHUNKS)
    for view in rec.views():
        assert len(view.obj) <= 8 * view.nbytes, (len(view.obj), view.nbytes)  # type: ignore[arg-type]


@uvloop_test
async def test_a_large_share_of_a_read_goes_to_the_client_uncopied() -> None:
    body = b"z" * 65536
    async with Backend(silent) as backend:  # noqa: SIM117 - the proxy needs backend.port
        async with Proxy(FakeEngine([member("a", backend.port)])) as proxy:
            client, rec = await recorded(proxy)
            client.send(get("/"))
            answer = asyncio.get_running_loop().create_task(client.response())
            read = HEAD % len(body) + body
            await member_read(proxy, read)
            resp = await answer
            client.close()
    assert resp.body == body
    (view,) = rec.views()
    assert view.obj is read and view.nbytes == len(body)


@uvloop_test
async def test_a_small_response_after_a_thrown_away_large_body_leaves_in_one_write() -> None:
    # member a's head, a body over _JOIN_MAX and the start of a second response come in one
    # read: the try fails before any byte reached the client (BAD_RESPONSE, retried on b). What
    # it had collected is thrown away, and b's small response is joined into one buffer
    async with Backend(silent) as backend:
        engine = FakeEngine([member("a", backend.port), member("b", backend.port)])
        async with Proxy(engine) as proxy:
            client, rec = await recorded(proxy)
            client.send(get("/"))
            answer = asyncio.get_running_loop().create_task(client.response())
            await member_read(proxy, HEAD % 5000 + b"x" * 5000 + b"HTTP/1.1 200 OK\r\n")
            await member_read(proxy, HEAD % 2 + b"ok")
            resp = await answer
            client.close()
    assert resp.status == 200 and resp.body == b"ok"
    (outcome,) = engine.last.outcomes
    assert outcome.kind is OutcomeKind.BAD_RESPONSE and not outcome.response_started
    assert [call for call, _ in rec.calls] == ["write"]


# --- the read buffers (read_buffers.py): a large read relayed from the buffer it was read into


class Holding(Recording):
    """A client transport whose client does not read: it keeps what the relay hands it (as a
    transport keeps what the kernel does not take yet, uvloop without a copy) until
    ``release``."""

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.held: list[Any] = []

    def write(self, data: Any) -> None:
        self.calls.append(("write", [data]))
        self.held.append(data)

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        self.calls.append(("writelines", parts))
        self.held += parts

    def release(self) -> None:
        held, self.held = self.held, []
        self.transport.writelines(held)


def test_a_read_buffer_is_handed_out_again_only_once_no_view_of_it_is_left() -> None:
    first = rb.take(None)
    view = memoryview(first)[:10]
    second = rb.take(None)
    assert second is not first and rb.viewable(second)  # `first` is held
    copy = bytes(memoryview(first)[:10])  # a copy holds nothing (nor its released view)
    assert rb.take(None) is second and len(copy) == 10
    del view
    assert rb.take(None) is first


def test_a_reader_whose_last_buffer_is_still_viewed_gets_the_scratch_buffer() -> None:
    held = rb.take(None)
    view = memoryview(held)[:10]
    assert not rb.viewable(rb.take(held))  # one pooled buffer per reader at a time
    del view
    assert rb.take(held) is held


def test_past_the_pooled_buffers_a_read_goes_to_the_scratch_buffer_never_viewed() -> None:
    views = []
    for _ in range(1000):  # (bounded: the pool stops growing at read_buffers.POOLED)
        buf = rb.take(None)
        if not rb.viewable(buf):
            break
        views.append(memoryview(buf))  # every pooled buffer held
    else:
        pytest.fail("the pool of read buffers kept growing")
    assert len(views) == rb.pooled() and not rb.in_use(buf)
    assert rb.take(None) is buf  # the scratch buffer: copied out of at once, so always free
    views.clear()
    assert rb.viewable(rb.take(None))


def member_protocol(proxy: Proxy) -> Any:
    """What uvloop reads the (one) member connection for: the connection, or its
    ``BufferedReads`` while its responses are large."""
    (conn,) = [c for pool in proxy.server.pools.values() for c in pool.idle_connections()]
    return conn.transport.get_protocol()


@uvloop_test
async def test_a_large_read_is_relayed_from_its_buffer_kept_while_the_client_lags() -> None:
    # after a large response the member connection reads into pooled buffers (BufferedReads):
    # the body goes to the client as views of the buffer, the head copied out. While the
    # client transport still holds those views the buffer must not be read into — here a
    # second client's response comes through the same member connection meanwhile, and the
    # first client then gets its own bytes, not the second's
    warm, body1, body2 = b"w" * 65536, b"a" * 65536, b"b" * 65536
    scripts = [[HEAD % len(b) + b] for b in (warm, body1, body2)]
    member = Scripted(*scripts)
    async with proxied(responder=member) as (backend, proxy):
        first, holding = await recorded(proxy)
        warmed = await exchange(proxy, member, first, scripts[0])
        assert type(member_protocol(proxy)).__name__ == "BufferedReads"
        slow = Holding(holding.transport)
        (conn,) = proxy.server.connections
        conn.transport = slow  # type: ignore[assignment]
        first.send(get("/"))
        answer1 = asyncio.get_running_loop().create_task(first.response())
        await eventually(lambda: sum(v.nbytes for v in slow.views()) == len(body1), what="body 1")
        second = await proxy.connect()
        resp2 = await exchange(proxy, member, second, scripts[2])
        views = slow.views()
        assert all(rb.viewable(v.obj) for v in views)  # type: ignore[arg-type]
        assert b"".join(bytes(v) for v in views) == body1  # not overwritten by body 2
        slow.release()
        resp1 = await answer1
        first.close()
        second.close()
    assert (warmed.body, resp1.body, resp2.body) == (warm, body1, body2)
    assert backend.connections == 1  # the member connection served all three


@uvloop_test
async def test_a_member_connection_reads_buffered_after_a_large_response_until_small_ones() -> None:
    small = [HEAD % 2 + b"ok"]
    large = [HEAD % 20000 + b"L" * 20000]
    member = Scripted(small, large, *[small] * 16)
    async with proxied(responder=member) as (backend, proxy):
        client = await proxy.connect()
        kinds = []
        for pieces in [small, large, *[small] * 16]:
            resp = await exchange(proxy, member, client, pieces)
            assert resp.body == b"".join(pieces).partition(b"\r\n\r\n")[2]
            kinds.append(type(member_protocol(proxy)).__name__)
        client.close()
    assert kinds == ["UpstreamConnection", *["BufferedReads"] * 16, "UpstreamConnection"]
    assert backend.connections == 1


@uvloop_test
async def test_an_interim_head_and_a_large_final_response_in_one_read() -> None:
    # a 1xx head begins the read: the read is copied out whole (the head's bytes are scanned
    # from it), not relayed from its buffer
    body = b"f" * 9000
    pieces = [b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD % len(body) + body]
    member = Scripted(pieces)
    async with proxied(responder=member) as (_, proxy):
        resp = await proxy.request(get("/"))
    assert resp.status == 200 and resp.body == body


@uvloop_test
async def test_a_head_begun_in_a_small_read_and_ended_in_a_large_one() -> None:
    body = b"g" * 9000
    whole = HEAD % len(body) + body
    resp = await served_then_reused([whole[:20], whole[20:]])
    assert resp.status == 200 and resp.body == body


async def test_on_the_stdlib_loop_a_connection_after_a_large_response_keeps_serving() -> None:
    # pyjk falls back to asyncio's own loop without uvloop (launch.py); its transport makes
    # buffered reads only for asyncio.BufferedProtocol subclasses, so a connection that showed
    # it BufferedReads was called data_received on it and lost (a POST got a 502)
    big = [HEAD % 65536 + b"w" * 65536]
    small = [HEAD % 2 + b"ok"]
    member = Scripted(big, small)
    async with proxied(responder=member) as (backend, proxy):
        client = await proxy.connect()
        first = await exchange(proxy, member, client, big)
        client.send(b"POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc")
        second = await client.response()
        assert (second.status, second.body) == (200, b"ok")
        assert type(member_protocol(proxy)).__name__ == "UpstreamConnection"  # never switched
        client.close()
    assert first.body == big[0][-65536:]
    assert backend.connections == 1
    assert all(o.kind is OutcomeKind.OK for o in proxy.engine.last.outcomes)


@uvloop_test
async def test_a_client_that_does_not_read_holds_one_pooled_buffer_of_its_connection() -> None:
    # a response read in several large reads while the client reads none of them: the first
    # read is relayed as views of its pooled buffer, the next ones are copied out of the
    # scratch buffer (as uvloop's own reads were). Taking a new pooled buffer for each let one
    # client that does not read pin the whole pool, and every other read of the process copy
    warm, body = b"w" * 65536, b"".join(bytes([65 + i]) * 40000 for i in range(5))
    pieces = [HEAD % len(body) + body[:40000]] + [
        body[i : i + 40000] for i in range(40000, len(body), 40000)
    ]
    member = Scripted([HEAD % len(warm) + warm], pieces)
    async with proxied(responder=member) as (_, proxy):
        client, holding = await recorded(proxy)
        await exchange(proxy, member, client, [HEAD % len(warm) + warm])
        slow = Holding(holding.transport)
        (conn,) = proxy.server.connections
        conn.transport = slow  # type: ignore[assignment]
        client.send(get("/"))
        answer = asyncio.get_running_loop().create_task(client.response())
        await member.drive(proxy, pieces)
        await eventually(lambda: sum(len(p) for p in slow.held) >= len(body), what="the body")
        viewed = {id(v.obj) for v in slow.held if isinstance(v, memoryview)}
        assert len(viewed) == 1  # one pooled buffer held, however many reads
        slow.release()
        resp = await answer
        client.close()
    assert resp.body == body


@uvloop_test
async def test_a_read_under_an_eighth_of_a_read_buffer_is_copied_out_of_it() -> None:
    # a view keeps the whole 256 KiB buffer alive while the client's write-buffer limit counts
    # only the view: reads under read_buffers.SIZE / 8 are copied, so what a lagging client
    # holds stays within eight times what its limit counts
    warm, body = b"w" * 65536, b"s" * 30000
    pieces = [HEAD % len(body), body[:15000], body[15000:]]
    member = Scripted([HEAD % len(warm) + warm], pieces)
    async with proxied(responder=member) as (_, proxy):
        client, rec = await recorded(proxy)
        await exchange(proxy, member, client, [HEAD % len(warm) + warm])
        del rec.calls[:]
        resp = await exchange(proxy, member, client, pieces)
        assert type(member_protocol(proxy)).__name__ == "BufferedReads"
        client.close()
    assert resp.body == body
    assert not [v for v in rec.views() if rb.viewable(v.obj)]  # type: ignore[arg-type]


@uvloop_test
async def test_a_large_response_on_a_connection_not_kept_switches_no_reads() -> None:
    # the member closes after this response: its connection is discarded, so changing how it
    # reads (a set_protocol: an epoll DEL and ADD, a new BufferedReads) would be wasted
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    body = b"c" * 65536
    pieces = [head % len(body) + body[:1000], body[1000:]]
    member = Scripted(pieces)
    async with proxied(responder=member) as (_, proxy):
        client = await proxy.connect()
        client.send(get("/"))
        answer = asyncio.get_running_loop().create_task(client.response())
        switches: list[Any] = []

        class Switches:  # the member connection's transport, its set_protocol calls recorded
            def __init__(self, transport: Any) -> None:
                self.transport = transport

            def set_protocol(self, protocol: Any) -> None:
                switches.append(protocol)
                self.transport.set_protocol(protocol)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.transport, name)

        def in_flight() -> bool:
            for conn in proxy.server.connections:
                up = conn.exchange.up if conn.exchange is not None else None
                if up is not None:
                    up.transport = Switches(up.transport)
                    return True
            return False

        await eventually(in_flight, what="the member connection in flight")
        await member.drive(proxy, pieces)
        resp = await answer
        client.close()
    assert resp.body == body
    assert switches == []


@uvloop_test
async def test_a_closed_client_connection_that_never_drains_is_aborted_after_send_timeout() -> None:
    # Connection: close, and the client never reads its large response: the balancer closes
    # gracefully, and uvloop waits for a flush that never comes — the connection, its queued
    # bytes and the read buffers they view were held for as long as the client kept the socket
    body = b"x" * 120_000  # (under write_buffer_high: the transport never pauses)
    member = Scripted([HEAD % len(body) + body])
    async with proxied(limits=Limits(send_timeout=0.5), responder=member) as (_, proxy):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", proxy.port))
            await eventually(lambda: len(proxy.server.connections) == 1, what="the client")
            (conn,) = proxy.server.connections
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await eventually(lambda: conn.closed, what="the response relayed, then closed")
            # the client starts reading only now: an aborted connection ends in a reset
            await eventually(lambda: not proxy.server.connections, timeout=5.0, what="the abort")
            got, reset = 0, False
            while True:
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5.0)
                except ConnectionResetError:
                    reset = True
                    break
                if not chunk:
                    break
                got += len(chunk)
        finally:
            sock.close()
    assert reset or got < len(body)  # never the whole response: it was dropped
