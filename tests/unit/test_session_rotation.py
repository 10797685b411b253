"""Session id rotation: the store gives a session a new id with the same data, the change is
one creating delta that ``replaces`` the old id, and replicas end the old id when they apply it.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from replication.codec import decode, encode
from replication.ledger import Ledger, RecordedResponse
from replication.replicator import Replicator
from tests.unit.test_sessions_store import new_session
from worker import get_session, rotate_session_id, setup_sessions
from worker.backend import SessionNotSaved
from worker.delta import SessionDelta
from worker.middleware import SESSIONS
from worker.sessions import SessionStore, TooManySessions

T0 = 1_700_000_000.0


def test_a_rotated_session_has_a_new_random_part_the_route_and_all_the_data():
    store = SessionStore("node1")
    old_id = new_session(store, cart=["apple"], user="bob")
    view = store.begin(old_id, T0 + 1)
    view["user"] = "alice"
    new = store.rotate(view, T0 + 1)
    assert new.id.split(".")[0] != old_id.split(".")[0]
    assert new.route == "node1"
    assert dict(new) == {"cart": ["apple"], "user": "alice"}
    new_delta = store.commit(new, T0 + 1)
    assert store.commit(view, T0 + 1) is None  # the old one has no delta of its own
    assert new_delta.replaces == old_id
    assert new_delta.created == T0  # the session's age is kept
    assert dict(new_delta.set_values) == {"cart": ["apple"], "user": "alice"}
    assert old_id not in store and new.id in store
    assert store.begin(old_id, T0 + 2) is None


def test_a_failed_commit_of_the_new_session_leaves_the_old_one_as_it_was():
    store = SessionStore("node1", max_session_bytes=64)
    old_id = new_session(store, n=1)
    view = store.begin(old_id, T0 + 1)
    new = store.rotate(view, T0 + 1)
    box = new.setdefault("box", [])
    box.append("x" * 100)  # grows in place past the limit: found at commit
    with pytest.raises(ValueError):
        store.commit(new, T0 + 1)
    store.abort(view)
    assert old_id in store and new.id not in store


def test_rotation_counts_against_the_session_limit():
    store = SessionStore("node1", max_active_sessions=1)
    old_id = new_session(store)
    with pytest.raises(TooManySessions):
        store.rotate(store.begin(old_id, T0), T0)


def test_a_replaces_field_travels_on_the_wire_and_only_on_a_creating_delta():
    store = SessionStore("node1")
    old_id = new_session(store, n=1)
    new = store.rotate(store.begin(old_id, T0), T0)
    delta = store.commit(new, T0)
    assert SessionDelta.from_wire(delta.to_wire()) == delta
    with pytest.raises(ValueError):
        SessionDelta(new.id, T0, replaces=old_id)  # not creating


def test_a_replica_ends_the_old_id_and_holds_the_new_one_in_one_change():
    a_store, b_store = SessionStore("node1"), SessionStore("node2")
    a, b = Replicator(a_store, "a" * 32, ledger=Ledger()), Replicator(b_store, "b" * 32)
    b.order.contact(a.me, 0)
    first = a_store.create(T0)
    first["cart"] = ["apple"]
    b.receive(a.me, a.local(a_store.commit(first, T0), T0), T0)
    assert first.id in b_store

    view = a_store.begin(first.id, T0 + 1)
    new = a_store.rotate(view, T0 + 1)
    delta = a_store.commit(new, T0 + 1)
    a_store.commit(view, T0 + 1)
    record = RecordedResponse(200, (), b"ok", T0 + 1)
    msg = a.local(delta, T0 + 1, "rid-login", record)
    msg = decode(encode(msg))  # as it travels
    assert b.receive(a.me, msg, T0 + 1).status == "applied"
    assert first.id not in b_store
    assert b_store.begin(new.id, T0 + 2)["cart"] == ["apple"]
    old_rp = first.id.split(".")[0]
    assert old_rp in a.dead and old_rp in b.dead  # a late write to the old id stays dead
    assert b.ledger.get("rid-login", T0 + 2) == record


async def test_the_middleware_sets_the_new_cookie_and_forgets_the_old_id(aiohttp_client):
    app = web.Application()
    setup_sessions(app, route="n1")

    async def visit(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"id": session.id, "n": session["n"]})

    async def login(request: web.Request) -> web.Response:
        session = await rotate_session_id(request)
        return web.json_response({"id": session.id, "n": session.get("n", 0)})

    app.router.add_get("/visit", visit)
    app.router.add_post("/login", login)
    client: TestClient = await aiohttp_client(app)
    first = await (await client.get("/visit")).json()
    resp = await client.post("/login")
    rotated = await resp.json()
    assert rotated["n"] == 1 and rotated["id"] != first["id"]
    assert resp.cookies["JSESSIONID"].value == rotated["id"]
    client.session.cookie_jar.clear()
    stale = await client.get("/visit", headers={"Cookie": f"JSESSIONID={first['id']}"})
    assert (await stale.json())["n"] == 1  # the old id opens nothing
    fresh = await client.get("/visit", headers={"Cookie": f"JSESSIONID={rotated['id']}"})
    assert (await fresh.json())["n"] == 2


def test_rotating_twice_in_one_request_still_replaces_the_id_the_cluster_knows():
    store = SessionStore("node1")
    old_id = new_session(store, n=1)
    view = store.begin(old_id, T0)
    first = store.rotate(view, T0)
    second = store.rotate(first, T0)
    deltas = [store.commit(v, T0) for v in (second, first, view)]
    assert deltas[1:] == [None, None]
    assert deltas[0].replaces == old_id and deltas[0].session_id == second.id
    assert set(s.id for s in store.states()) == {second.id}


def test_rotating_then_invalidating_ends_the_old_id_everywhere():
    store = SessionStore("node1")
    old_id = new_session(store, n=1)
    view = store.begin(old_id, T0)
    new = store.rotate(view, T0)
    new.invalidate()
    deltas = [store.commit(v, T0 + 1) for v in (new, view)]
    assert deltas == [SessionDelta(old_id, T0 + 1, invalidated=True), None]
    assert store.states() == []


def test_a_write_to_the_old_id_acknowledged_during_the_rotation_is_carried_over():
    """Issue 18: the new session was built from the rotating request's start, so a concurrent
    request's acknowledged write to the old id vanished with it."""
    store = SessionStore("node1")
    old_id = new_session(store, cart=["apple"], user="bob", theme="dark")
    rotating = store.begin(old_id, T0 + 1)
    rotating["user"] = "alice"  # changed by the rotating request: its own value wins
    new = store.rotate(rotating, T0 + 1)
    writer = store.begin(old_id, T0 + 1)  # a concurrent request on the old id
    writer["cart"] = ["apple", "pear"]
    writer["user"] = "mallory"
    writer["coupon"] = "X1"
    del writer["theme"]
    assert store.commit(writer, T0 + 1) is not None  # acknowledged to its client
    delta = store.commit(new, T0 + 2)
    assert store.commit(rotating, T0 + 2) is None
    expected = {"cart": ["apple", "pear"], "user": "alice", "coupon": "X1"}
    assert dict(delta.set_values) == expected
    assert {k: json.loads(t) for k, t in store.get_state(new.id).attributes.items()} == expected
    assert old_id not in store


