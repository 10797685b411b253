"""The one seam between an exchange and a member: ``MemberConnection``.

``UpstreamConnection`` (http members, upstream.py) and ``AjpConnection`` (ajp13 members,
ajp_upstream.py) both implement it, so the exchange, the relay and the pool never ask which
protocol a member speaks: the exchange hands a connection its request (``send_request``
takes the exchange and frames and writes the head and the body read so far, each protocol its
own way), feeds it the rest of the body (``body_data``, ``request_done``) and holds its reading
back for a slow client. The connection answers through the exchange's ``upstream_*`` calls
and fills the response attributes the relay reads.

``MemberSocket`` holds what both write the same way: the socket options of a new connection
and pausing reads for the client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.pool import MemberPool
    from balancer.dataplane.tunnel import Tunnel


class MemberConnection(Protocol):
    """One pooled connection to a member, as the exchange, the relay and the pool see it."""

    pool: MemberPool
    transport: asyncio.Transport | None
    exchange: Exchange | None
    tunnel: Tunnel | None
    reused: bool
    closed: bool
    discarded: bool
    idle_since: float
    received: int  # response bytes of this request so far
    reply_timeout: float
    # the response head, for the relay
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    fields: Sequence[bytes]  # or the fields as bytes, in pieces (empty when ``headers`` holds them)
    set_cookies: list[bytes] | None
    content_length: int | None
    chunked: bool
    upgrade: bytes | None

    def send_request(self, ex: Exchange, reply_timeout: float, head_request: bool) -> None: ...

    def body_data(self, data: bytes) -> None: ...

    def request_done(self) -> None: ...

    def pause_reading_for_client(self) -> None: ...

    def resume_reading_for_client(self) -> None: ...

    def detach(self) -> None: ...

    def close(self) -> None: ...


class MemberSocket:
    """What the http and the ajp13 connection share: the seam's state, socket setup and client
    backpressure.

    Not an ``asyncio.Protocol`` subclass: the loop only calls the protocol's methods (uvloop
    asks only whether a protocol is a ``BufferedProtocol``), and an extension type (a compiled
    build, ``.pxd`` beside the ``.py``) cannot derive from a Python class.
    """

    __slots__ = (
        "chunked",
        "closed",
        "content_length",
        "discarded",
        "exchange",
        "fields",
        "head_request",
        "headers",
        "idle_since",
        "last_read",
        "loop",
        "pool",
        "read_paused",
        "reason",
        "received",
        "reply_timeout",
        "reused",
        "set_cookies",
        "socket_timeout",
        "status",
        "timer",
        "transport",
        "tunnel",
        "upgrade",
        "write_paused_at",
    )

    def __init__(self, pool: MemberPool) -> None:
        self.pool = pool
        self.loop: asyncio.AbstractEventLoop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.tunnel: Tunnel | None = None
        self.reused = False
        self.closed = False
        self.discarded = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.reply_timeout = 0.0
        self.socket_timeout = 0.0
        self.last_read = 0.0
        self.write_paused_at = 0.0
        self.read_paused = False
        self.received = 0
        self.head_request = False
        self._reset_head()

    def _reset_head(self) -> None:
        """The response head as the relay reads it, before one came."""
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        # the http connection gives its fields as the client gets them, as bytes (field lines
        # ending in CRLF, in pieces; response_head.py), the ajp13 one as ``headers``
        self.fields: Sequence[bytes] = ()
        self.set_cookies: list[bytes] | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        pool = self.pool
        transport.set_write_buffer_limits(high=pool.limits.write_buffer_high)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            if pool.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if pool.socket_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, pool.socket_buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, pool.socket_buffer)

    def send_request(self, ex: Exchange, reply_timeout: float, head_request: bool) -> None:
        """Each protocol's own (``MemberConnection.send_request``). Declared here so that the
        exchange's call is a C call in the compiled build (member_connection.pxd); the ajp13
        connection, a Python subclass, overrides it all the same."""
        raise NotImplementedError

    def pause_reading_for_client(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading_for_client(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.last_read = self.loop.time()
            self.transport.resume_reading()

    def _close_transport(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
