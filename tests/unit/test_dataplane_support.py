"""Test kit for the data plane: a scripted fake engine, recording backends, a raw HTTP client.

Everything runs in-process on 127.0.0.1 under uvloop. Tests are plain functions wrapped by
``@uvloop_test`` (a fresh uvloop per test, and a hard time limit), so the kit does not depend
on which asyncio loop the pytest plugin picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
import uvloop

from balancer.config.model import MemberConfig
from balancer.dataplane import Limits, LocalResponse, ProxyServer, ProxyTo
from balancer.lb.decisions import (
    IDEMPOTENT_METHODS,
    Fail,
    Forward,
    Outcome,
    OutcomeKind,
    RequestFacts,
    Step,
)

TEST_TIME_LIMIT = 30.0


def uvloop_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(fn(*args, **kwargs), TEST_TIME_LIMIT)

        uvloop.run(bounded())

    return wrapper


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``check`` until true (AssertionError after ``timeout``): no fixed sleeps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.005)


# --- a scripted engine ---------------------------------------------------------------------


@dataclass(eq=False)
class FakeMember:
    name: str
    config: MemberConfig

    @property
    def recovery_options(self) -> int:
        return self.config.recovery_options


@dataclass
class FakeEngine:
    """Tries its members in order, one Forward each; stops at the first relayed response.

    Like the real engine it refuses to re-send a request the backend may have received unless
    it is idempotent, and never retries after the response started.
    """

    members: list[FakeMember]
    set_cookie: str | None = None
    reply_timeout_ms: int = 0
    fail_on_status: tuple[int, ...] = ()
    activation: str = "ACT"
    plans: list[FakePlan] = field(default_factory=list)

    def plan(self, facts: RequestFacts, now: float) -> FakePlan:
        p = FakePlan(self, facts)
        self.plans.append(p)
        return p

    @property
    def last(self) -> FakePlan:
        return self.plans[-1]


STATUS = {
    OutcomeKind.CONNECT_FAILED: 503,
    OutcomeKind.BUSY: 503,
    OutcomeKind.SEND_FAILED: 503,
    OutcomeKind.READ_FAILED: 502,
    OutcomeKind.BAD_RESPONSE: 502,
    OutcomeKind.REPLY_TIMEOUT: 504,
    OutcomeKind.CLIENT_ERROR: 400,
}


class FakePlan:
    def __init__(self, engine: FakeEngine, facts: RequestFacts) -> None:
        self.engine = engine
        self.facts = facts
        self.i = 0
        self.open: FakeMember | None = None
        self.events: list[tuple[Any, ...]] = []
        self.status = 503
        self.stopped = False
        self.finished = False
        self.opened = 0  # Forwards handed out
        self.closes = 0  # report / finish / response_head False calls

    def next(self, now: float) -> Step:
        assert self.open is None, "next() with a Forward open"
        assert not self.finished, "next() after finish()"
        if self.stopped or self.i >= len(self.engine.members):
            self.events.append(("fail", self.status))
            return Fail(self.status, "fake")
        m = self.engine.members[self.i]
        self.i += 1
        self.open = m
        self.opened += 1
        self.events.append(("forward", m.name))
        return Forward(
            member=m,
            sticky=False,
            set_cookie=self.engine.set_cookie,
            reply_timeout_ms=self.engine.reply_timeout_ms,
            probe=False,
            activation=self.engine.activation,
        )

    def report(self, outcome: Outcome, now: float) -> None:
        assert self.open is not None, "report() without a Forward"
        self.events.append(("report", self.open.name, outcome))
        self.open = None
        self.closes += 1
        self.status = STATUS[outcome.kind]
        if (
            outcome.kind is OutcomeKind.CLIENT_ERROR
            or outcome.response_started
            or (outcome.request_sent and not outcome.replayable)
            or (outcome.request_sent and self.facts.method not in IDEMPOTENT_METHODS)
        ):
            self.stopped = True

    def response_head(
        self, status: int, now: float, *, replayable: bool = True, refusal: str | None = None
    ) -> bool:
        assert self.open is not None, "response_head() without a Forward"
        self.events.append(("head", self.open.name, status))
        if refusal is not None:
            self.events.append(("refusal", self.open.name, refusal))
        if status in self.engine.fail_on_status:
            self.open = None
            self.closes += 1
            self.status = 503
            if not replayable:
                self.stopped = True
            return False
        return True

    def finish(self, bytes_sent: int, bytes_received: int, now: float) -> None:
        assert self.open is not None, "finish() without a Forward"
        self.events.append(("finish", self.open.name))
        self.open = None
        self.closes += 1
        self.finished = True

    @property
    def outcomes(self) -> list[Outcome]:
        return [e[2] for e in self.events if e[0] == "report"]

    @property
    def closed(self) -> bool:
        return self.open is None

    @property
    def balanced(self) -> bool:
        """Every Forward handed out was closed exactly once."""
        return self.open is None and self.opened == self.closes


def member(name: str, port: int, **settings: Any) -> FakeMember:
    settings.setdefault("connection_acquire_timeout", 200)
    cfg = MemberConfig(name=name, type="http", host="127.0.0.1", port=port, **settings)
    return FakeMember(name, cfg)


# --- backends -------------------------------------------------------------------------------


@dataclass
class BackendRequest:
    method: bytes
    url: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: str) -> bytes | None:
        want = name.lower().encode()
        for n, v in self.headers:
            if n.lower() == want:
                return v
        return None

    def all(self, name: str) -> list[bytes]:
        want = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == want]


Responder = Callable[["BackendConn", BackendRequest], Any]


def ok(body: bytes = b"hello", status: int = 200, headers: tuple[bytes, ...] = ()) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


def echo(conn: BackendConn, req: BackendRequest) -> bytes:
    return ok(req.body or req.url)


class BackendConn(asyncio.Protocol):
    """Records every byte and answers each complete request with ``responder``'s bytes."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.cur: BackendRequest | None = None
        self.body: list[bytes] = []
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.echo = False  # after a 101: send every byte back
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    async def drain(self) -> None:
        await self.can_write.wait()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.backend.connections += 1
        self.backend.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.backend.open.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.backend.keep_bodies:
            self.backend.received += data
        if self.echo:
            self.write(data)
            return
        if self.backend.raw:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.echo:
                self.write(data[exc.args[0] :])
        except httptools.HttpParserError:
            self.backend.parse_errors += 1
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.backend.body_bytes += len(body)
        if self.backend.keep_bodies:
            return
        self.body = []

    def on_message_complete(self) -> None:
        req = BackendRequest(
            self.parser.get_method(),
            self.url,
            self.parser.get_http_version(),
            self.headers,
            b"".join(self.body),
        )
        self.backend.requests.append(req)
        result = self.backend.responder(self, req)
        if asyncio.iscoroutine(result):
            asyncio.get_running_loop().create_task(self._later(result))
        elif result is not None:
            self.write(result)

    async def _later(self, coro: Awaitable[bytes | None]) -> None:
        data = await coro
        if data is not None:
            self.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Backend:
    """An in-process HTTP backend on 127.0.0.1: records bytes, requests, connections."""

    def __init__(self, responder: Responder = echo, *, raw: bool = False) -> None:
        self.responder = responder
        self.raw = raw  # only record bytes, never answer
        self.keep_bodies = True  # False: keep neither bodies nor a copy of every byte
        self.received = bytearray()
        self.requests: list[BackendRequest] = []
        self.connections = 0
        self.parse_errors = 0
        self.body_bytes = 0
        self.open: set[BackendConn] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Backend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: BackendConn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for conn in list(self.open):
            conn.abort()
        await self.server.wait_closed()


