"""The data plane as one object: listening sockets, client connections, member pools.

Wiring (balancer/server.py) gives it a router and the limits; the router returns, per
request, a local answer or an engine to plan with (``balancer.dataplane.routes``)::

    proxy = ProxyServer(router, Limits(), trusted_proxies=["10.0.0.0/8"], access_log=print)
    await proxy.start("127.0.0.1", 8080)
    ...
    await proxy.close(grace=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, cast

from balancer.dataplane.admission import Admission
from balancer.dataplane.downstream import ClientConnection
from balancer.dataplane.limits import Limits
from balancer.dataplane.pool import MemberPool
from balancer.dataplane.proxy_core import ProxyCore
from balancer.dataplane.response_head import has_field
from balancer.dataplane.stats import TrafficStats
from balancer.dataplane.timer_wheel import TimerWheel
from balancer.dataplane.tls_listener import Terminator, TlsListener

if TYPE_CHECKING:
    import socket

    from balancer.config.model import MemberConfig
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.routes import Router


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One answered request, for the access log."""

    client_ip: str
    method: str
    target: str
    status: int  # 499: the client went away first
    response_bytes: int  # body bytes relayed from the member, or the local answer's size
    duration: float  # seconds from the complete head to the end of the answer
    worker: str  # the routed worker (ProxyTo.name), "" for local answers
    member: str  # the member of the last try, "" if none
    request_id: str
    connect: float = 0.0  # seconds from the head to a member connection (last try), 0 if none
    first_byte: float = 0.0  # seconds from the head to the response head going out


def _default_member_config(member: object) -> MemberConfig:
    return member.config  # type: ignore[attr-defined,no-any-return]


