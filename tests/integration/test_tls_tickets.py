"""Session resumption on pyjk's TLS listener: off by default, and with
``--tls-session-tickets`` a ticket resumes until the next key rotation (real TLS over
loopback, the listener in this process)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import pytest

from balancer.dataplane.tls import TlsSettings
from balancer.dataplane.tls_listener import Terminator, TlsListener
from balancer.dataplane.tls_tickets import next_secret, period_of
from tests.support.certs import make_ca, make_pair
from tests.support.procs import until

pytestmark = pytest.mark.integration


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def connect(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[bool, ssl.SSLSession | None]:
    """One connection: (whether it resumed ``session``, the session to offer next)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="a.test", session=session) as sock,
    ):
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"  # reading lets the TLS 1.3 tickets arrive
        return sock.session_reused, sock.session


async def serve(tmp: Path, rotation: float) -> tuple[Terminator, TlsListener, ssl.SSLContext]:
    ca = make_ca(tmp)
    pair = make_pair(tmp, "a", ["a.test"], ca)
    terminator = Terminator(TlsSettings(pairs=((pair.cert, pair.key),), ticket_rotation=rotation))
    listener = TlsListener(terminator, Echo, lambda: True)
    listener.start("127.0.0.1", 0)
    return terminator, listener, ssl.create_default_context(cafile=str(ca.cert))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_without_tickets_nothing_resumes(tmp_path: Path, version: ssl.TLSVersion):
    _, listener, ctx = await serve(tmp_path, 0)
    ctx.maximum_version = version
    try:
        port = listener.address[1]
        reused, session = await asyncio.to_thread(connect, port, ctx, None)
        assert not reused
        reused, _ = await asyncio.to_thread(connect, port, ctx, session)
        assert not reused
    finally:
        listener.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_ticket_resumes_until_the_keys_rotate(tmp_path: Path, version: ssl.TLSVersion):
    terminator, listener, ctx = await serve(tmp_path, 3600)
    ctx.maximum_version = version
    try:
        port = listener.address[1]
        _, session = await asyncio.to_thread(connect, port, ctx, None)
        reused, session = await asyncio.to_thread(connect, port, ctx, session)
        assert reused
        # a reload rebuilds the contexts within the period: the keys stay, sessions resume
        assert terminator.reload()
        reused, session = await asyncio.to_thread(connect, port, ctx, session)
        assert reused
        old = session
        terminator.rotate_keys(terminator.period + 1)  # what rotate() does at the boundary
        # the previous period's key still opens its tickets, once, and issues a new one
        reused, session = await asyncio.to_thread(connect, port, ctx, session)
        assert reused
        terminator.rotate_keys(terminator.period + 1)
        reused, _ = await asyncio.to_thread(connect, port, ctx, old)
        assert not reused  # two boundaries later the old key is gone: one full handshake
        reused, _ = await asyncio.to_thread(connect, port, ctx, session)
        assert reused  # the renewed ticket is of the period before: it still resumes
    finally:
        listener.close()


async def test_a_ticket_from_one_process_resumes_on_another_with_the_same_secret(tmp_path: Path):
    # two processes' listeners: the supervisor's secret gives both the same keys
    ca = make_ca(tmp_path)
    pair = make_pair(tmp_path, "a", ["a.test"], ca)
    settings = TlsSettings(pairs=((pair.cert, pair.key),), ticket_rotation=3600)
    period = period_of(time.time(), 3600)
    secret = b"s" * 32  # what the supervisor published for this period
    one = TlsListener(Terminator(settings, ticket_secret=(period, secret)), Echo, lambda: True)
    other = TlsListener(Terminator(settings, ticket_secret=(period, secret)), Echo, lambda: True)
    stranger = TlsListener(
        Terminator(settings, ticket_secret=(period, b"t" * 32)), Echo, lambda: True
    )
    for listener in (one, other, stranger):
        listener.start("127.0.0.1", 0)
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    try:
        assert one.terminator.shared_keys
        _, session = await asyncio.to_thread(connect, one.address[1], ctx, None)
        reused, session = await asyncio.to_thread(connect, other.address[1], ctx, session)
        assert reused
        reused, _ = await asyncio.to_thread(connect, stranger.address[1], ctx, session)
        assert not reused
        # both cross the boundary on their own: a ticket of the period before still resumes
        # on either, and a process started after it from the republished secret (s_p+1)
        # opens what the others issue now
        _, old = await asyncio.to_thread(connect, one.address[1], ctx, None)
        for listener in (one, other):
            listener.terminator.rotate_keys(period + 1)
        reused, renewed = await asyncio.to_thread(connect, other.address[1], ctx, old)
        assert reused
        late = TlsListener(
            Terminator(settings, ticket_secret=(period + 1, next_secret(secret))),
            Echo,
            lambda: True,
        )
        late.start("127.0.0.1", 0)
        try:
            reused, _ = await asyncio.to_thread(connect, late.address[1], ctx, renewed)
            assert reused
        finally:
            late.close()
    finally:
        for listener in (one, other, stranger):
            listener.close()


async def test_the_keys_rotate_at_each_period_boundary(tmp_path: Path):
    terminator, listener, ctx = await serve(tmp_path, 0.5)
    task = asyncio.create_task(terminator.rotate())
    try:
        port = listener.address[1]
        first = terminator.period
        await until(lambda: terminator.period > first, 5, what="a new period")
        _, session = await asyncio.to_thread(connect, port, ctx, None)
        period = terminator.period
        await until(lambda: terminator.period > period, 5, what="the next period")
        reused, _ = await asyncio.to_thread(connect, port, ctx, session)
        if terminator.period == period + 1:  # (a loaded machine may have crossed two)
            assert reused  # the previous period's key opens it once more
        await until(lambda: terminator.period > period + 1, 5, what="one more period")
        reused, _ = await asyncio.to_thread(connect, port, ctx, session)
        assert not reused
        assert terminator.stats.reloads == 0  # the keys changed, not the contexts
    finally:
        task.cancel()
        listener.close()
