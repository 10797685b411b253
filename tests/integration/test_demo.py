"""The README's demo, followed as the README says: start it, open /app/, kill -9 the worker
serving you, reload — the same session answers from another node — and the demo keeps
running and brings the killed worker back."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import time
import urllib.request

import pytest

from tests.support.procs import ROOT, ProcGroup, free_port, port_open, wait_for

pytestmark = pytest.mark.integration

NODE_RE = re.compile(r'<span class="node">([^<]*)</span>')
SESSION_RE = re.compile(r"<dt>Session</dt><dd><code>([^<]*)</code>")
COUNT_RE = re.compile(r'<dd class="count">(\d+)</dd>')
PIDS_RE = re.compile(r"(node\d) pid (\d+)")
WORKER_PORTS = {"node1": 8101, "node2": 8102, "node3": 8103}  # fixed by conf/


def page(opener: urllib.request.OpenerDirector, base: str) -> tuple[str, str, int]:
    """The demo page's serving node, session id and visit count."""
    text = opener.open(f"{base}/app/", timeout=10).read().decode()
    node, session, count = NODE_RE.search(text), SESSION_RE.search(text), COUNT_RE.search(text)
    assert node and session and count, text[:500]
    return node.group(1), session.group(1), int(count.group(1))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_the_demo_survives_a_killed_worker_as_the_readme_says(tmp_path):
    if any(port_open(p) for p in WORKER_PORTS.values()):
        pytest.skip("the demo's fixed worker ports 8101-8103 are in use on this machine")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    group = ProcGroup(tmp_path)
    try:
        demo = group.python(
            str(ROOT / "scripts/demo.py"), "--port", str(port), "--duration", "150",
            "--restart-after", "3", name="demo",
        )  # fmt: skip
        wait_for(lambda: "pyjk demo is up" in demo.output(), 40, what="the demo")
        pids = {route: int(pid) for route, pid in PIDS_RE.findall(demo.output())}
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        # open the demo app: a session, sticky to one node, its cookie naming that node
        visits = [page(opener, base) for _ in range(3)]
        node, session, count = visits[-1]
        assert [v[2] for v in visits] == [1, 2, 3] and {v[0] for v in visits} == {node}
        assert session.endswith("." + node)
        assert {c.name: c.value for c in jar}["JSESSIONID"] == session

        # kill -9 the worker serving you, and reload
        os.kill(pids[node], signal.SIGKILL)
        wait_for(lambda: "is gone (killed by SIGKILL)" in demo.output(), 10, what="the notice")
        other, moved, after = page(opener, base)
        assert other != node
        assert after == count + 1  # the same session: nothing lost, nothing counted twice
        assert moved.split(".")[0] == session.split(".")[0] and moved.endswith("." + other)
        assert {c.name: c.value for c in jar}["JSESSIONID"] == moved  # the cookie names it
        assert demo.alive()

        # the killed worker comes back, rejoins and is ready; the demo keeps running
        wait_for(lambda: f"{node} is back and ready" in demo.output(), 60, what="the rejoin")
        assert ready(WORKER_PORTS[node])
        listing = json.load(
            urllib.request.urlopen(
                f"http://127.0.0.1:{WORKER_PORTS[node]}/cluster-manager", timeout=10
            )
        )
        assert {m["route"] for m in listing["members"]} == set(WORKER_PORTS)
        assert listing["sessions"] >= 1  # the state transfer brought the sessions back
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # still serving a minute after the kill
            assert demo.alive(), demo.output()[-3000:]
            time.sleep(1)
        assert page(opener, base)[2] == count + 2
        assert demo.alive() and "stopping" not in demo.output()
    finally:
        group.stop_all()
    assert "demo: stopped" in demo.output()
