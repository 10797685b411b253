"""UDP multicast I/O for heartbeats: join the group on one interface, send, receive. No decisions.

The interface is explicit (IP_MULTICAST_IF for sending, IP_ADD_MEMBERSHIP on the same address
for receiving) and the shipped configuration and every test use 127.0.0.1 with TTL 0/1, so
heartbeats stay on the loopback device. On Linux this works even though `lo` lacks the
MULTICAST flag and has no 224.0.0.0/4 route: naming the interface address is enough (checked
in the sandbox this was built in; see docs/cluster.md). Multicast loop is on, or members on one
host would not hear each other (Tomcat's localLoopbackDisabled=false, tomcat-cluster.md §1.4).

The receiving socket binds the group address itself, so datagrams for other groups that
happen to use the same port are not delivered to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("pyjk.cluster")

MAX_DATAGRAM = 65_507


def open_receiver(group: str, port: int, interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((group, port))
        membership = socket.inet_aton(group) + socket.inet_aton(interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_sender(interface: str, ttl: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind((interface, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.on_datagram(data)
        except Exception:  # one bad datagram must never stop the receiver
            log.exception("heartbeat handling failed from=%s", addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("multicast receive error: %s", exc)


async def receive_only(
    group: str, port: int, interface: str, on_datagram: Callable[[bytes], None]
) -> asyncio.DatagramTransport:
    """Join the group and hand every datagram to `on_datagram`; never send (a balancer's
    dynamic lb listens to heartbeats without being a member, balancer/cluster_source.py)."""
    rx = open_receiver(group, port, interface)
    try:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Receiver(on_datagram), sock=rx
        )
    except BaseException:
        rx.close()
        raise
    return transport


class Multicast:
    """The group socket pair. `send` never blocks; errors are logged and counted by the caller."""

    def __init__(self, group: str, port: int, interface: str, ttl: int) -> None:
        self.group, self.port, self.interface, self.ttl = group, port, interface, ttl
        self._rx: asyncio.DatagramTransport | None = None
        self._tx: socket.socket | None = None

    async def start(self, on_datagram: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        rx = open_receiver(self.group, self.port, self.interface)
        try:
            self._tx = open_sender(self.interface, self.ttl)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(on_datagram), sock=rx
            )
        except BaseException:
            rx.close()
            if self._tx is not None:
                self._tx.close()
            raise
        self._rx = transport

    def send(self, data: bytes) -> bool:
        if self._tx is None:
            return False
        try:
            self._tx.sendto(data, (self.group, self.port))
        except OSError as exc:  # e.g. ENOBUFS; the next heartbeat comes soon
            log.warning("multicast send failed group=%s:%d: %s", self.group, self.port, exc)
            return False
        return True

    def close(self) -> None:
        if self._rx is not None:
            self._rx.close()
            self._rx = None
        if self._tx is not None:
            self._tx.close()
            self._tx = None
