"""Issue 4 through the real balancer: real worker processes with Tomcat-style sessions."""

from __future__ import annotations

import collections
import json
import time
import urllib.request
from http.cookiejar import CookieJar

import pytest

from tests.integration.conftest import Stack, http_get, wait_for

pytestmark = pytest.mark.integration

HEALTH = "".join(
    f"worker.n{i}.health_check_interval=100\nworker.n{i}.health_check_fall=1\n"
    f"worker.n{i}.health_check_rise=1\n"
    for i in (1, 2, 3)
)


class Client:
    """A browser-like client: keeps its cookies."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def counter(self, url: str) -> dict:
        with self.opener.open(url, timeout=10) as resp:
            return json.load(resp)

    def session_cookie(self) -> str:
        return next(c.value for c in self.jar if c.name == "JSESSIONID")


def workers(stack: Stack, *args: str, extra: str = "", app: str | None = None) -> None:
    for name in ("n1", "n2", "n3"):
        stack.start_worker(name, *args, *(("--app", app) if app else ()))
    factors = "worker.n1.lbfactor=1\nworker.n2.lbfactor=1\nworker.n3.lbfactor=2\n"
    stack.start_balancer(stack.workers_properties(["n1", "n2", "n3"], factors + extra))


def test_new_sessions_land_by_lbfactor_then_stick_with_the_route_in_the_cookie(stack: Stack):
    workers(stack)
    clients = [Client() for _ in range(40)]
    first = [c.counter(f"{stack.url}/app/counter") for c in clients]
    assert collections.Counter(a["node"] for a in first) == {"n1": 10, "n2": 10, "n3": 20}
    for client, answer in zip(clients, first, strict=True):
        assert answer["count"] == 1
        cookie = client.session_cookie()
        assert cookie == answer["session"]
        assert cookie.rsplit(".", 1)[1] == answer["node"]  # the suffix is the serving route
        for expected in (2, 3):
            again = client.counter(f"{stack.url}/app/counter")
            assert (again["node"], again["count"], again["session"]) == (
                answer["node"],
                expected,
                answer["session"],
            )


def test_jsessionid_in_the_path_finds_the_session(stack: Stack):
    workers(stack)
    client = Client()
    first = client.counter(f"{stack.url}/app/counter")
    url = f"{stack.url}/app/counter;jsessionid={first['session']}"
    for expected in (2, 3):
        status, _, body = http_get(url)  # no cookie: the path parameter alone
        answer = json.loads(body)
        assert status == 200
        assert (answer["node"], answer["session"], answer["count"]) == (
            first["node"],
            first["session"],
            expected,
        )


def test_a_session_idle_past_max_inactive_is_gone(stack: Stack):
    workers(stack, "--max-inactive", "1")
    client = Client()
    first = client.counter(f"{stack.url}/app/counter")
    assert client.counter(f"{stack.url}/app/counter")["count"] == 2
    time.sleep(1.6)  # the behaviour under test is the passing of idle time itself
    later = client.counter(f"{stack.url}/app/counter")
    assert later["count"] == 1
    assert later["session"] != first["session"]


def test_a_worker_answering_503_on_ready_gets_no_traffic(stack: Stack):
    workers(stack, extra=HEALTH, app="tests.integration.apps.togglable:make_app")
    n2 = stack.backends["n2"].port
    http_get(f"http://127.0.0.1:{n2}/app/-/unready")
    assert http_get(f"http://127.0.0.1:{n2}/-/ready")[0] == 503
    wait_for(lambda: stack.member_state("n2") == "ERR", 10, what="n2 taken out by its /-/ready")
    served = collections.Counter(
        Client().counter(f"{stack.url}/app/counter")["node"] for _ in range(30)
    )
    assert served["n2"] == 0 and sum(served.values()) == 30
    http_get(f"http://127.0.0.1:{n2}/app/-/ready")
    wait_for(lambda: stack.member_state("n2") in {"OK", "OK/IDLE"}, 10, what="n2 back")
    served = collections.Counter(
        Client().counter(f"{stack.url}/app/counter")["node"] for _ in range(40)
    )
    assert served["n2"] > 0
