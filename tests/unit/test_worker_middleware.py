"""The session middleware, in-process through aiohttp's test client (cookies handled by hand)."""

from __future__ import annotations

import asyncio
import time
from http.cookies import SimpleCookie

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from worker import SessionDelta, SessionStore, get_session, request_id, setup_sessions
from worker.demo import create_app as demo_app
from worker.middleware import SESSIONS, cookie_values, split_path_parameter
from worker.readiness import Readiness, install_ready_endpoint

OTHER = "0123456789ABCDEF0123456789ABCDEF"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.deltas: list[SessionDelta] = []

    async def __call__(self, delta: SessionDelta) -> None:
        self.deltas.append(delta)


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, SimpleCookie]:
    found = {}
    for header in resp.headers.getall("Set-Cookie", ()):
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            found[name] = morsel
    return found


def cookie(session_id: str, name: str = "JSESSIONID") -> dict[str, str]:
    return {"Cookie": f"{name}={session_id}"}


async def show(request: web.Request) -> web.Response:
    session = await get_session(request, create=request.query.get("create") != "no")
    if session is None:
        return web.json_response({"session": None})
    if "set" in request.query:
        session[request.query["set"]] = request.query.get("value", "")
    if "bump" in request.query:
        session["n"] = session.get("n", 0) + 1
    if "invalidate" in request.query:
        session.invalidate()
        return web.json_response({"session": None})
    return web.json_response({"session": session.id, "attrs": dict(session)})


async def item(request: web.Request) -> web.Response:
    session = await get_session(request, create=False)
    return web.json_response(
        {
            "id": request.match_info["id"],
            "path": request.path,
            "query": dict(request.query),
            "session": session.id if session else None,
        }
    )


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="no session here")


