"""A full cluster through a real balancer: three replicated workers with a tiny
max_active_sessions. Every node holds every session, so when one is full all are: a new visitor
gets the worker's 503 (X-Pyjk-Refusal, Retry-After) at once, from one member, while existing
sessions keep working; the workers log one line per interval, and /cluster-manager and the
status page show sessions against the limit."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Stack, http_get, http_json
from tests.integration.test_balancer_cluster import HEALTH, config_of
from tests.integration.test_cluster_kit import Cluster
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

LIMIT = 3


def test_a_full_cluster_refuses_new_visitors_fast_and_quietly(stack: Stack):
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config().rename(config_of(stack)))
    for name in ("n1", "n2", "n3"):
        stack.start_worker(name, "--cluster", config, "--max-active-sessions", str(LIMIT))
    stack.start_balancer(
        stack.workers_properties(["n1", "n2", "n3"], "worker.cluster_poll_interval=1\n" + HEALTH)
    )
    cookies = []
    for _ in range(LIMIT):
        status, headers, body = http_get(f"{stack.url}/app/counter")
        assert status == 200, body
        cookies.append(headers["Set-Cookie"].split(";", 1)[0])
    ports = [b.port for b in stack.backends.values()]

    def everywhere() -> bool:
        return all(
            http_json(f"http://127.0.0.1:{p}/cluster-manager")["sessions"] == LIMIT for p in ports
        )

    wait_for(everywhere, 15, what="every node holding every session")

    def elected() -> int:
        doc = http_json(f"{stack.url}/jkmanager?mime=json")
        (lb,) = [w for w in doc["balancers"] if w["name"] == "lb"]
        return sum(m["elected"] for m in lb["members"])

    before = elected()
    for _ in range(5):  # new visitors: refused by the first member asked, passed through
        status, headers, body = http_get(f"{stack.url}/app/counter")
        assert status == 503, body
        assert headers["X-Pyjk-Refusal"] == "sessions-full"
        assert headers["Retry-After"] == "10"
        assert b"cannot open more sessions" in body  # the worker's answer, not the balancer's
    assert elected() - before == 5  # one member per refused request, not all three
    assert {stack.member_state(n) for n in ("n1", "n2", "n3")} == {"OK"}

    # existing sessions keep working
    status, _, body = http_get(f"{stack.url}/app/counter", {"Cookie": cookies[0]})
    assert status == 200 and json.loads(body)["count"] == 2

    # sessions against the limit: on every node, and on the balancer's status page
    listing = http_json(f"http://127.0.0.1:{ports[0]}/cluster-manager")
    assert (listing["sessions"], listing["sessions_limit"]) == (LIMIT, LIMIT)
    assert listing["counters"]["requests_refused_sessions_full"] >= 1

    def on_status_page() -> bool:
        return f"{LIMIT} / {LIMIT}" in http_get(f"{stack.url}/jkmanager")[2].decode()

    wait_for(on_status_page, 15, what="live / limit on the status page")
    txt = stack.status_txt()
    assert f"sessions_limit={LIMIT}" in txt

    # the refusals were logged as a few counted lines, not one per refusal
    logs = "".join(b.proc.output() for b in stack.backends.values())
    lines = [ln for ln in logs.splitlines() if "sessions refused" in ln]
    assert 1 <= len(lines) <= 3 and all("limit=3" in ln for ln in lines)
    assert "session refused:" not in logs  # the old line per refusal
