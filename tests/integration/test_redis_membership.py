"""Workers on a Redis store still announce themselves when their cluster file has a
[membership] section: a balancer's dynamic lb adds them by their heartbeats and drops them when
they stop, and the sessions they serve live in Redis (real redis-server, real multicast on
loopback, real balancer)."""

from __future__ import annotations

import signal

import pytest

from tests.integration.conftest import Stack
from tests.integration.redis_kit import RedisServer, needs_redis
from tests.integration.test_balancer_dynamic import MOUNTS, counter, dynamic_workers, has_members
from tests.integration.test_cluster_kit import Cluster
from tests.support.procs import free_port, wait_for

pytestmark = [pytest.mark.integration, needs_redis]


def test_a_dynamic_lb_routes_to_two_workers_on_one_redis(stack: Stack):
    redis = RedisServer(stack.group, stack.tmp / "redis", free_port()).start()
    cluster = Cluster(stack.group, stack.tmp)
    config = cluster.config(store={"kind": "redis", "url": redis.url})
    stack.start_balancer(dynamic_workers(config), MOUNTS, args=("--processes", "1"))
    wait_for(lambda: "listens to cluster" in stack.balancer.output(), 10, what="the listener")
    n1, n2 = cluster.start_many(["n1", "n2"], config)
    wait_for(lambda: has_members(stack, {"n1", "n2"}), 10, what="both workers in the lb")
    assert "announcing membership only" in n1.log()
    status, body, cookie = counter(stack)
    assert status == 200 and body["count"] == 1
    first = cookie.rsplit(".", 1)[1]
    for expected in (2, 3):
        status, body, cookie = counter(stack, cookie)
        assert (status, body["count"]) == (200, expected)
    # the worker that holds the session's route stops: the lb drops it at its shutdown
    # heartbeat, and the other worker reads the session from Redis (route rewritten)
    (gone, other) = (n1, "n2") if first == "n1" else (n2, "n1")
    gone.proc.signal(signal.SIGTERM)
    wait_for(lambda: has_members(stack, {other}), 10, what=f"{gone.route} to leave the lb")
    status, body, cookie = counter(stack, cookie)
    assert (status, body["count"]) == (200, 4)
    assert cookie.endswith("." + other)


def test_without_multicast_the_balancer_finds_them_by_static_members(stack: Stack):
    redis = RedisServer(stack.group, stack.tmp / "redis", free_port()).start()
    cluster = Cluster(stack.group, stack.tmp)
    ports = [free_port(), free_port()]
    statics = [f"127.0.0.1:{p}" for p in ports]
    store = {"kind": "redis", "url": redis.url}
    off = {"multicast": False, "static_members": statics}
    configs = [cluster.config(store=store, membership=off, receiver={"port": p}) for p in ports]
    balancer_file = cluster.config(store=store, membership=off)
    stack.start_balancer(dynamic_workers(balancer_file), MOUNTS, args=("--processes", "1"))
    cluster.start_many(["n1", "n2"], configs)
    wait_for(lambda: has_members(stack, {"n1", "n2"}), 15, what="both workers in the lb")
    status, body, _ = counter(stack)
    assert status == 200 and body["count"] == 1


def test_pyjk_cluster_scale_brings_workers_on_redis_into_the_lb_and_out(stack: Stack):
    from tests.integration.test_balancer_dynamic import members
    from tests.integration.test_cluster_scale import pyjk_cluster

    redis = RedisServer(stack.group, stack.tmp / "redis", free_port()).start()
    config = Cluster(stack.group, stack.tmp).config(store={"kind": "redis", "url": redis.url})
    stack.start_balancer(dynamic_workers(config), MOUNTS, args=("--processes", "1"))
    try:
        done = pyjk_cluster("scale", "2", "--cluster", str(config), "--drain", "0.5")
        assert done.returncode == 0 and "2 worker(s) running" in done.stdout, done.stderr
        wait_for(lambda: len(members(stack)) == 2, 10, what="two members")
        status, body, cookie = counter(stack)
        assert (status, body["count"]) == (200, 1)
        done = pyjk_cluster("scale", "1", "--cluster", str(config), "--drain", "0.5")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(members(stack)) == 1, 10, what="one member left")
        status, body, _ = counter(stack, cookie)  # the session lives on in Redis
        assert (status, body["count"]) == (200, 2)
    finally:
        pyjk_cluster("scale", "0", "--cluster", str(config), "--stop-timeout", "5")