class ProxyServer(ProxyCore):
    """Accepts clients and forwards their requests as the router and the engine decide.

    ``router(request)`` → LocalResponse | LocalHandler | ProxyTo, called once per request.
    ``trusted_proxies``: addresses or networks whose X-Forwarded-*/Forwarded fields are kept
    and appended to; anyone else's are replaced. ``member_config(member)`` gives the
    MemberConfig of a ``Forward.member`` (default: its ``config`` attribute). ``secure``: every
    listener is TLS (X-Forwarded-Proto https, RequestFacts.secure); ``start_tls`` adds one
    HTTPS listener beside plain ones.

    What an exchange reads of it per request (router, stats, access log, pools by member,
    request ids) is its base's (proxy_core.py): C fields in the compiled build.
    """

    def __init__(
        self,
        router: Router,
        limits: Limits | None = None,
        trusted_proxies: Iterable[str] = (),
        access_log: Callable[[AccessRecord], None] | None = None,
        *,
        member_config: Callable[[object], MemberConfig] = _default_member_config,
        secure: bool = False,
    ) -> None:
        # the request ids' prefix: random per process start (ProxyCore.next_request_id)
        super().__init__(router, TrafficStats(), secrets.token_hex(6).encode("ascii") + b"-")
        self.limits = limits or Limits()
        self.access_log = access_log
        self.member_config = member_config
        self.secure = secure
        self._loop: asyncio.AbstractEventLoop | None = None
        # the client connections' deadlines, one loop timer for all (made by start*)
        self.wheel = None
        self.servers: list[asyncio.Server] = []
        self.tls_listeners: list[TlsListener] = []
        # who gets in (the connection caps) and whose forwarded fields are kept
        self.admission = Admission(
            self.limits,
            self.stats,
            [ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies],
            self.tls_listeners,
        )
        self.connections: set[ClientConnection] = self.admission.connections  # type: ignore[assignment]
        self.per_ip: dict[str, int] = self.admission.per_ip
        self.pools: dict[tuple[str, str, int], MemberPool] = {}
        # "Strict-Transport-Security: ..." for responses on TLS connections (--hsts), or b""
        self.hsts = b""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def refused(self) -> int:
        """Connections turned away by the caps."""
        return self.admission.refused

    def _listening(self) -> asyncio.AbstractEventLoop:
        """The running loop, and the deadline wheel on it (once)."""
        self._loop = loop = asyncio.get_running_loop()
        if self.wheel is None:
            self.wheel = TimerWheel(loop)
        return loop

    # --- listening --------------------------------------------------------------------------

    async def start(
        self, host: str | None = "127.0.0.1", port: int | None = 8080, **kwargs: object
    ) -> asyncio.Server:
        """Listen on ``host:port`` (``kwargs`` go to ``loop.create_server``: sock, ssl, ...)."""
        loop = self._listening()
        kwargs.setdefault("backlog", 1024)
        # the protocol factory as a partial of the class: uvloop calls it per connection, and a
        # partial makes the connection without running a Python frame
        factory = partial(ClientConnection, self)
        server: asyncio.Server = await loop.create_server(factory, host, port, **kwargs)  # type: ignore[call-overload]
        self.servers.append(server)
        return server

    def start_tls(
        self, host: str, port: int, terminator: Terminator, sock: socket.socket | None = None
    ) -> TlsListener:
        """Listen for HTTPS on ``host:port`` (or the listening ``sock`` given) with
        ``terminator``'s certificates."""
        self._listening()

        def secure_connection() -> asyncio.Protocol:
            conn = ClientConnection(self)
            conn.secure = True
            # (cast: ClientConnection is no asyncio.Protocol subclass — an extension type
            # cannot derive from a Python class — yet has every method uvloop calls)
            return cast(asyncio.Protocol, conn)

        listener = TlsListener(terminator, secure_connection, self.admission.has_room)
        listener.start(host, port, sock=sock)
        self.tls_listeners.append(listener)
        return listener

    def stop_listening(self) -> None:
        """Close the listening sockets (again: a no-op); connections open go on."""
        for server in self.servers:
            server.close()
        for listener in self.tls_listeners:
            listener.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace`` s, close all."""
        self.stop_listening()
        deadline = monotonic() + grace
        while any(c.exchange is not None for c in self.connections) and monotonic() < deadline:
            for conn in list(self.connections):
                if conn.exchange is None and not conn.queue:
                    conn.close()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for pool in self.pools.values():
            pool.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        if self.wheel is not None:
            self.wheel.close()

    def hsts_for(self, headers: list[tuple[bytes, bytes]], fields: Sequence[bytes] = ()) -> bytes:
        """The HSTS field to add to a response over TLS: none when the member set its own (in
        ``headers``, or in ``fields``, the bytes of the http connection's, relay.py)."""
        if fields:
            return b"" if has_field(fields, b"strict-transport-security") else self.hsts
        for name, _ in headers:
            if len(name) == 25 and name.lower() == b"strict-transport-security":
                return b""
        return self.hsts

    # --- client connections -----------------------------------------------------------------

    def tls_has_room(self) -> bool:
        return self.admission.has_room()

    def is_trusted(self, ip: str) -> bool:
        """Whether ``ip`` is a trusted proxy's (its X-Forwarded-*/Forwarded fields are kept)."""
        return self.admission.is_trusted(ip)

    # --- member pools -----------------------------------------------------------------------

    def pool_for(self, member: object) -> MemberPool:
        hit = self.pools_by_member.get(id(member))
        if hit is not None and hit[0] is member:
            return hit[1]
        cfg = self.member_config(member)
        key = (cfg.name, cfg.host, cfg.port)
        pool = self.pools.get(key)
        if pool is None or pool.closed:
            pool = MemberPool(self.loop, cfg, self.limits)
            self.pools[key] = pool
        self.pools_by_member[id(member)] = (member, pool)
        return pool

    def pool_has_room(self, member: object) -> bool:
        """Whether a request for ``member`` would get a connection without waiting (for
        ``LbEngine.pool_has_room``: an OK/BUSY member is put back to OK when it has)."""
        hit = self.pools_by_member.get(id(member))
        if hit is None or hit[0] is not member:
            return True
        pool = hit[1]
        return pool.n_idle > 0 or pool.total < pool.size

    def prune_pools(self, keep: Iterable[MemberConfig]) -> None:
        """After a reload: close the pools of members that are gone or moved."""
        wanted = {(c.name, c.host, c.port) for c in keep}
        for key in list(self.pools):
            if key not in wanted:
                self.pools.pop(key).close()
        self.pools_by_member = {k: v for k, v in self.pools_by_member.items() if not v[1].closed}

    # --- the end of a request: the access log --------------------------------------------

    def log_access(self, ex: Exchange, worker: str, first: float, total: float) -> None:
        """The access log's record of a request that ended (``Exchange._observe`` calls this
        after the request's observation, only when an access log is configured): ``worker``
        routed it, ``first`` and ``total`` are its seconds to the response head and to the end."""
        access_log = self.access_log
        if access_log is None:
            return
        req = ex.req
        started = ex.started
        record = AccessRecord(
            client_ip=req.client_ip,
            method=req.method.decode("latin-1"),
            target=req.target.decode("latin-1"),
            status=ex.status,
            response_bytes=ex.resp_bytes,
            duration=total,
            worker=worker,
            member=ex.member,
            request_id=ex.request_id.decode("ascii"),
            connect=ex.attached_at - started if ex.attached_at else 0.0,
            first_byte=first,
        )
        with contextlib.suppress(Exception):  # a logging sink must not break the request path
            access_log(record)

    def log_refusal(self, conn: ClientConnection, status: int, response_bytes: int) -> None:
        """A request refused before routing (malformed, too large, too slow) is logged too."""
        self.stats.reject(status)
        access_log = self.access_log
        if access_log is None:
            return
        record = AccessRecord(conn.peer_ip, "-", "-", status, response_bytes, 0.0, "", "", "")
        with contextlib.suppress(Exception):
            access_log(record)
