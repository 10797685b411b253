"""Session id rotation (against session fixation) through the balancer and a real cluster.

After ``rotate_session_id`` at login: the old id is refused on every node (it finds no
session), the new id carries the data, and a retry of the login request (same balancer
request id, another member) is answered from the exactly-once ledger, not run again.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_cluster_kit import Cluster, http, session_cookie
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

APP = "tests.integration.apps.login:make_app"
ROUTES = ("n1", "n2", "n3")


def _post(url: str, headers: dict[str, str]) -> tuple[int, object, bytes]:
    req = urllib.request.Request(url, data=b"", headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers, resp.read()


@pytest.mark.parametrize("mode", ["replicated", "distributed"])
def test_rotation_ends_the_old_id_everywhere_and_keeps_the_data_once(stack: Stack, mode: str):
    cluster = Cluster(stack.group, stack.tmp)
    config = str(cluster.config(replication={"mode": mode}))
    for name in ROUTES:
        stack.start_worker(name, "--cluster", config, "--app", APP)
    nodes = {name: f"http://127.0.0.1:{b.port}" for name, b in stack.backends.items()}

    def members_of(url: str) -> set[str]:
        status, _, body = http(url + "/cluster-manager")
        return {m["route"] for m in json.loads(body)["members"]} if status == 200 else set()

    wait_for(lambda: all(members_of(u) == set(ROUTES) for u in nodes.values()), 20,
             what="three members")  # fmt: skip
    stack.start_balancer(stack.workers_properties(list(ROUTES)))

    # a visitor's session: count 2, then the login rotates its id through the balancer
    status, headers, body = http(f"{stack.url}/app/counter")
    old = session_cookie(headers)
    status, headers, body = http(f"{stack.url}/app/counter", {"Cookie": old})
    assert json.loads(body)["count"] == 2
    status, headers, body = _post(f"{stack.url}/app/login", {"Cookie": old})
    assert status == 200
    new = session_cookie(headers)
    login = json.loads(body)
    old_id, new_id = old.split("=", 1)[1], new.split("=", 1)[1]
    assert new_id == login["session"]
    assert new_id.split(".")[0] != old_id.split(".")[0]  # a new random part
    assert new_id.split(".")[1] == old_id.split(".")[1]  # the route of the node that served it
    assert login == {"session": new_id, "count": 2, "logins": 1}

    # the new id carries the data, through the balancer
    status, headers, body = http(f"{stack.url}/app/counter", {"Cookie": new})
    assert json.loads(body)["count"] == 3
    # the old id is refused on every node: no session there (a new, empty one is made)
    for route, url in nodes.items():
        status, headers, body = http(f"{url}/app/counter", {"Cookie": old})
        assert status == 200, (route, body)
        got = json.loads(body)
        assert got["count"] == 1, (route, got)
        assert got["session"] != old_id and got["session"] != new_id

    # the balancer's retry of the login (same request id) on another member: answered once
    first_route = new_id.split(".")[1]
    rid = "rotation-retry-1"
    owner = nodes[first_route]
    status, headers, body = _post(f"{owner}/app/login", {"Cookie": new, "X-Pyjk-Request-Id": rid})
    again = json.loads(body)
    assert again["logins"] == 2
    newer = session_cookie(headers)
    other = next(url for route, url in nodes.items() if route != first_route)
    status, headers, body = _post(f"{other}/app/login", {"Cookie": new, "X-Pyjk-Request-Id": rid})
    assert json.loads(body) == again
    assert headers["X-Pyjk-Replayed"] == "1"
    assert session_cookie(headers) == newer
    status, headers, body = http(f"{stack.url}/app/counter", {"Cookie": newer})
    assert json.loads(body)["count"] == 4  # the data went along, the login ran twice, not thrice