async def boom(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["written"] = True
    raise RuntimeError("handler failed")


async def redirect(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["seen"] = True
    raise web.HTTPSeeOther("/show")


async def grow(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.setdefault("blob", []).append("x" * 400)
    return web.Response(text="grew")


async def internal(request: web.Request) -> web.Response:
    try:
        await get_session(request)
    except RuntimeError as exc:
        return web.Response(text=str(exc))
    return web.Response(text="had a session")


async def rid(request: web.Request) -> web.Response:
    return web.json_response({"request_id": request_id(request)})


def make_app(store: SessionStore | None = None, **kwargs: object) -> web.Application:
    app = web.Application()
    app.router.add_get("/show", show)
    app.router.add_get("/items/{id}", item)
    app.router.add_get("/plain", plain)
    app.router.add_get("/boom", boom)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/grow", grow)
    app.router.add_get("/-/internal", internal)
    app.router.add_get("/rid", rid)
    setup_sessions(app, route="node1", store=store, **kwargs)  # type: ignore[arg-type]
    return app


@pytest.fixture
async def client(aiohttp_client):
    async def make(app: web.Application):
        return await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())

    return make


async def new_session(c, **query: str) -> str:
    resp = await c.get("/show", params=query)
    return (await resp.json())["session"]


# -- cookies ----------------------------------------------------------------------------------
async def test_new_session_cookie_has_path_httponly_samesite_and_no_secure_over_http(client):
    c = await client(make_app())
    resp = await c.get("/show")
    morsel = set_cookies(resp)["JSESSIONID"]
    assert morsel.value == (await resp.json())["session"]
    assert morsel.value.endswith(".node1")
    assert morsel["path"] == "/" and morsel["httponly"] and morsel["samesite"] == "Lax"
    assert not morsel["secure"]


async def test_cookie_is_secure_when_the_balancer_says_the_client_used_https(client):
    c = await client(make_app())
    resp = await c.get("/show", headers={"X-Forwarded-Proto": "https"})
    assert set_cookies(resp)["JSESSIONID"]["secure"]


async def test_cookie_name_is_configurable(client):
    c = await client(make_app(cookie_name="SID"))
    resp = await c.get("/show")
    sid = set_cookies(resp)["SID"].value
    resp = await c.get("/show", headers=cookie(sid, "SID"))
    assert (await resp.json())["session"] == sid and not set_cookies(resp)


async def test_no_cookie_is_resent_while_the_client_already_holds_it(client):
    c = await client(make_app())
    sid = await new_session(c)
    resp = await c.get("/show", params={"bump": "1"}, headers=cookie(sid))
    assert (await resp.json())["session"] == sid
    assert "JSESSIONID" not in set_cookies(resp)


async def test_invalidating_the_session_expires_the_cookie(client):
    c = await client(make_app())
    sid = await new_session(c)
    resp = await c.get("/show", params={"create": "no", "invalidate": "1"}, headers=cookie(sid))
    morsel = set_cookies(resp)["JSESSIONID"]
    assert morsel.value == "" and morsel["max-age"] == "0"


# -- lazy creation ----------------------------------------------------------------------------
async def test_no_session_is_created_unless_a_handler_asks(client):
    store = SessionStore("node1")
    c = await client(make_app(store))
    resp = await c.get("/plain")
    assert resp.status == 200 and not set_cookies(resp) and len(store) == 0
    resp = await c.get("/show", params={"create": "no"})
    assert (await resp.json()) == {"session": None} and len(store) == 0


async def test_unknown_session_id_means_no_session(client):
    c = await client(make_app())
    resp = await c.get("/show", params={"create": "no"}, headers=cookie(OTHER + ".node1"))
    assert (await resp.json()) == {"session": None}
    resp = await c.get("/show", headers=cookie(OTHER + ".node1"))
    sid = (await resp.json())["session"]
    assert not sid.startswith(OTHER) and set_cookies(resp)["JSESSIONID"].value == sid


async def test_every_duplicate_cookie_is_tried(client):
    c = await client(make_app())
    sid = await new_session(c, set="a", value="1")
    headers = {"Cookie": f"JSESSIONID={OTHER}.node1; JSESSIONID={sid}"}
    resp = await c.get("/show", params={"create": "no"}, headers=headers)
    assert (await resp.json())["attrs"] == {"a": "1"}


# -- counter through the demo app -------------------------------------------------------------
async def test_demo_counter_counts_per_session(client):
    app = demo_app()
    setup_sessions(app, route="node7")
    c = await client(app)
    first = await (await c.get("/app/counter")).json()
    assert first["node"] == "node7" and first["count"] == 1
    second = await (await c.get("/app/counter", headers=cookie(first["session"]))).json()
    assert second == {"node": "node7", "session": first["session"], "count": 2}
    other = await (await c.get("/app/counter")).json()
    assert other["count"] == 1 and other["session"] != first["session"]


async def test_demo_cart_add_remove_redirects_and_escapes(client):
    app = demo_app()
    setup_sessions(app, route="node1")
    c = await client(app)
    sid = set_cookies(await c.get("/app/"))["JSESSIONID"].value
    for name in ["<b>pear</b>", "<b>pear</b>", "fig"]:
        resp = await c.post("/app/cart/add", data={"item": name}, headers=cookie(sid),
                            allow_redirects=False)  # fmt: skip
        assert resp.status == 303 and resp.headers["Location"] == "/app/"
    await c.post("/app/cart/remove", data={"item": "fig"}, headers=cookie(sid),
                 allow_redirects=False)  # fmt: skip
    body = await (await c.get("/app/", headers=cookie(sid))).text()
    assert "&lt;b&gt;pear&lt;/b&gt;" in body and "<b>pear" not in body
    assert '<td class="qty">2</td>' in body and ">fig<" not in body
    assert sid in body and "node1" in body


# -- ;jsessionid in the path ------------------------------------------------------------------
async def test_path_parameter_is_stripped_before_routing_and_names_the_session(client):
    c = await client(make_app())
    sid = await new_session(c)
    resp = await c.get(f"/items/5;jsessionid={sid}?q=1")
    assert resp.status == 200
    assert await resp.json() == {"id": "5", "path": "/items/5", "query": {"q": "1"},
                                 "session": sid}  # fmt: skip


async def test_session_from_the_path_parameter_gets_a_cookie(client):
    c = await client(make_app())
    sid = await new_session(c)
    resp = await c.get(f"/show;jsessionid={sid}")
    assert (await resp.json())["session"] == sid
    assert set_cookies(resp)["JSESSIONID"].value == sid


async def test_stripping_the_path_parameter_does_not_make_unknown_paths_match(client):
    c = await client(make_app())
    resp = await c.get(f"/nope;jsessionid={OTHER}.node1")
    assert resp.status == 404


def test_split_path_parameter_keeps_other_parameters_and_the_first_value():
    path = "/a;x=1;jsessionid=ID1.n1;y=2/b;jsessionid=ID2.n2"
    assert split_path_parameter(path, "jsessionid") == ("ID1.n1", "/a;x=1;y=2/b")
    assert split_path_parameter("/a;x=1/b", "jsessionid") == (None, None)


def test_cookie_values_are_all_read_in_order():
    class Req:
        headers = CIMultiDict([("Cookie", 'a=1; JSESSIONID="X.n1"'), ("Cookie", "JSESSIONID=Y.n2")])

    assert cookie_values(Req(), "JSESSIONID") == ["X.n1", "Y.n2"]  # type: ignore[arg-type]


# -- limits -----------------------------------------------------------------------------------
async def test_new_sessions_past_max_active_sessions_get_503_and_live_ones_keep_working(client):
    store = SessionStore("node1", max_active_sessions=1)
    c = await client(make_app(store))
    sid = await new_session(c)
    resp = await c.get("/show")
    assert resp.status == 503 and "Retry-After" in resp.headers and not set_cookies(resp)
    resp = await c.get("/show", params={"bump": "1"}, headers=cookie(sid))
    assert resp.status == 200 and (await resp.json())["attrs"] == {"n": 1}


async def test_a_full_node_says_so_in_a_header_the_balancer_passes_through(client):
    store = SessionStore("node1", max_active_sessions=1)
    c = await client(make_app(store))
    await new_session(c)
    resp = await c.get("/show")
    assert resp.status == 503
    assert resp.headers["X-Pyjk-Refusal"] == "sessions-full"
    assert resp.headers["Retry-After"] == "10"


async def test_refusals_of_a_full_node_are_logged_as_one_line_per_interval(client, caplog):
    store = SessionStore("node1", max_active_sessions=1)
    clock = [1000.0]
    app = make_app(store, clock=lambda: clock[0])
    manager = app[SESSIONS]
    c = await client(app)
    await new_session(c)
    caplog.set_level("WARNING", logger="pyjk.worker.sessions")
    for _ in range(50):
        assert (await c.get("/show")).status == 503
    lines = [r.getMessage() for r in caplog.records if "sessions refused" in r.getMessage()]
    assert lines == [lines[0]] and "count=1 live=1 limit=1" in lines[0]  # the first at once
    clock[0] += 10
    assert (await c.get("/show")).status == 503
    lines = [r.getMessage() for r in caplog.records if "sessions refused" in r.getMessage()]
    assert len(lines) == 2 and "count=50 " in lines[1]  # 49 held back + this one
    assert manager.refused["sessions-full"] == 51
    assert manager.capacity() == (1, 1)


async def test_in_place_growth_past_the_size_limit_answers_500_and_keeps_nothing(client):
    store = SessionStore("node1", max_session_bytes=1000)
    c = await client(make_app(store))
    sid = await new_session(c)
    assert (await c.get("/grow", headers=cookie(sid))).status == 200
    assert (await c.get("/grow", headers=cookie(sid))).status == 200
    resp = await c.get("/grow", headers=cookie(sid))
    assert resp.status == 500
    assert len(store.begin(sid, 0)["blob"]) == 2  # type: ignore[index]


# -- failover ---------------------------------------------------------------------------------
async def test_session_routed_to_another_node_is_taken_over_when_held_here(client):
    store, sink = SessionStore("node1"), Sink()
    old = f"{OTHER}.node2"
    now = time.time()
    store.apply(SessionDelta(old, now, created=now, max_inactive=1800.0,
                             set_attributes=(("n", "41"),)))  # fmt: skip
    c = await client(make_app(store, sink=sink))
    resp = await c.get("/show", params={"bump": "1"}, headers=cookie(old))
    body = await resp.json()
    assert body == {"session": f"{OTHER}.node1", "attrs": {"n": 42}}
    assert set_cookies(resp)["JSESSIONID"].value == f"{OTHER}.node1"
    assert sink.deltas[-1].session_id == old and sink.deltas[-1].new_id == f"{OTHER}.node1"
    # a late request still carrying the old cookie lands on the same session
    resp = await c.get("/show", params={"create": "no"}, headers=cookie(old))
    assert (await resp.json())["attrs"] == {"n": 42}


async def test_takeover_happens_even_if_the_handler_never_touches_the_session(client):
    store, sink = SessionStore("node1"), Sink()
    old = f"{OTHER}.node2"
    store.apply(SessionDelta(old, time.time(), created=time.time(), max_inactive=1800.0))
    c = await client(make_app(store, sink=sink))
    resp = await c.get("/plain", headers=cookie(old))
    assert set_cookies(resp)["JSESSIONID"].value == f"{OTHER}.node1"
    assert store.get_state(old).id == f"{OTHER}.node1"


async def test_foreign_route_session_not_held_here_is_no_session(client):
    store = SessionStore("node1")
    c = await client(make_app(store))
    resp = await c.get("/show", params={"create": "no"}, headers=cookie(f"{OTHER}.node2"))
    assert (await resp.json()) == {"session": None} and not set_cookies(resp)


# -- commit, sink, failures -------------------------------------------------------------------
async def test_deltas_reach_the_sink_before_the_response_is_released(client):
    entered, release = asyncio.Event(), asyncio.Event()
    seen: list[SessionDelta] = []

    async def slow_sink(delta: SessionDelta) -> None:
        seen.append(delta)
        entered.set()
        await release.wait()

    c = await client(make_app(sink=slow_sink))
    request = asyncio.ensure_future(c.get("/show", params={"set": "a", "value": "1"}))
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(20):  # give the server every chance to (wrongly) answer early
        await asyncio.sleep(0)
    assert not request.done()
    release.set()
    resp = await asyncio.wait_for(request, 5)
    assert resp.status == 200 and seen[0].set_values == {"a": "1"} and seen[0].created


async def test_read_only_request_sends_no_delta(client):
    sink = Sink()
    c = await client(make_app(sink=sink))
    sid = await new_session(c, set="a", value="1")
    count = len(sink.deltas)
    await c.get("/show", headers=cookie(sid))
    assert len(sink.deltas) == count


async def test_a_failing_handler_keeps_no_session_changes(client):
    store, sink = SessionStore("node1"), Sink()
    c = await client(make_app(store, sink=sink))
    assert (await c.get("/boom")).status == 500
    assert len(store) == 0 and sink.deltas == []
    sid = await new_session(c)
    assert (await c.get("/boom", headers=cookie(sid))).status == 500
    assert "written" not in store.begin(sid, 0)  # type: ignore[operator]


async def test_a_raised_redirect_still_commits_and_sets_the_cookie(client):
    store = SessionStore("node1")
    c = await client(make_app(store))
    resp = await c.get("/redirect", allow_redirects=False)
    assert resp.status == 303
    sid = set_cookies(resp)["JSESSIONID"].value
    assert store.begin(sid, 0)["seen"] is True  # type: ignore[index]


async def test_sessions_expire_with_the_injected_clock(client):
    clock = Clock()
    store = SessionStore("node1", max_inactive_interval=60)
    c = await client(make_app(store, clock=clock))
    sid = await new_session(c, set="a", value="1")
    clock.now += 61
    resp = await c.get("/show", params={"create": "no"}, headers=cookie(sid))
    assert (await resp.json()) == {"session": None}


# -- pyjk's own paths and headers -------------------------------------------------------------
async def test_paths_under_dash_have_no_sessions(client):
    store = SessionStore("node1")
    app = make_app(store)
    install_ready_endpoint(app, Readiness())
    c = await client(app)
    sid = await new_session(c)
    resp = await c.get("/-/internal", headers=cookie(sid))
    assert "never have sessions" in await resp.text() and not set_cookies(resp)
    resp = await c.get("/-/ready", headers=cookie(f"{OTHER}.node2"))
    assert resp.status == 200 and not set_cookies(resp)


async def test_ready_endpoint_answers_503_with_reasons_while_held(client):
    readiness = Readiness()
    app = make_app()
    install_ready_endpoint(app, readiness)
    c = await client(app)
    readiness.hold("state-transfer")
    resp = await c.get("/-/ready")
    assert resp.status == 503 and (await resp.json())["waiting_for"] == ["state-transfer"]
    readiness.release("state-transfer")
    resp = await c.get("/-/ready")
    assert resp.status == 200 and (await resp.json())["route"] == "node1"


async def test_request_id_header_is_exposed_on_the_request(client):
    c = await client(make_app())
    resp = await c.get("/rid", headers={"X-Pyjk-Request-Id": "r-123"})
    assert await resp.json() == {"request_id": "r-123"}
    resp = await c.get("/rid", headers={"X-Pyjk-Request-Id": "bad id"})
    assert await resp.json() == {"request_id": None}


def test_setup_refuses_a_store_for_another_route_and_bad_cookie_names():
    with pytest.raises(ValueError, match="route"):
        setup_sessions(web.Application(), route="node1", store=SessionStore("node2"))
    with pytest.raises(ValueError, match="cookie_name"):
        setup_sessions(web.Application(), route="node1", cookie_name="a b")


async def test_path_parameter_is_stripped_for_sub_application_routes_too(client):
    sub = web.Application()
    sub.router.add_get("/x/{id}", item)
    app = make_app()
    app.add_subapp("/sub/", sub)
    c = await client(app)
    sid = await new_session(c)
    resp = await c.get(f"/sub/x/7;jsessionid={sid}")
    body = await resp.json()
    assert (body["id"], body["path"], body["session"]) == ("7", "/sub/x/7", sid)


async def test_after_invalidate_get_session_starts_a_fresh_session(client):
    store, sink = SessionStore("node1"), Sink()

    async def logout_login(request: web.Request) -> web.Response:
        old = await get_session(request)
        old.invalidate()
        new = await get_session(request)
        new["user"] = "ann"
        return web.json_response({"old": old.id, "new": new.id})

    app = make_app(store, sink=sink)
    app.router.add_get("/relogin", logout_login)
    c = await client(app)
    sid = await new_session(c, set="user", value="bob")
    resp = await c.get("/relogin", headers=cookie(sid))
    body = await resp.json()
    assert body["old"] == sid and body["new"] != sid
    assert set_cookies(resp)["JSESSIONID"].value == body["new"]
    assert sid not in store and store.begin(body["new"], 0)["user"] == "ann"  # type: ignore[index]
    assert [d.invalidated for d in sink.deltas[-2:]] == [True, False]


async def test_changes_committed_before_a_failing_commit_are_still_shipped(client):
    store, sink = SessionStore("node1", max_session_bytes=200), Sink()

    async def relogin_then_overflow(request: web.Request) -> web.Response:
        (await get_session(request)).invalidate()
        fresh = await get_session(request)
        fresh["blob"] = []
        fresh["blob"].append("x" * 500)  # in place, past the limit: fails at commit
        return web.Response(text="done")

    app = make_app(store, sink=sink)
    app.router.add_get("/overflow", relogin_then_overflow)
    c = await client(app)
    sid = await new_session(c)
    resp = await c.get("/overflow", headers=cookie(sid))
    assert resp.status == 500
    assert sink.deltas[-1] == SessionDelta(sid, sink.deltas[-1].at, invalidated=True)
    assert len(store) == 0
