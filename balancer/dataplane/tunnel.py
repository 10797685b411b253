"""After a 101 Switching Protocols: bytes flow both ways untouched until either side closes.

Backpressure: when one side's write buffer fills, the other side stops reading until it
drains. An end-of-stream is passed on as a half-close; the tunnel closes when both directions
have ended or either connection is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from balancer.dataplane.downstream import ClientConnection
    from balancer.dataplane.member_connection import MemberConnection


class _Side(Protocol):
    transport: asyncio.Transport | None
    tunnel: Tunnel | None


class Tunnel:
    __slots__ = ("client", "closed", "eofs", "up")

    def __init__(
        self, client: ClientConnection, up: MemberConnection, from_client: bytes, from_up: bytes
    ) -> None:
        self.client = client
        self.up = up
        self.eofs = 0
        self.closed = False
        up.tunnel = self
        client.start_tunnel(self)
        if from_up:
            self.data_from(up, from_up)
        if from_client:
            self.data_from(client, from_client)
        if client.eof:
            self.side_eof(client)

    def _other(self, side: _Side) -> _Side:
        return self.up if side is self.client else self.client

    def data_from(self, side: _Side, data: bytes) -> None:
        transport = self._other(side).transport
        if transport is not None and not self.closed:
            transport.write(data)

    def pause_from(self, side: _Side) -> None:
        """``side`` cannot take more: stop reading the other one."""
        transport = self._other(side).transport
        if transport is not None and not self.closed:
            transport.pause_reading()

    def resume_from(self, side: _Side) -> None:
        transport = self._other(side).transport
        if transport is not None and not self.closed:
            transport.resume_reading()

    def side_eof(self, side: _Side) -> bool:
        """``side`` will send nothing more; returns whether its transport stays open."""
        self.eofs += 1
        other = self._other(side).transport
        if self.eofs >= 2 or other is None:
            self.close()
            return False
        if other.can_write_eof():
            other.write_eof()
            return True
        self.close()
        return False

    def side_lost(self, side: _Side) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.up):
            transport = side.transport
            if transport is not None and not transport.is_closing():
                transport.close()
