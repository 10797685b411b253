"""Keep-alive connections to one member, shared by every request of this process.

``connection_pool_size`` bounds the connections (open or opening); a request that finds none
free waits ``connection_acquire_timeout`` for one and is BUSY after that (mod_jk §2.2).
Idle connections are reused newest first and closed after ``connection_pool_timeout`` seconds
of idleness, down to ``connection_pool_minsize``. One connection attempt per request: member
retries are the engine's decision.
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from typing import TYPE_CHECKING, cast

from balancer.dataplane.ajp_upstream import AjpConnection, ajp_settings
from balancer.dataplane.upstream import UpstreamConnection
from balancer.lb.decisions import CONNECT_REFUSED, OutcomeKind

if TYPE_CHECKING:
    from balancer.config.model import MemberConfig
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.limits import Limits
    from balancer.dataplane.member_connection import MemberConnection


class MemberPool:
    __slots__ = (
        "acquire_timeout",
        "ajp",
        "closed",
        "connect_timeout",
        "host",
        "idle",
        "idle_timeout",
        "limits",
        "loop",
        "max_response_head",
        "minsize",
        "n_idle",
        "name",
        "port",
        "size",
        "socket_buffer",
        "socket_keepalive",
        "socket_timeout",
        "source",
        "sweeper",
        "total",
        "waiters",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, cfg: MemberConfig, limits: Limits) -> None:
        self.loop = loop
        self.name = cfg.name
        self.host = cfg.host
        self.port = cfg.port
        self.size = max(1, cfg.connection_pool_size)
        self.minsize = max(0, min(cfg.connection_pool_minsize, self.size))
        self.idle_timeout = float(cfg.connection_pool_timeout)
        connect_ms = cfg.socket_connect_timeout or cfg.socket_timeout * 1000
        self.connect_timeout = connect_ms / 1000 if connect_ms else None
        self.acquire_timeout = max(0, cfg.connection_acquire_timeout) / 1000
        self.socket_timeout = float(cfg.socket_timeout)
        self.socket_keepalive = cfg.socket_keepalive
        self.socket_buffer = cfg.socket_buffer
        self.source = cfg.source
        self.limits = limits
        self.max_response_head = limits.max_response_head_size
        self.ajp = ajp_settings(cfg)  # None: an http member
        # The idle connections, a stack: ``idle[:n_idle]``, newest last, the slots above
        # it None. The list keeps its length as connections are taken and given back: a
        # list popped empty gives its memory back and the next append asks for it again
        # (CPython's list_resize), ~0.5k instructions for every request that takes the
        # only idle connection and gives it back (docs/benchmarks.md, issue 12, session 8).
        self.idle: list[MemberConnection | None] = []
        self.n_idle = 0
        self.total = 0  # open or opening
        self.waiters: deque[Exchange] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<MemberPool {self.name} {self.host}:{self.port} {self.total}/{self.size}>"

    @property
    def busy(self) -> int:
        """Connections in use by a request right now."""
        return self.total - self.n_idle

    def idle_connections(self) -> list[MemberConnection]:
        """The idle connections, oldest first (a copy)."""
        return cast("list[MemberConnection]", self.idle[: self.n_idle])

    def take_idle(self) -> MemberConnection | None:
        """The newest idle connection still open, taken off the stack (None: there is none)."""
        idle = self.idle
        n = self.n_idle
        while n:
            n -= 1
            conn = idle[n]
            idle[n] = None
            self.n_idle = n
            assert conn is not None  # (below n_idle: never None)
            if not conn.closed:
                return conn
        return None

    # --- taking and giving back -------------------------------------------------------------

    def acquire(self, ex: Exchange, fresh: bool = False) -> None:
        """Get ``ex`` a connection: ``ex.pool_ready(conn)`` or ``ex.pool_failed(kind, why)``."""
        if self.total < self.size:
            self._open(ex)
        elif fresh:
            ex.pool_failed(OutcomeKind.BUSY, "pool-exhausted")
        else:
            self.waiters.append(ex)
            ex.pool_timer = self.loop.call_later(self.acquire_timeout, self._waited_too_long, ex)

    def release(self, conn: MemberConnection, now: float = 0.0) -> None:
        """A connection whose response was read to the end, ready for the next request
        (``now``: the loop's time, when the caller read it)."""
        conn.exchange = None
        if conn.timer is not None or conn.read_paused:
            conn.detach()  # (an HTTP connection keeps its timer; see UpstreamConnection.detach)
        if conn.closed or conn.discarded:
            return
        if self.closed:
            self.discard(conn)
            return
        while self.waiters:
            ex = self.waiters.popleft()
            ex.pool_timer.cancel()
            if not ex.done:
                conn.reused = True
                ex.pool_ready(conn)
                return
        conn.idle_since = now or self.loop.time()
        n = self.n_idle
        if n < len(self.idle):
            self.idle[n] = conn
        else:
            self.idle.append(conn)
        self.n_idle = n + 1
        if self.idle_timeout and self.sweeper is None:
            self.sweeper = self.loop.call_later(self.idle_timeout / 2, self._sweep)

    def discard(self, conn: MemberConnection) -> None:
        """Close a connection that cannot be reused (failed, half-read, out of step)."""
        conn.close()
        self._forget(conn)

    def lost(self, conn: MemberConnection) -> None:
        """The connection closed (its ``connection_lost``)."""
        self._forget(conn)

    def forget_tunnel(self, conn: MemberConnection) -> None:
        """The connection switched protocols: it leaves the pool (and stops counting) for good."""
        conn.detach()
        self._forget(conn)

    def _forget(self, conn: MemberConnection) -> None:
        if conn.discarded:
            return
        conn.discarded = True
        self.total -= 1
        idle = self.idle
        for i in range(self.n_idle):
            if idle[i] is conn:
                del idle[i]
                idle.append(None)  # (the stack keeps its length)
                self.n_idle -= 1
                break
        self._serve_waiter()

    def _serve_waiter(self) -> None:
        # a slot came free: open a connection for the longest waiting request
        while self.waiters and self.total < self.size:
            ex = self.waiters.popleft()
            ex.pool_timer.cancel()
            if not ex.done:
                self._open(ex)

    def _waited_too_long(self, ex: Exchange) -> None:
        try:
            self.waiters.remove(ex)
        except ValueError:
            return
        if not ex.done:
            ex.pool_failed(OutcomeKind.BUSY, "pool-exhausted")

    # --- opening ----------------------------------------------------------------------------

    def _open(self, ex: Exchange) -> None:
        self.total += 1
        self.loop.create_task(self._connect(ex))

    async def _connect(self, ex: Exchange) -> None:
        local = (self.source, 0) if self.source else None
        protocol = UpstreamConnection if self.ajp is None else AjpConnection
        try:
            # (cast: the member connections are no asyncio.Protocol subclasses, see
            # member_connection.MemberSocket; the loop needs only their methods)
            async with asyncio.timeout(self.connect_timeout):
                _, made = await self.loop.create_connection(
                    lambda: cast(asyncio.Protocol, protocol(self)),
                    self.host,
                    self.port,
                    local_addr=local,
                )
            conn = cast("UpstreamConnection | AjpConnection", made)
        except OSError as exc:  # TimeoutError included
            self.total -= 1
            if not ex.done:
                ex.pool_failed(OutcomeKind.CONNECT_FAILED, _connect_reason(exc))
            self._serve_waiter()
            return
        if self.closed:
            self.discard(conn)
        elif conn.closed:
            # Lost before its first use (the member died right as it accepted: its kernel
            # completed the handshake, then reset): nothing was sent. uvloop raises on a write
            # to such a transport, which would leave the request waiting forever.
            if not ex.done:
                ex.pool_failed(OutcomeKind.CONNECT_FAILED, "connection-reset")
            self._serve_waiter()
        elif ex.done:
            self.release(conn)
        else:
            conn.reused = False
            ex.pool_ready(conn)

    # --- idle housekeeping ------------------------------------------------------------------

    def _sweep(self) -> None:
        self.sweeper = None
        if self.closed or not self.n_idle:
            return
        limit = self.loop.time() - self.idle_timeout
        # oldest first: idle is a stack, the bottom has waited longest
        while self.n_idle and self.total > self.minsize:
            oldest = self.idle[0]
            assert oldest is not None
            if oldest.idle_since > limit:
                break
            self.discard(oldest)
        if self.n_idle:
            self.sweeper = self.loop.call_later(self.idle_timeout / 2, self._sweep)

    def close(self) -> None:
        """Close idle connections now; busy ones are closed when their exchange ends."""
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conn in self.idle_connections():
            self.discard(conn)
        while self.waiters:
            ex = self.waiters.popleft()
            ex.pool_timer.cancel()
            if not ex.done:
                ex.pool_failed(OutcomeKind.BUSY, "pool-closed")


def _connect_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect-timeout"
    if isinstance(exc, ConnectionRefusedError):
        return CONNECT_REFUSED
    code = getattr(exc, "errno", None)
    if code is not None and code in errno.errorcode:
        return f"connect-{errno.errorcode[code].lower()}"
    return "connect-error"
