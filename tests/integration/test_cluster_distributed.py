"""Sessions in distributed mode (`[replication] mode = "distributed"`, `owners = 2`): real
workers on loopback multicast behind the real balancer. The guarantees are all-to-all's: no
acknowledged write lost and none applied twice through a kill -9, the cookie route rewritten,
exactly-once retries answered from the record on another node; and a joining node ends up
holding exactly the sessions it owns or backs, the others only theirs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from replication.placement import Placement
from replication.session_entry import SESSIONS_CACHE
from tests.integration.conftest import Stack, http_get, http_json
from tests.integration.counter_load import counter, kill_under_load
from tests.integration.test_cluster_kit import Cluster
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

HEALTH = "".join(
    f"worker.n{i}.health_check_interval=200\nworker.n{i}.health_check_rise=1\n"
    f"worker.n{i}.fail_on_status=-503\n"
    for i in (1, 2, 3)
)


def distributed(stack: Stack, names=("n1", "n2", "n3"), balancer: bool = True) -> str:
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(replication={"mode": "distributed", "owners": 2}))
    for name in names:
        stack.start_worker(name, "--cluster", config)
    if balancer:
        stack.start_balancer(stack.workers_properties(list(names), HEALTH))
    return config


def manager(stack: Stack, name: str) -> dict:
    return http_json(f"http://127.0.0.1:{stack.backends[name].port}/cluster-manager")


def visit(stack: Stack, name: str, cookie: str | None = None, rid: str | None = None):
    return counter(f"http://127.0.0.1:{stack.backends[name].port}", cookie, rid)


async def test_kill_9_under_load_loses_no_acknowledged_write_and_applies_none_twice(
    stack: Stack,
):
    distributed(stack)
    load = await kill_under_load(
        stack.url, 16, "n2", lambda: stack.backends["n2"].proc.signal(signal.SIGKILL)
    )
    # with two members left, each holds every session again (rebalanced, or re-written)
    n1, n3 = (manager(stack, name)["session_store"] for name in ("n1", "n3"))
    wait_for(lambda: manager(stack, "n1")["session_store"]["entries"] >= load.users, 10,
             what="every session on n1")  # fmt: skip
    assert n1["mode"] == n3["mode"] == "distributed" and n1["owners"] == 2, n1
    # each moved session was read from a backup over the network, once, then served locally
    remote = sum(manager(stack, n)["counters"].get("dist_reads_remote", 0) for n in ("n1", "n3"))
    assert remote >= len(load.moved), (remote, len(load.moved))


def test_a_session_lives_on_its_route_node_and_one_backup_only(stack: Stack):
    distributed(stack, ("n1", "n2", "n3"), balancer=False)
    cookies = []
    for _ in range(20):
        status, headers, _ = visit(stack, "n1")
        assert status == 200
        cookies.append(headers["Set-Cookie"].split("JSESSIONID=", 1)[1].split(";", 1)[0])
    n1, n2, n3 = (manager(stack, n)["session_store"] for n in ("n1", "n2", "n3"))
    assert manager(stack, "n1")["caches"] == []  # the sessions' cache is not an app cache
    assert n1["entries"] == n1["owned"] == 20, n1  # the route's node is every one's primary
    assert n2["backup"] + n3["backup"] == 20 and n2["owned"] == n3["owned"] == 0, (n2, n3)
    assert n2["backup"] > 0 and n3["backup"] > 0, "the backups are spread by the hash"
    metrics = http_get(f"http://127.0.0.1:{stack.backends['n2'].port}/metrics")[2].decode()
    assert 'pyjk_replication_sessions{role="owned"} 0.0' in metrics
    assert f'pyjk_replication_sessions{{role="backup"}} {n2["backup"]}.0' in metrics
    # a takeover (the balancer sent the session to n2) makes n2 its primary: the copies kept
    # for the old route are dropped, so every session is on exactly two nodes again
    for cookie in cookies:
        status, headers, body = visit(stack, "n2", cookie)
        assert status == 200 and json.loads(body)["count"] == 2 and ".n2" in headers["Set-Cookie"]

    def copies() -> list[int]:
        return [manager(stack, n)["session_store"]["entries"] for n in ("n1", "n2", "n3")]

    wait_for(lambda: sum(copies()) == 40, 10, what="two copies of each session")
    assert manager(stack, "n2")["session_store"]["owned"] == 20


def test_a_retry_is_answered_once_from_the_record_on_another_node(stack: Stack):
    distributed(stack, ("n1", "n2", "n3"), balancer=False)
    status, headers, body = visit(stack, "n1", rid="visit-1")
    cookie = headers["Set-Cookie"].split("JSESSIONID=", 1)[1].split(";", 1)[0]
    # the first visit's retry comes without the cookie (n1 died before answering): it is found
    # by its request id alone, with the same cookie, and no second session is made
    for name in ("n2", "n3"):
        status, again, body = visit(stack, name, rid="visit-1")
        assert status == 200 and again.get("X-Pyjk-Replayed") == "1", (name, body)
        assert cookie in again["Set-Cookie"] and json.loads(body)["count"] == 1
    status, _, body = visit(stack, "n1", cookie, rid="visit-2")
    assert status == 200 and json.loads(body)["count"] == 2
    # the balancer re-sends the same request id to n2 (n1 looked dead): answered from the
    # record that travelled with the session, not run again
    status, headers, body = visit(stack, "n2", cookie, rid="visit-2")
    assert status == 200, body
    assert headers.get("X-Pyjk-Replayed") == "1"
    assert json.loads(body)["count"] == 2
    status, headers, body = visit(stack, "n2", cookie, rid="visit-3")
    assert json.loads(body)["count"] == 3 and json.loads(body)["node"] == "n2"
    assert ".n2" in headers["Set-Cookie"]  # taken over: the cookie names the new node


def test_a_joining_node_gets_only_the_sessions_it_owns_or_backs(stack: Stack):
    config = distributed(stack, ("n1", "n2", "n3"), balancer=False)
    sessions: list[tuple[str, str]] = []  # (random part, route)
    for i in range(30):
        name = ("n1", "n2", "n3")[i % 3]
        _, headers, _ = visit(stack, name)
        cookie = headers["Set-Cookie"].split("JSESSIONID=", 1)[1].split(";", 1)[0]
        rp, _, route = cookie.partition(".")
        sessions.append((rp, route))
    stack.start_worker("n4", "--cluster", config)
    routes = ("n1", "n2", "n3", "n4")

    def expected() -> dict[str, int]:
        ids = {m["route"]: m["id"] for m in manager(stack, "n1")["members"]}
        placement = Placement.of(ids.values(), 2)
        held: Counter[str] = Counter()
        for rp, route in sessions:
            for owner in placement.owners_of(f"{SESSIONS_CACHE}/{rp}", ids[route]):
                held[owner] += 1
        return {r: held[ids[r]] for r in routes}

    def holds() -> dict[str, int]:
        return {r: manager(stack, r)["session_store"]["entries"] for r in routes}

    wait_for(lambda: len(manager(stack, "n1")["members"]) == 4, 10, what="n4 seen by n1")
    want = expected()
    assert want["n4"] > 0, "no session is backed by n4: the test proves nothing"
    wait_for(lambda: holds() == want, 15, what=f"placement after the join: want {want}")
    # and every session still reads back with its count, from its route's node
    for rp, route in sessions:
        status, _, body = visit(stack, route, f"{rp}.{route}")
        assert status == 200 and json.loads(body)["count"] == 2, body


async def test_expiry_ends_a_session_on_every_owner(stack: Stack, tmp_path):
    """max_inactive is the entry's ttl (plus one touch period) on the primary and backups."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(replication={"mode": "distributed", "owners": 2,
                                             "touch_interval": 200}))  # fmt: skip
    for name in ("n1", "n2"):
        stack.start_worker(name, "--cluster", config, "--max-inactive", "1")
    _, headers, _ = visit(stack, "n1")
    cookie = headers["Set-Cookie"].split("JSESSIONID=", 1)[1].split(";", 1)[0]
    assert manager(stack, "n2")["session_store"]["entries"] == 1
    await asyncio.sleep(1.5)  # past the idle timeout + one touch period: no poll can replace it
    status, _, body = visit(stack, "n2", cookie)
    assert status == 200 and json.loads(body)["count"] == 1, "an expired session came back"


