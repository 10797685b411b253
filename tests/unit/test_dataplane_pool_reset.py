"""A pooled connection reset between accept and its first use fails over, never hangs."""

from __future__ import annotations

import asyncio

from balancer.config.model import MemberConfig
from balancer.dataplane.limits import Limits
from balancer.dataplane.pool import MemberPool
from balancer.lb.decisions import OutcomeKind


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.written = b""

    def write(self, data: bytes) -> None:  # uvloop raises here on a reset transport
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Exchange:
    done = False

    def __init__(self) -> None:
        self.failed: list[tuple[OutcomeKind, str]] = []
        self.ready: list[object] = []

    def pool_failed(self, kind: OutcomeKind, reason: str) -> None:
        self.failed.append((kind, reason))
        self.done = True

    def pool_ready(self, conn: object) -> None:
        self.ready.append(conn)


async def test_a_connection_reset_before_its_first_use_is_a_connect_failure():
    loop = asyncio.get_running_loop()
    pool = MemberPool(loop, MemberConfig("n1", type="http", port=1), Limits())

    async def create_connection(factory, host, port, local_addr=None):
        conn = factory()
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.connection_lost(ConnectionResetError(104, "reset"))  # the member died as it accepted
        return transport, conn

    pool.loop = type("Loop", (), {"create_connection": staticmethod(create_connection)})()
    pool.total += 1  # as _open does before it starts _connect
    ex = Exchange()
    await pool._connect(ex)  # type: ignore[arg-type]
    assert ex.ready == []
    assert ex.failed == [(OutcomeKind.CONNECT_FAILED, "connection-reset")]
    assert pool.total == 0
