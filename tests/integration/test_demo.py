"""The README's demo command starts a working stack (balancer + three workers)."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.request

import pytest

from tests.support.procs import ROOT, ProcGroup, port_open, wait_for

pytestmark = pytest.mark.integration


def test_the_demo_serves_sticky_sessions_through_the_balancer(tmp_path):
    if not all(not port_open(p) for p in (8080, 8101, 8102, 8103)):
        pytest.skip("the demo's fixed ports 8080/8101-8103 are in use on this machine")
    group = ProcGroup(tmp_path)
    try:
        demo = group.python(str(ROOT / "scripts/demo.py"), "--duration", "60", name="demo")
        wait_for(lambda: "pyjk demo is up" in demo.output(), 40, what="the demo")
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        answers = [
            json.load(opener.open("http://127.0.0.1:8080/app/counter", timeout=10))
            for _ in range(3)
        ]
        assert [a["count"] for a in answers] == [1, 2, 3]
        assert len({a["node"] for a in answers}) == 1
        assert answers[0]["session"].endswith("." + answers[0]["node"])
        page = opener.open("http://127.0.0.1:8080/app/", timeout=10).read().decode()
        assert answers[0]["node"] in page and "Cart" in page
        # the three workers are one replicated cluster: every node knows every member
        for port in (8101, 8102, 8103):
            listing = json.load(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster-manager", timeout=10)
            )
            assert {m["route"] for m in listing["members"]} == {"node1", "node2", "node3"}
    finally:
        group.stop_all()