def test_a_value_changed_in_place_after_the_rotation_is_this_requests_own():
    store = SessionStore("node1")
    old_id = new_session(store, cart=["apple"], n=1)
    rotating = store.begin(old_id, T0)
    new = store.rotate(rotating, T0)
    new["cart"].append("fig")  # touched after the rotation
    again = store.rotate(new, T0)  # and rotated once more: still a copy of the first session
    writer = store.begin(old_id, T0)
    writer["cart"] = ["plum"]
    writer["n"] = 2
    store.commit(writer, T0)
    delta = store.commit(again, T0)
    assert [store.commit(v, T0) for v in (new, rotating)] == [None, None]
    assert dict(delta.set_values) == {"cart": ["apple", "fig"], "n": 2}


async def test_two_concurrent_requests_one_rotating_one_writing_keep_both(aiohttp_client):
    import asyncio

    app = web.Application()
    setup_sessions(app, route="n1")
    rotated, written = asyncio.Event(), asyncio.Event()

    async def visit(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"id": session.id, "n": session["n"]})

    async def add(request: web.Request) -> web.Response:
        await rotated.wait()
        session = await get_session(request)
        session["item"] = request.query["item"]
        return web.json_response({"id": session.id})

    async def login(request: web.Request) -> web.Response:
        session = await rotate_session_id(request)
        session["user"] = "alice"
        rotated.set()
        await written.wait()  # the other request commits while this one is still running
        return web.json_response({"id": session.id})

    app.router.add_get("/visit", visit)
    app.router.add_get("/add", add)
    app.router.add_post("/login", login)
    client: TestClient = await aiohttp_client(app)
    first = await (await client.get("/visit")).json()
    cookie = {"Cookie": f"JSESSIONID={first['id']}"}
    login_task = asyncio.ensure_future(client.post("/login", headers=cookie))
    added = await client.get("/add?item=book", headers=cookie)
    assert added.status == 200  # acknowledged
    written.set()
    new_id = (await (await login_task).json())["id"]
    state = app[SESSIONS].store.get_state(new_id)
    kept = {k: json.loads(t) for k, t in state.attributes.items()}
    assert kept == {"n": 1, "user": "alice", "item": "book"}


