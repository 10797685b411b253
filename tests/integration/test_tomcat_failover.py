"""Real Tomcats going away behind pyjk: failover of a session's node, and AJP CPing finding a
stopped or frozen Tomcat before (or without) a client request failing."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.conftest import http_get
from tests.integration.tomcat import kit
from tests.support.procs import ProcGroup, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kit.missing() is not None, reason=str(kit.missing())),
]

Site = kit.TomcatStack


@pytest.fixture
def stack(tmp_path) -> Iterator[Site]:
    """Two fresh Tomcats per test (these tests stop them); named ``stack`` for the conftest
    hook that attaches process logs to a failed test."""
    site = Site(ProcGroup(tmp_path), tmp_path)
    try:
        site.start_tomcats("n1", "n2")
        yield site
    finally:
        site.group.stop_all()


def counter(site: Site, session: str | None = None, path: str = "/counter.jsp") -> dict[str, str]:
    headers = {"Cookie": f"JSESSIONID={session}"} if session else {}
    status, _, body = http_get(site.url + path, headers)
    assert status == 200, body
    return dict(part.split("=", 1) for part in body.decode().split())


def session_on(site: Site, node: str) -> str:
    """A new session that lives on ``node`` (new sessions alternate between the nodes)."""
    for _ in range(6):
        fields = counter(site)
        if fields["node"] == node:
            return fields["session"]
    raise AssertionError(f"no new session landed on {node}")


def requests_served(site: Site, member: str) -> int:
    line = next(
        x for x in site.status_txt().splitlines() if x.startswith(f"Member: name={member} ")
    )
    return int(line.split(" elected=", 1)[1].split(" ", 1)[0])


def test_a_session_fails_over_when_its_tomcat_stops(stack: Site) -> None:
    stack.start_pyjk()
    sid = session_on(stack, "n1")
    assert counter(stack, sid)["count"] == "2"
    stack.tomcats["n1"].stop()
    # no replication between these two: the session is lost, the request is not
    fields = counter(stack, sid)
    assert fields["node"] == "n2" and fields["count"] == "1"
    assert fields["session"].endswith(".n2") and fields["session"] != sid
    assert stack.member_state("n1") == "ERR"
    # the new session sticks to n2 from now on
    assert counter(stack, fields["session"]) == {**fields, "count": "2"}


def test_cping_finds_a_stopped_tomcat_without_any_client_request(stack: Site) -> None:
    # ping_mode A: CPing after connect, before each request, and every interval on its own
    stack.start_pyjk(
        member={
            "ping_mode": "A",
            "ping_timeout": 500,
            "connection_ping_interval": 1,
            "health_check_fall": 1,
            "health_check_rise": 1,
        },
        lb={"recover_time": 30},  # stays ERR while we look
    )
    wait_for(lambda: stack.member_state("n2").startswith("OK"), 10, what="n2 OK")
    stack.tomcats["n2"].stop()
    started = time.monotonic()
    wait_for(lambda: stack.member_state("n2") == "ERR", 10, what="n2 in ERR")
    noticed = time.monotonic() - started
    assert requests_served(stack, "n2") == 0  # no client request found it out
    assert noticed < 5
    # and clients never meet the dead member
    for _ in range(4):
        assert counter(stack)["node"] == "n1"
    assert stack.member_state("n2") == "ERR"


def test_a_prepost_cping_steers_a_post_around_a_frozen_tomcat(stack: Site) -> None:
    stack.start_pyjk(member={"ping_mode": "P", "ping_timeout": 300})
    sid = session_on(stack, "n1")
    frozen = stack.tomcats["n1"]
    assert frozen.proc is not None
    os.kill(frozen.proc.pid, signal.SIGSTOP)  # accepts TCP (the kernel does), answers nothing
    try:
        started = time.monotonic()
        req = urllib.request.Request(
            f"{stack.url}/echo.jsp", data=b"a body n1 must not get", method="POST"
        )
        req.add_header("Cookie", f"JSESSIONID={sid}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, resp.read()
        took = time.monotonic() - started
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    assert status == 200 and body.startswith(b"size=22 ")  # n2 read the whole body
    assert took < 3, took  # the CPing timed out (300 ms x member retries), then n2 answered
    assert stack.member_state("n1") == "ERR"
    assert "cping" in stack.status_txt().split("Member: name=n1 ", 1)[1].split("\n", 1)[0]
