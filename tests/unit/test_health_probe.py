"""Which members are probed and how (``probe_spec``, the ping_mode mapping), and one probe
against real loopback servers (``run_probe``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from balancer.config import parse_workers
from balancer.config.model import MemberConfig
from balancer.health import PING_PASS_BELOW, ProbeSpec, probe_spec
from balancer.health_probe import (
    AJP_CPING,
    AJP_CPONG,
    parse_status_line,
    request_bytes,
    run_probe,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def member(text: str, name: str = "n1") -> MemberConfig:
    cfg, _ = parse_workers(
        f"worker.list={name}\nworker.{name}.type=http\nworker.{name}.port=8101\n{text}"
    )
    return cfg.members[name]


# -- probe_spec: which members are probed ---------------------------------------------------


def test_members_without_health_check_or_ping_mode_are_not_probed():
    assert probe_spec(member("")) is None
    assert probe_spec(member("worker.n1.health_check_interval=0")) is None


def test_health_check_interval_turns_the_readiness_probe_on():
    spec = probe_spec(
        member(
            "worker.n1.health_check_interval=2500\nworker.n1.health_check_path=/ping\n"
            "worker.n1.ping_timeout=700\nworker.n1.socket_connect_timeout=300\n"
            "worker.n1.health_check_rise=3\nworker.n1.health_check_fall=4"
        )
    )
    assert spec is not None
    assert (spec.protocol, spec.host, spec.port, spec.path) == ("http", "localhost", 8101, "/ping")
    assert (spec.interval, spec.timeout, spec.connect_timeout) == (2.5, 0.7, 0.3)
    assert (spec.rise, spec.fall, spec.pass_below) == (3, 4, 400)


def test_ping_mode_i_probes_every_ping_timeout_hundredth_second():
    spec = probe_spec(member("worker.n1.ping_mode=I\nworker.n1.ping_timeout=3000"))
    assert spec is not None
    assert (spec.interval, spec.timeout, spec.path) == (30.0, 3.0, "/-/ready")
    assert spec.pass_below == PING_PASS_BELOW


def test_ping_mode_i_uses_connection_ping_interval_when_set():
    spec = probe_spec(member("worker.n1.ping_mode=A\nworker.n1.connection_ping_interval=7"))
    assert spec is not None and spec.interval == 7.0


@pytest.mark.parametrize(
    "text", ["worker.n1.ping_mode=C", "worker.n1.ping_mode=P", "worker.n1.connect_timeout=500"]
)
def test_ping_mode_c_or_p_turns_the_interval_probe_on(text):
    spec = probe_spec(member(text))
    assert spec is not None
    assert spec.interval == 100.0  # ping_timeout 10000 ms / 100
    assert spec.pass_below == PING_PASS_BELOW


def test_an_explicit_health_check_interval_wins_over_ping_mode():
    spec = probe_spec(member("worker.n1.ping_mode=A\nworker.n1.health_check_interval=1000"))
    assert spec is not None and spec.interval == 1.0 and spec.pass_below == 400


def test_ajp13_members_are_probed_with_cping():
    spec = probe_spec(MemberConfig("a1", type="ajp13", ping_mode="I", connection_ping_interval=5))
    assert spec is not None and spec.protocol == "ajp13"


def test_a_zero_ping_timeout_still_bounds_the_probe():
    spec = probe_spec(MemberConfig("n1", type="http", health_check_interval=100, ping_timeout=0))
    assert spec is not None and spec.timeout > 0 and spec.connect_timeout > 0


# -- the request and the status line --------------------------------------------------------


def test_the_probe_request_closes_and_names_the_member():
    spec = probe_spec(MemberConfig("n1", type="http", host="::1", port=81, health_check_interval=1))
    assert spec is not None
    assert request_bytes(spec) == (
        b"GET /-/ready HTTP/1.1\r\nHost: [::1]:81\r\nConnection: close\r\n"
        b"User-Agent: pyjk-health\r\nAccept: */*\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 503 Service Unavailable\r\n", 503),
        (b"HTTP/1.1 204\r\n", 204),
        (b"HTTP/1.1 302 \r\n", 302),
    ],
)
def test_status_lines_are_read_strictly(line, status):
    assert parse_status_line(line) == status


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 200 OK\n",
        b"HTTP/2 200\r\n",
        b"HTTP/1.1 20 OK\r\n",
        b"HTTP/1.1 099 X\r\n",
        b"http/1.1 200 OK\r\n",
        b"HTTP/1.1  200 OK\r\n",
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 200 O\rK\r\n",
    ],
)
def test_anything_else_is_not_a_status_line(line):
    with pytest.raises(ValueError):
        parse_status_line(line)


# -- run_probe against loopback servers -----------------------------------------------------


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def answering(raw: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handle


def http_spec(port: int, **changes: object) -> ProbeSpec:
    spec = probe_spec(
        MemberConfig(
            "n1", type="http", host="127.0.0.1", port=port, health_check_interval=50,
            ping_timeout=500, socket_connect_timeout=500,
        )
    )  # fmt: skip
    assert spec is not None
    return replace(spec, **changes)  # type: ignore[arg-type]


def status(code: int, reason: str = "X") -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 2\r\n\r\nok".encode()


@pytest.mark.parametrize(("code", "passed"), [(200, True), (204, True), (302, True), (404, False)])
async def test_readiness_probe_passes_on_2xx_and_3xx(code, passed):
    seen: list[bytes] = []
    async with server(answering(status(code), seen)) as port:
        result = await run_probe(http_spec(port))
    assert (result.passed, result.status, result.detail) == (passed, code, f"status {code}")
    assert seen == [request_bytes(http_spec(port))]


@pytest.mark.parametrize(("code", "passed"), [(404, True), (499, True), (500, False), (503, False)])
async def test_ping_mode_probe_passes_on_any_answer_below_500(code, passed):
    async with server(answering(status(code))) as port:
        result = await run_probe(http_spec(port, pass_below=PING_PASS_BELOW))
    assert result.passed is passed


async def test_interim_answers_are_skipped():
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + status(503)
    async with server(answering(raw)) as port:
        result = await run_probe(http_spec(port))
    assert (result.passed, result.status) == (False, 503)


async def test_a_refused_connection_fails():
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_probe(http_spec(port))
    assert not result.passed and result.detail == "connect-refused"


async def test_no_answer_within_ping_timeout_fails():
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    async with server(silent) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await run_probe(http_spec(port, timeout=0.1))
        took = loop.time() - started
        release.set()
    assert not result.passed and result.detail == "no-answer within 100ms"
    assert took < 2.0


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "closed-before-answer"),
        (b"HTTP/1.1 200", "closed-before-answer"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "bad-status-line"),
        (b"HTTP/1.1 200 " + b"x" * 10_000 + b"\r\n", "line-too-long"),
    ],
)
async def test_broken_answers_fail(raw, detail):
    async with server(answering(raw)) as port:
        result = await run_probe(http_spec(port))
    assert not result.passed and result.detail == detail


async def test_ajp13_member_passes_on_cpong():
    async def container(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readexactly(len(AJP_CPING)) == AJP_CPING:
            writer.write(AJP_CPONG)
            await writer.drain()
        await reader.read()  # an AJP connection stays open until the peer closes it
        writer.close()

    async with server(container) as port:
        result = await run_probe(http_spec(port, protocol="ajp13"))
    assert result.passed and result.detail == "cpong"


async def test_ajp13_member_fails_on_anything_but_cpong():
    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(AJP_CPING))
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async with server(http_server) as port:
        result = await run_probe(http_spec(port, protocol="ajp13"))
    assert not result.passed and result.detail == "not-a-cpong"


# -- cancellation: stopping the monitor must end a probe whatever step it is in ----------------


async def test_a_cancel_arriving_as_the_connection_completes_ends_the_probe(monkeypatch):
    """Python 3.11's ``asyncio.wait_for`` returned the result and dropped a cancel that came in
    the same loop turn as the awaited future's completion (gh-86296); the health monitor's
    ``stop`` then waited forever on a probe that went on (a CI run hung here)."""
    import balancer.health_probe as health_probe

    loop = asyncio.get_running_loop()
    connected: asyncio.Future[tuple[asyncio.StreamReader, object]] = loop.create_future()

    async def open_connection(*args: object, **kw: object) -> object:
        return await connected

    monkeypatch.setattr(health_probe.asyncio, "open_connection", open_connection)
    spec = probe_spec(member("worker.n1.health_check_interval=1000"))
    assert spec is not None
    probe = asyncio.create_task(run_probe(spec))
    for _ in range(3):  # the probe reaches the await of the connection
        await asyncio.sleep(0)
    assert not probe.done()
    connected.set_result((asyncio.StreamReader(), None))
    probe.cancel()  # the same loop turn as the completion
    with pytest.raises(asyncio.CancelledError):
        await probe