async def test_a_session_that_is_only_read_stays_alive_on_its_backup(stack: Stack):
    """Read-only requests make no write; the primary extends the entry's expiry on the backups
    (at most once per touch_interval), so a failover after the idle timeout still finds it."""
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(replication={"mode": "distributed", "owners": 2,
                                             "touch_interval": 200}))  # fmt: skip
    app = ("--app", "tests.integration.apps.caches:make_app", "--max-inactive", "2")
    for name in ("n1", "n2"):
        stack.start_worker(name, "--cluster", config, *app)
    n1, n2 = (f"http://127.0.0.1:{stack.backends[n].port}" for n in ("n1", "n2"))
    req = urllib.request.Request(f"{n1}/s", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    for _ in range(14):  # 4 s of reads only, well past the 2 s idle timeout
        status, _, body = http_get(f"{n1}/s", {"Cookie": cookie})
        assert status == 200 and json.loads(body)["n"] == 1, body
        await asyncio.sleep(0.3)
    assert json.loads(http_get(f"{n2}/s", {"Cookie": cookie})[2])["n"] == 1
    counters = manager(stack, "n1")["counters"]
    assert counters["dist_touches"] >= 2, counters


@pytest.mark.parametrize("width", [2, 3])
def test_concurrent_requests_of_one_session_each_keep_their_retry_record(stack: Stack, width: int):
    # A browser's parallel calls: two (three) requests of one session on its node at once,
    # each with its request id. Their entry texts are built at commit, and a put may land
    # after the other's commit: the owner merges them, so a retry of any one (the balancer
    # re-sends it to another node) is answered from its record, never run a second time —
    # with three, the oldest record falls out of the entry and is kept aside by the owners.
    distributed(stack, ("n1", "n2", "n3"), balancer=False)
    status, headers, _ = visit(stack, "n1")
    assert status == 200
    cookie = headers["Set-Cookie"].split("JSESSIONID=", 1)[1].split(";", 1)[0]
    with ThreadPoolExecutor(width) as pool:
        for round_ in range(40 if width == 2 else 20):
            rids = tuple(f"par-{round_}-{i}" for i in range(width))
            answers = list(pool.map(lambda rid: visit(stack, "n1", cookie, rid), rids))
            assert [status for status, _, _ in answers] == [200] * width, answers
            for rid, (_, _, body) in zip(rids, answers, strict=True):
                status, again, replayed = visit(stack, "n2", cookie, rid)
                assert status == 200 and again.get("X-Pyjk-Replayed") == "1", (rid, replayed)
                assert replayed == body
