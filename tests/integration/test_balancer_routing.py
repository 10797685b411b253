"""Real balancer, real backends: distribution, stickiness, headers, WebSocket."""

from __future__ import annotations

import collections

import aiohttp
import pytest

from tests.integration.conftest import Stack, http_get, http_json

pytestmark = pytest.mark.integration


def three(
    stack: Stack,
    lbfactors: tuple[int, int, int] = (1, 1, 2),
    extra: str = "",
    args: tuple[str, ...] = (),
) -> None:
    for name in ("n1", "n2", "n3"):
        stack.start_backend(name)
    factors = "\n".join(f"worker.n{i + 1}.lbfactor={f}" for i, f in enumerate(lbfactors))
    workers = stack.workers_properties(["n1", "n2", "n3"], factors + "\n" + extra)
    stack.start_balancer(workers, args=args)


def test_new_sessions_are_spread_by_lbfactor(stack: Stack):
    # mod_jk's exact sequence is one process's: with N processes ties between equal lb values
    # are broken by the process a connection lands on, so totals match within one round per
    # process (test_balancer_processes.py checks that; CI once saw 11/10/19 with 2 processes)
    three(stack, (1, 1, 2), args=("--processes", "1"))
    served = collections.Counter(http_json(f"{stack.url}/app/x")["node"] for _ in range(40))
    assert served == {"n1": 10, "n2": 10, "n3": 20}


def test_a_session_cookie_sticks_to_its_route(stack: Stack):
    three(stack)
    headers = {"Cookie": "other=1; JSESSIONID=ABCDEF.n2"}
    served = {http_json(f"{stack.url}/app/{i}", headers)["node"] for i in range(10)}
    assert served == {"n2"}
    assert http_json(f"{stack.url}/app/x", headers)["cookie"] == headers["Cookie"]


def test_every_session_cookie_is_tried_in_order(stack: Stack):
    three(stack)
    # the first cookie names no member; the second does (mod_jk bug 44116 behaviour)
    headers = {"Cookie": "JSESSIONID=old.gone; JSESSIONID=new.n3"}
    assert {http_json(f"{stack.url}/app/{i}", headers)["node"] for i in range(5)} == {"n3"}


def test_path_parameter_sticks_and_is_forwarded_unchanged(stack: Stack):
    three(stack)
    for _ in range(5):
        body = http_json(f"{stack.url}/app/page;jsessionid=XYZ.n1?q=1")
        assert body["node"] == "n1"
        assert body["path"] == "/app/page;jsessionid=XYZ.n1?q=1"


def test_path_parameter_beats_the_cookie(stack: Stack):
    three(stack)
    body = http_json(f"{stack.url}/app/p;jsessionid=A.n3", {"Cookie": "JSESSIONID=B.n1"})
    assert body["node"] == "n3"


def test_forwarded_headers_are_overwritten_and_activation_is_sent(stack: Stack):
    three(stack)
    body = http_json(
        f"{stack.url}/app/x",
        {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil", "Connection": "X-Hop"},
    )
    assert body["xff"] == "127.0.0.1"
    assert body["xfproto"] == "http"
    assert body["xfhost"] == f"127.0.0.1:{stack.port}"
    assert body["activation"] == "ACT"
    assert body["request_id"]


def test_unmapped_path_is_404_and_escaping_the_root_is_400(stack: Stack):
    three(stack)
    assert http_get(f"{stack.url}/elsewhere")[0] == 404
    assert http_get(f"{stack.url}/app/%2e%2e/%2e%2e/etc")[0] == 400


def test_set_session_cookie_is_added_but_never_beside_the_apps_own(stack: Stack):
    three(stack, extra="worker.lb.set_session_cookie=true")
    status, headers, _ = http_get(f"{stack.url}/app/x")
    cookies = headers.get_all("Set-Cookie")
    assert status == 200 and len(cookies) == 1
    assert cookies[0].startswith("JSESSIONID=.n") and ";PATH=/;HttpOnly" in cookies[0]
    # the app sets JSESSIONID itself: pyjk must not add a second one (mod_jk does, §9.4)
    status, headers, _ = http_get(f"{stack.url}/app/set-cookie")
    cookies = headers.get_all("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith("JSESSIONID=fromapp.")
    # a sticky hit gets no routing cookie
    status, headers, _ = http_get(f"{stack.url}/app/x", {"Cookie": "JSESSIONID=a.n1"})
    assert headers.get_all("Set-Cookie") is None


async def test_websocket_is_passed_through_to_the_sticky_member(stack: Stack):
    three(stack)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{stack.url}/app/ws", headers={"Cookie": "JSESSIONID=s.n2"}) as ws,
    ):
        for word in ("hello", "again"):
            await ws.send_str(word)
            msg = await ws.receive(timeout=10)
            assert msg.data == f"n2:{word}"
        await ws.send_bytes(b"\x00\x01binary")
        msg = await ws.receive(timeout=10)
        assert msg.data == b"\x00\x01binary"