def dead_port() -> int:
    """A port nobody listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the proxy ----------------------------------------------------------------------------


class Proxy:
    """A ProxyServer on 127.0.0.1:0 whose router sends everything to ``engine``."""

    def __init__(
        self,
        engine: Any = None,
        limits: Limits | None = None,
        router: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.engine = engine
        self.records: list[Any] = []
        kwargs.setdefault("access_log", self.records.append)
        self.server = ProxyServer(router or self.route, limits, **kwargs)
        self.port = 0

    def route(self, request: Any) -> Any:
        if self.engine is None:
            return LocalResponse(404)
        return ProxyTo(self.engine, name="lb")

    async def __aenter__(self) -> Proxy:
        srv = await self.server.start("127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close(grace=0)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        return Client(reader, writer)

    async def request(self, raw: bytes, head: bool = False) -> Response:
        client = await self.connect()
        try:
            client.send(raw)
            return await client.response(head=head)
        finally:
            client.close()


@contextlib.asynccontextmanager
async def proxied(
    limits: Limits | None = None, responder: Responder = echo, **kwargs: Any
) -> AsyncIterator[tuple[Backend, Proxy]]:
    """A backend and a proxy whose one-member fake engine forwards to it."""
    async with Backend(responder) as backend:  # noqa: SIM117 - the proxy needs backend.port
        async with Proxy(FakeEngine([member("a", backend.port)]), limits, **kwargs) as proxy:
            yield backend, proxy


# --- a raw HTTP client ------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool = False

    def header(self, name: str) -> bytes | None:
        want = name.lower().encode()
        for n, v in self.headers:
            if n.lower() == want:
                return v
        return None

    def all(self, name: str) -> list[bytes]:
        want = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == want]


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, head: bool = False, timeout: float = 10.0) -> Response:
        return await asyncio.wait_for(self._response(head), timeout)

    async def _response(self, head: bool) -> Response:
        line = await self.reader.readuntil(b"\r\n")
        version, _, rest = line.rstrip(b"\r\n").partition(b" ")
        assert version.startswith(b"HTTP/1."), line
        code, _, reason = rest.partition(b" ")
        headers = []
        while True:
            hline = await self.reader.readuntil(b"\r\n")
            if hline == b"\r\n":
                break
            name, _, value = hline.rstrip(b"\r\n").partition(b":")
            headers.append((name, value.strip()))
        resp = Response(int(code), reason, headers, b"")
        status = resp.status
        if head or status < 200 or status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None:
            assert te.lower() == b"chunked", te
            resp.chunked = True
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await self.reader.readexactly(size))
                assert await self.reader.readexactly(2) == b"\r\n"
            resp.body = b"".join(parts)
        elif cl is not None:
            resp.body = await self.reader.readexactly(int(cl))
        else:
            resp.body = await self.reader.read()  # close-delimited
        return resp

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (after any bytes still unread)."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b"" or self.reader.at_eof()

    async def rest(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes."""
        try:
            return await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.writer.close()


def get(path: str = "/", host: str = "example.test", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


# --- the kit's own checks -----------------------------------------------------------------


@uvloop_test
async def test_fake_engine_plans_members_in_order_and_stops_after_a_sent_post() -> None:
    engine = FakeEngine([member("a", 1), member("b", 2)])
    plan = engine.plan(RequestFacts("POST", b"/"), 0.0)
    first = plan.next(0.0)
    assert isinstance(first, Forward) and first.member.name == "a"
    plan.report(Outcome(OutcomeKind.READ_FAILED, request_sent=True), 0.0)
    assert isinstance(plan.next(0.0), Fail)


@uvloop_test
async def test_backend_records_bytes_and_answers_each_request() -> None:
    async with Backend() as backend:
        reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
        writer.write(get("/x"))
        client = Client(reader, writer)
        resp = await client.response()
        client.close()
    assert resp.body == b"/x"
    assert bytes(backend.received).startswith(b"GET /x HTTP/1.1\r\n")
