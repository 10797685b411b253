"""One cap for a TLS listener's connections: those before or in their handshake and the
established ones count against ``worker.max_connections`` together (real TLS over loopback,
the proxy in this process)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from balancer.dataplane import Limits, LocalResponse, ProxyServer
from balancer.dataplane.tls import TlsSettings
from balancer.dataplane.tls_listener import Terminator, TlsListener
from tests.support.certs import make_ca, make_pair
from tests.support.procs import until

pytestmark = pytest.mark.integration


def closed_at_once(port: int) -> bool:
    """Whether a new connection is closed by the listener before sending anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(2)
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def serve(tmp_path: Path) -> tuple[Terminator, ProxyServer, TlsListener, ssl.SSLContext]:
    """A proxy with ``max_connections=2`` and one TLS listener; a client context for it."""
    ca = make_ca(tmp_path)
    pair = make_pair(tmp_path, "a", ["a.test"], ca)
    terminator = Terminator(TlsSettings(pairs=((pair.cert, pair.key),)))
    proxy = ProxyServer(lambda req: LocalResponse(200), Limits(max_connections=2))
    listener = proxy.start_tls("127.0.0.1", 0, terminator)
    return terminator, proxy, listener, ssl.create_default_context(cafile=str(ca.cert))


async def test_handshaking_and_established_connections_share_max_connections(tmp_path: Path):
    terminator, proxy, listener, ctx = serve(tmp_path)
    port = listener.address[1]
    established = await asyncio.to_thread(
        lambda: ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="a.test"
        )
    )
    waiting = socket.create_connection(("127.0.0.1", port), timeout=5)  # no ClientHello yet
    try:
        await until(lambda: len(proxy.connections) == 1 and len(listener.waiting) == 1, 5,
                    what="one established, one waiting")  # fmt: skip
        # a third is one too many: refused before its handshake
        assert await asyncio.to_thread(closed_at_once, port)
        assert terminator.stats.failures["overload"] == 1
    finally:
        established.close()
        waiting.close()
        await proxy.close(grace=0)


async def test_a_plain_connection_counts_the_tls_handshakes_pending_too(tmp_path: Path):
    # before: admit() compared the established connections only, so plain connections came
    # in past max_connections while TLS ones waited for their handshake
    _, proxy, listener, ctx = serve(tmp_path)
    await proxy.start("127.0.0.1", 0)
    plain_port = proxy.servers[0].sockets[0].getsockname()[1]
    tls_port = listener.address[1]
    established = await asyncio.to_thread(
        lambda: ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", tls_port), timeout=5), server_hostname="a.test"
        )
    )
    waiting = socket.create_connection(("127.0.0.1", tls_port), timeout=5)  # no ClientHello
    try:
        await until(lambda: len(proxy.connections) == 1 and len(listener.waiting) == 1, 5,
                    what="one established, one waiting")  # fmt: skip

        def plain() -> bytes:
            with socket.create_connection(("127.0.0.1", plain_port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                return sock.recv(65536)

        answer = await asyncio.to_thread(plain)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
        assert proxy.stats.refused == {"max_connections": 1}
    finally:
        established.close()
        waiting.close()
        await proxy.close(grace=0)