def test_a_write_to_the_old_id_that_commits_after_the_rotation_lands_on_the_successor():
    """The writer commits *after* the rotating request: its view's session is gone, and its
    change was dropped under a 200. It goes to the successor, as a delta to the new id."""
    store = SessionStore("node1")
    old_id = new_session(store, cart=["apple"], theme="dark")
    writer = store.begin(old_id, T0 + 1)  # began before the rotation
    rotating = store.begin(old_id, T0 + 1)
    new = store.rotate(rotating, T0 + 1)
    store.commit(new, T0 + 1)
    store.commit(rotating, T0 + 1)
    writer["cart"] = ["apple", "pear"]
    del writer["theme"]
    delta = store.commit(writer, T0 + 2)
    assert delta is not None and delta.session_id == new.id
    assert dict(delta.set_values) == {"cart": ["apple", "pear"]}
    assert delta.removed_attributes == ("theme",)
    assert {k: json.loads(t) for k, t in store.get_state(new.id).attributes.items()} == {
        "cart": ["apple", "pear"]
    }


def test_a_late_write_whose_successor_is_not_held_here_is_refused_not_dropped():
    """An external store (Redis, distributed mode) forgets the successor after the rotating
    request: the late write cannot be applied, and the client must not get a 200."""
    store = SessionStore("node1")
    old_id = new_session(store, cart=["apple"])
    writer = store.begin(old_id, T0 + 1)
    rotating = store.begin(old_id, T0 + 1)
    new = store.rotate(rotating, T0 + 1)
    store.commit(new, T0 + 1)
    store.commit(rotating, T0 + 1)
    assert store.forget(new.id.split(".")[0])
    writer["cart"] = ["pear"]
    with pytest.raises(SessionNotSaved, match="rotated"):
        store.commit(writer, T0 + 2)


def test_a_late_write_after_a_replicated_rotation_lands_on_the_successor():
    store, replica = SessionStore("node1"), SessionStore("node2")
    old_id = new_session(store, cart=["apple"])
    replica.install(store.get_state(old_id))
    writer = replica.begin(old_id, T0 + 1)  # a request on node2, before the rotation arrives
    rotating = store.begin(old_id, T0 + 1)
    new = store.rotate(rotating, T0 + 1)
    replica.apply(store.commit(new, T0 + 1))
    writer["cart"] = ["pear"]
    delta = replica.commit(writer, T0 + 2)
    assert delta is not None and delta.session_id == new.id
    store.apply(delta)
    assert json.loads(store.get_state(new.id).attributes["cart"]) == ["pear"]
