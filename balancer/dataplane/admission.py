"""Who gets in, and on what terms: the process's connection cap, the per-IP cap, whose
forwarded fields count, and the limits an admitted connection is held to.

One object per ``ProxyServer``, asked once per client connection when it is made
(``admit``) and told when it is lost (``release``). It keeps the set of open client
connections and the count per peer address; TLS connections still before or in their
handshake (``tls_listener.py``) count against the same cap, so separate caps cannot let
twice as many in.

Compiled by Cython (admission.pxd): the client connection calls it at C level, so accepting
a connection runs no Python frame of pyjk's (issue 12, the close scenario: a new connection
per request).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from balancer.dataplane.limits import Limits
    from balancer.dataplane.stats import TrafficStats
    from balancer.dataplane.tls_listener import TlsListener

# entries of the trusted-peer cache before it is emptied (bounded memory under many peers)
TRUSTED_CACHE_SIZE = 4096


class Admission:
    __slots__ = (
        "body_timeout",
        "connections",
        "header_timeout",
        "keepalive_timeout",
        "max_body_size",
        "max_connections",
        "max_head_size",
        "max_headers",
        "max_per_ip",
        "max_pipelined",
        "per_ip",
        "refused",
        "replay_buffer_size",
        "stats",
        "tls_listeners",
        "trusted_cache",
        "trusted_networks",
        "write_buffer_high",
    )

    def __init__(
        self,
        limits: Limits,
        stats: TrafficStats,
        trusted_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
        tls_listeners: list[TlsListener],
    ) -> None:
        self.max_connections = limits.max_connections
        self.max_per_ip = limits.max_connections_per_ip  # 0: no per-IP cap
        self.stats = stats
        self.trusted_networks = tuple(trusted_networks)
        self.trusted_cache: dict[str, bool] = {}
        # the server's own list (listeners are added to it after this is made)
        self.tls_listeners = tls_listeners
        self.connections: set[object] = set()  # the admitted client connections still open
        self.per_ip: dict[str, int] = {}  # open connections by peer address
        self.refused = 0  # connections turned away by the caps
        # The limits every client connection copies when it is made (ClientConnection), read
        # here as C fields: a read of a Limits attribute is a Python lookup, eight of them per
        # connection.
        self.max_head_size = limits.max_head_size
        self.max_headers = limits.max_headers
        self.max_pipelined = limits.max_pipelined
        self.max_body_size = limits.max_body_size
        self.replay_buffer_size = limits.replay_buffer_size
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self.write_buffer_high = limits.write_buffer_high

    def open_count(self) -> int:
        """The client connections that count against the cap: the established ones and those
        still before or in their TLS handshake."""
        if not self.tls_listeners:  # plain HTTP only: no generator per accepted connection
            return len(self.connections)
        n = len(self.connections)
        for t in self.tls_listeners:  # (loops, not generators: a compiled cpdef has no closures)
            n += len(t.waiting) + len(t.handshaking)
        return n

    def has_room(self) -> bool:
        return self.open_count() < self.max_connections

    def admit(self, conn: object, ip: str, secure: bool) -> int:
        """0 when ``conn`` (from peer address ``ip``) is admitted, else the status to turn it
        away with (503)."""
        if self.tls_listeners:
            # a TLS connection is admitted while its handshake still counts as pending
            n_open = self.open_count()
            if secure:
                for t in self.tls_listeners:
                    if t.handshaking:
                        n_open -= 1
                        break
        else:
            n_open = len(self.connections)
        if n_open >= self.max_connections:
            self.refused += 1
            self.stats.refuse("max_connections")
            return 503
        n = self.per_ip.get(ip, 0)
        if self.max_per_ip and n >= self.max_per_ip:
            self.refused += 1
            self.stats.refuse("max_connections_per_ip")
            return 503
        self.per_ip[ip] = n + 1
        self.connections.add(conn)
        self.stats.accepted += 1
        return 0

    def release(self, conn: object, ip: str) -> None:
        """``conn`` is closed: it no longer counts (a connection never admitted is ignored)."""
        if conn in self.connections:
            self.connections.discard(conn)
            n = self.per_ip.get(ip, 1) - 1
            if n > 0:
                self.per_ip[ip] = n
            else:
                self.per_ip.pop(ip, None)

    def is_trusted(self, ip: str) -> bool:
        """Whether the peer at ``ip`` is a trusted proxy (its X-Forwarded-*/Forwarded fields are
        kept and appended to)."""
        if not self.trusted_networks or not ip:
            return False
        known = self.trusted_cache.get(ip)
        if known is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            known = False
            for net in self.trusted_networks:
                if addr in net:
                    known = True
                    break
            if len(self.trusted_cache) > TRUSTED_CACHE_SIZE:
                self.trusted_cache.clear()
            self.trusted_cache[ip] = known
        return known
