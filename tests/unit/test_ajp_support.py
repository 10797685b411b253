"""Test kit for ajp13 members: an in-process AJP container on 127.0.0.1 and a proxy in front.

``Container`` accepts AJP connections and answers each forward request with a scripted
coroutine ``script(talk, request)``; ``Talk`` is the container's side of one request (read the
body the way Tomcat does, send headers, chunks, the end, raw bytes; close). It records every
packet it received, every connection and every CPing, so tests can check what pyjk sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from balancer.ajp import (
    CPONG_PACKET,
    ForwardRequest,
    decode_body_packet,
    decode_forward_request,
    to_container_deframer,
)
from balancer.ajp.reply import (
    encode_body_chunk,
    encode_end_response,
    encode_get_body_chunk,
    encode_send_headers,
)
from balancer.config.model import MemberConfig
from tests.unit.test_dataplane_support import FakeEngine, FakeMember, Proxy, uvloop_test

Script = Callable[["Talk", ForwardRequest], Awaitable[None]]


def ajp_member(name: str, port: int, **settings: Any) -> FakeMember:
    settings.setdefault("connection_acquire_timeout", 200)
    cfg = MemberConfig(name=name, type="ajp13", host="127.0.0.1", port=port, **settings)
    return FakeMember(name, cfg)


@dataclass
class Seen:
    """One forward request as the container received it, with its body."""

    request: ForwardRequest
    body: bytes = b""
    packets_before_asking: int = 0  # body packets that came before the first GET_BODY_CHUNK

    def header(self, name: str) -> bytes | None:
        want = name.lower().encode()
        for n, v in self.request.headers:
            if n.lower() == want:
                return v
        return None

    def attribute(self, name: str) -> bytes | None:
        for n, v in self.request.request_attributes:
            if n == name.encode():
                return v
        return None


class Talk:
    """The container's side of one request on one connection."""

    def __init__(self, conn: ContainerConn, request: ForwardRequest) -> None:
        self.conn = conn
        self.request = request
        self.seen = Seen(request)
        self.asked = False
        self.body_done = False

    def header(self, name: str) -> bytes | None:
        return self.seen.header(name)

    async def body(self, ask: int = 8186) -> bytes:
        """Read the whole body as Tomcat does: with a length > 0 the first packet comes unasked;
        every further one is asked for with GET_BODY_CHUNK, until an empty one or the length."""
        length = self.header("content-length")
        left = int(length) if length is not None else None
        parts = []
        if left == 0:
            self.body_done = True
        first = left is not None and left > 0
        while not self.body_done:
            if not first:
                self.asked = True
                self.send(encode_get_body_chunk(ask))
            first = False
            data = decode_body_packet(await self.conn.next_packet())
            if not self.asked:
                self.seen.packets_before_asking += 1
            if not data:
                self.body_done = True
                break
            parts.append(data)
            if left is not None:
                left -= len(data)
                if left <= 0:
                    self.body_done = True
        self.seen.body = b"".join(parts)
        return self.seen.body

    async def one_chunk(self, ask: int = 8186) -> bytes:
        """Ask for one body packet (for streaming echoes)."""
        self.asked = True
        self.send(encode_get_body_chunk(ask))
        data = decode_body_packet(await self.conn.next_packet())
        if not data:
            self.body_done = True
        return data

    def send(self, data: bytes) -> None:
        self.conn.write(data)

    def headers(
        self,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        reason: bytes = b"",
    ) -> None:
        self.send(encode_send_headers(status, reason, headers or []))

    def chunk(self, data: bytes, size: int = 8184) -> None:
        """SEND_BODY_CHUNKs of at most ``size`` bytes (Tomcat's most for 8 KiB packets)."""
        for i in range(0, max(1, len(data)), size):
            self.send(encode_body_chunk(data[i : i + size]))

    def end(self, reuse: bool = True) -> None:
        self.send(encode_end_response(reuse))

    def respond(
        self, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        hdrs = [(b"Content-Length", b"%d" % len(body)), *(headers or [])]
        self.headers(status, hdrs)
        if body:
            self.chunk(body)
        self.end()

    async def drain(self) -> None:
        await self.conn.can_write.wait()

    def close(self) -> None:
        self.conn.close()


async def echo(talk: Talk, req: ForwardRequest) -> None:
    """200 with the body, or the URI (and query) when there is none."""
    body = await talk.body()
    answer = body or req.uri + (b"?" + req.query_string if req.query_string else b"")
    talk.respond(answer, headers=[(b"X-Method", req.method)])


class ContainerConn(asyncio.Protocol):
    def __init__(self, container: Container) -> None:
        self.container = container
        self.deframer = to_container_deframer(65536)
        self.transport: asyncio.Transport | None = None
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.task: asyncio.Task[None] | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.container.connections += 1
        self.container.open.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.container.open.discard(self)
        self.packets.put_nowait(b"\x00lost")

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        record = self.container.record
        if record:
            self.container.received += data
        for payload in self.deframer.feed(data):
            if record:
                self.container.packets.append(payload)
            self.packets.put_nowait(payload)

    async def next_packet(self) -> bytes:
        payload = await self.packets.get()
        if payload == b"\x00lost":
            raise ConnectionError("the proxy closed the connection")
        return payload

    async def _serve(self) -> None:
        container = self.container
        with contextlib.suppress(ConnectionError):
            while True:
                payload = await self.next_packet()
                if payload == b"\x0a":  # CPING
                    container.cpings += 1
                    if container.close_reused_on_cping and self.requests:
                        self.close()
                        return
                    if container.answer_cping:
                        self.write(CPONG_PACKET)
                    continue
                request = decode_forward_request(payload)
                self.requests += 1
                talk = Talk(self, request)
                container.seen.append(talk.seen)
                await container.script(talk, request)
                if self.transport is None or self.transport.is_closing():
                    return

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class Container:
    """An AJP container on 127.0.0.1: ``script`` answers every forward request."""

    script: Script = echo
    answer_cping: bool = True
    # close a connection that already served a request when it gets a CPing (as if the
    # container had dropped the idle connection just as pyjk reused it)
    close_reused_on_cping: bool = False
    record: bool = True  # keep every byte and packet received (off for big transfers)
    seen: list[Seen] = field(default_factory=list)
    packets: list[bytes] = field(default_factory=list)  # every payload received, in order
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    cpings: int = 0
    open: set[ContainerConn] = field(default_factory=set)
    server: asyncio.Server | None = None
    port: int = 0

    async def __aenter__(self) -> Container:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: ContainerConn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for conn in list(self.open):
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def ajp_proxied(
    script: Script = echo, limits: Any = None, engine: dict[str, Any] | None = None, **member: Any
) -> AsyncIterator[tuple[Container, Proxy]]:
    """A container and a proxy whose one-member fake engine forwards to it over AJP."""
    async with Container(script) as container:
        fake = FakeEngine([ajp_member("t1", container.port, **member)], **(engine or {}))
        async with Proxy(fake, limits) as proxy:
            yield container, proxy


# --- the kit's own checks ----------------------------------------------------------------------


@uvloop_test
async def test_container_answers_a_forward_request_written_by_the_codec() -> None:
    from balancer.ajp import (
        END_OF_BODY_PACKET,
        GetBodyChunk,
        encode_forward_request,
        from_container_deframer,
    )
    from balancer.ajp.reply import decode_reply

    async with Container() as container:
        reader, writer = await asyncio.open_connection("127.0.0.1", container.port)
        writer.write(encode_forward_request(ForwardRequest(b"GET", b"/kit"), 8192))
        d = from_container_deframer(8192)
        got = []
        while len(got) < 4:
            for payload in d.feed(await reader.read(65536)):
                msg = decode_reply(payload)
                got.append(msg)
                if isinstance(msg, GetBodyChunk):  # no length: echo asks for the body
                    writer.write(END_OF_BODY_PACKET)
        writer.close()
    names = [type(m).__name__ for m in got]
    assert names == ["GetBodyChunk", "SendHeaders", "BodyChunk", "EndResponse"]
    assert got[2].data == b"/kit"  # type: ignore[union-attr]
