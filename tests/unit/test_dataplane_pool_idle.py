"""A member pool's idle connections: a stack taken newest first, whose list keeps its length."""

from __future__ import annotations

import asyncio

from balancer.config.model import MemberConfig
from balancer.dataplane.limits import Limits
from balancer.dataplane.pool import MemberPool
from balancer.dataplane.upstream import UpstreamConnection
from tests.unit.test_dataplane_pool_reset import FakeTransport


def pool_with(n: int) -> tuple[MemberPool, list[UpstreamConnection]]:
    loop = asyncio.new_event_loop()
    loop.close()  # (a clock only: nothing here runs on it)
    pool = MemberPool(loop, MemberConfig("n1", type="http", port=1), Limits())
    conns = [UpstreamConnection(pool) for _ in range(n)]
    for conn in conns:
        conn.transport = FakeTransport()
    pool.total = n  # as _open counts them
    return pool, conns


def test_idle_connections_are_taken_newest_first_and_the_list_keeps_its_length():
    pool, (a, b, c) = pool_with(3)
    for conn, now in ((a, 1.0), (b, 2.0), (c, 3.0)):
        pool.release(conn, now)
    assert pool.idle_connections() == [a, b, c] and pool.busy == 0
    assert (c.idle_since, a.idle_since) == (3.0, 1.0)
    assert pool.take_idle() is c
    assert pool.take_idle() is b
    assert pool.busy == 2 and pool.idle_connections() == [a]
    pool.release(b, 4.0)
    assert pool.idle_connections() == [a, b]
    assert len(pool.idle) == 3  # (the slot c left is kept: no list shrinking and growing)
    assert [pool.take_idle(), pool.take_idle(), pool.take_idle()] == [b, a, None]
    assert pool.busy == 3 and len(pool.idle) == 3


def test_a_closed_idle_connection_is_passed_over_and_dropped():
    pool, (a, b) = pool_with(2)
    pool.release(a, 1.0)
    pool.release(b, 2.0)
    b.closed = True  # closed, its connection_lost not yet run
    assert pool.take_idle() is a
    assert pool.idle_connections() == [] and pool.take_idle() is None


def test_a_connection_that_goes_while_idle_leaves_the_stack_in_order():
    pool, (a, b, c) = pool_with(3)
    for conn in (a, b, c):
        pool.release(conn, 1.0)
    pool.discard(b)  # closed and forgotten from the middle of the stack
    assert pool.idle_connections() == [a, c] and pool.total == 2
    assert pool.take_idle() is c
    pool.release(c, 2.0)
    assert pool.idle_connections() == [a, c]
    pool.close()
    assert pool.idle_connections() == [] and pool.total == 0
    assert a.closed and c.closed
