"""The balancer in front of a real replicated cluster (worker --cluster over loopback multicast).

What users of the mod_jk + Tomcat-cluster pattern care about most: a node can die without its
users noticing. Every acknowledged write survives, none is applied twice, and the session moves
to a node that rewrites its route.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.integration.conftest import Stack, http_get, http_json
from tests.integration.counter_load import CounterLoad
from tests.integration.test_cluster_kit import Cluster
from tests.support.procs import until, wait_for

pytestmark = pytest.mark.integration

# as the shipped conf: /-/ready probed, a worker's 503 (taking its sessions over) retried elsewhere
HEALTH = "".join(
    f"worker.n{i}.health_check_interval=200\nworker.n{i}.health_check_rise=1\n"
    f"worker.n{i}.fail_on_status=-503\n"
    for i in (1, 2, 3)
)


def config_of(stack: Stack) -> str:
    return str(stack.tmp / "cluster.toml")


def replicated(stack: Stack, extra: str = "") -> Cluster:
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config().rename(config_of(stack)))
    for name in ("n1", "n2", "n3"):
        stack.start_worker(name, "--cluster", config)
    stack.start_balancer(
        stack.workers_properties(["n1", "n2", "n3"], "worker.cluster_poll_interval=1\n" + extra)
    )
    return cluster


def members_json(stack: Stack) -> dict[str, dict]:
    doc = http_json(f"{stack.url}/jkmanager?mime=json")
    (lb,) = [w for w in doc["balancers"] if w["name"] == "lb"]
    return {m["name"]: m for m in lb["members"]}


def test_the_status_page_shows_live_sessions_and_drained_members(stack: Stack):
    replicated(stack, "worker.n2.activation=D\n")
    cookies = []
    for _ in range(6):
        _, headers, body = http_get(f"{stack.url}/app/counter")
        cookies.append(headers["Set-Cookie"])
        assert json.loads(body)["node"] in {"n1", "n3"}  # n2 is disabled: no new sessions

    def counted() -> bool:
        members = members_json(stack)
        return sum((m.get("live_sessions") or 0) for m in members.values()) == 6

    wait_for(counted, 15, what="live sessions on the status page")
    members = members_json(stack)
    assert members["n2"]["live_sessions"] == 0
    assert members["n2"]["drained"] is True
    assert members["n1"]["drained"] is False
    assert "live_sessions" in http_get(f"{stack.url}/jkmanager?mime=txt")[2].decode()


async def test_kill_9_under_load_loses_no_acknowledged_write_and_applies_none_twice(
    stack: Stack,
):
    replicated(stack, HEALTH)
    load = CounterLoad(stack.url, 24)
    load.start()
    killed: list[str] = []
    await until(lambda: load.answered >= 600, 30, what="load before the first kill")
    for victim in ("n2", "n3"):
        killed.append(victim)
        stack.backends[victim].proc.signal(signal.SIGKILL)
        mark = load.answered
        await until(
            lambda m=mark: load.answered >= m + 800, 40, what=f"load after killing {victim}"
        )
        # it comes back (same route and port), takes the state over, and serves again
        port = stack.backends[victim].port
        await asyncio.to_thread(
            stack.start_worker, victim, "--cluster", config_of(stack), port=port
        )
        mark = load.answered
        await until(
            lambda m=mark: load.answered >= m + 400, 40, what=f"load after {victim} is back"
        )
    await load.finish()
    errors, moved = load.errors, load.moved
    assert errors == [], errors[:10]
    assert moved, "no session was on a killed node: the test proved nothing"
    assert {old for old, _ in moved.values()} <= set(killed)
