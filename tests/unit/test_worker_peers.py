"""The middleware's decisions for a clustered node (worker/peers.py), with a fake cluster: it
refuses while its sessions are incomplete, asks the members for ids it lacks, takes over what
they had, and never answers a session that may exist with a new one."""

from __future__ import annotations

from collections.abc import Sequence
from http.cookies import SimpleCookie

import aiohttp
import pytest
from aiohttp import web

from worker import SessionStore, get_session, setup_sessions
from worker.delta import SessionState
from worker.middleware import SESSIONS
from worker.peers import (
    ABSENT,
    FOUND,
    MAX_LOOKUP_IDS,
    UNKNOWN,
    Hold,
    Lookup,
    missing,
    own_or_none,
)
from worker.readiness import Readiness, install_ready_endpoint

ELSEWHERE = "0123456789ABCDEF0123456789ABCDEF"  # a session that lives on node2
HELD = "FEDCBA9876543210FEDCBA9876543210"  # one this node holds


class FakePeers:
    """holding_back() returns `hold`; find() records what it was asked, then (FOUND) installs what
    `cluster` holds for those random parts, as a state transfer would."""

    def __init__(self, store: SessionStore, answer: Lookup = FOUND) -> None:
        self.store, self.answer = store, answer
        self.hold: Hold | None = None
        self.asked: list[tuple[str, ...]] = []
        self.cluster: dict[str, SessionState] = {}
        self.refreshed: list[tuple[str, ...]] = []
        self.refresh_answer: Lookup = FOUND
        self.newer: dict[str, SessionState] = {}  # what a member holds newer than this node

    def holding_back(self) -> Hold | None:
        return self.hold

    async def find(self, random_parts: Sequence[str]) -> Lookup:
        self.asked.append(tuple(random_parts))
        if self.answer == FOUND:
            for rp in random_parts:
                if rp in self.cluster:
                    self.store.install(self.cluster[rp])
        return self.answer

    async def refresh(self, random_parts: Sequence[str]) -> Lookup:
        self.refreshed.append(tuple(random_parts))
        if self.refresh_answer == FOUND:
            for rp in random_parts:
                if rp in self.newer:
                    self.store.install(self.newer[rp])
        return self.refresh_answer


def state(random_part: str, route: str, count: int) -> SessionState:
    return SessionState(f"{random_part}.{route}", 1.0, 2.0, 0.0, {"count": str(count)})


async def counter(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["count"] = session.get("count", 0) + 1
    return web.json_response({"session": session.id, "count": session["count"]})


async def internal(request: web.Request) -> web.Response:
    return web.Response(text="pyjk's own")


TAKEN = "00112233445566778899AABBCCDDEEFF"  # held here as a replica: routed to node2


def make_app(
    answer: Lookup = FOUND, *, clustered: bool = True
) -> tuple[web.Application, FakePeers]:
    app = web.Application()
    app.router.add_get("/counter", counter)
    app.router.add_get("/-/own", internal)
    store = SessionStore("node1")
    manager = setup_sessions(app, route="node1", store=store)
    readiness = Readiness()
    install_ready_endpoint(app, readiness)
    store.install(state(HELD, "node1", 5))
    store.install(state(TAKEN, "node2", 9))
    peers = FakePeers(store, answer)
    peers.cluster[ELSEWHERE] = state(ELSEWHERE, "node2", 41)
    if clustered:
        manager.peers = peers
    return app, peers


@pytest.fixture
async def client(aiohttp_client):
    async def make(app: web.Application):
        return await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())

    return make


def jar(session_id: str) -> dict[str, str]:
    return {"Cookie": f"JSESSIONID={session_id}"}


def new_cookie(resp: aiohttp.ClientResponse) -> str | None:
    for header in resp.headers.getall("Set-Cookie", ()):
        cookie = SimpleCookie()
        cookie.load(header)
        if "JSESSIONID" in cookie:
            return cookie["JSESSIONID"].value
    return None


# -- while the node's sessions are incomplete ---------------------------------------------------
CASES = {
    "id-held-elsewhere": jar(f"{ELSEWHERE}.node2"),
    "id-held-here": jar(f"{HELD}.node1"),
    "id-held-here-routed-elsewhere": jar(f"{TAKEN}.node2"),
    "no-id": {},
}


@pytest.mark.parametrize("case", CASES)
async def test_during_state_transfer_every_session_request_gets_503_retry_after_1(client, case):
    app, peers = make_app()
    peers.hold = Hold("state-transfer")
    c = await client(app)
    resp = await c.get("/counter", headers=CASES[case])
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "state-transfer" in await resp.text()
    assert new_cookie(resp) is None and peers.asked == []
    store = peers.store
    assert len(store) == 2 and store.get_state(HELD).attributes["count"] == "5"  # untouched
    assert app[SESSIONS].refused == {"state-transfer": 1}


@pytest.mark.parametrize(
    ("case", "served"),
    [("id-held-elsewhere", False), ("id-held-here", True),
     ("id-held-here-routed-elsewhere", False), ("no-id", True)],
)  # fmt: skip
async def test_during_a_resync_only_sessions_routed_here_and_requests_without_one_are_served(
    client, case, served
):
    app, peers = make_app()
    peers.hold = Hold("resync", own_sessions=True)
    c = await client(app)
    resp = await c.get("/counter", headers=CASES[case])
    if served:
        assert resp.status == 200 and (await resp.json())["count"] in (1, 6)
    else:  # missing here, or a takeover whose copy may miss the other node's last writes
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert peers.store.get_state(TAKEN).route == "node2"  # not taken over
    assert peers.asked == []


async def test_while_held_back_pyjk_paths_are_still_served(client):
    app, peers = make_app()
    peers.hold = Hold("state-transfer")
    c = await client(app)
    assert (await c.get("/-/own")).status == 200


async def test_once_no_longer_held_back_requests_are_served_again(client):
    app, peers = make_app()
    peers.hold = Hold("state-transfer")
    c = await client(app)
    assert (await c.get("/counter", headers=jar(f"{HELD}.node1"))).status == 503
    peers.hold = None
    resp = await c.get("/counter", headers=jar(f"{HELD}.node1"))
    assert resp.status == 200 and (await resp.json())["count"] == 6


# -- ready: ids this node lacks are asked of the cluster ----------------------------------------
async def test_an_id_held_by_a_member_is_fetched_and_taken_over_never_replaced(client):
    app, peers = make_app(FOUND)
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{ELSEWHERE}.node2"))
    body = await resp.json()
    assert resp.status == 200 and peers.asked == [(ELSEWHERE,)]
    assert body == {"session": f"{ELSEWHERE}.node1", "count": 42}  # its count, plus one
    assert new_cookie(resp) == f"{ELSEWHERE}.node1"  # renamed to this node: a takeover
    assert len(peers.store) == 3


async def test_an_id_no_live_member_holds_means_no_session_as_standalone(client):
    app, peers = make_app(ABSENT)
    c = await client(app)
    gone = "AAAABBBBCCCCDDDDAAAABBBBCCCCDDDD"
    resp = await c.get("/counter", headers=jar(f"{gone}.node2"))
    body = await resp.json()
    assert resp.status == 200 and peers.asked == [(gone,)]
    assert body["count"] == 1 and not body["session"].startswith(gone)


async def test_an_unanswered_lookup_gets_503_and_creates_nothing(client):
    app, peers = make_app(UNKNOWN)
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{ELSEWHERE}.node2"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert new_cookie(resp) is None and len(peers.store) == 2
    assert app[SESSIONS].refused == {"lookup": 1}


async def test_a_held_id_is_served_without_asking_anyone(client):
    app, peers = make_app()
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{HELD}.node1"))
    assert (await resp.json())["count"] == 6 and peers.asked == []


async def test_a_held_duplicate_cookie_wins_without_a_lookup(client):
    app, peers = make_app()
    c = await client(app)
    headers = {"Cookie": f"JSESSIONID=B{ELSEWHERE[1:]}.node3; JSESSIONID={HELD}.node1"}
    resp = await c.get("/counter", headers=headers)
    assert (await resp.json())["count"] == 6 and peers.asked == []


async def test_the_path_parameter_id_is_looked_up_too(client):
    app, peers = make_app(FOUND)
    c = await client(app)
    resp = await c.get(f"/counter;jsessionid={ELSEWHERE}.node2")
    assert (await resp.json())["count"] == 42 and peers.asked == [(ELSEWHERE,)]


async def test_malformed_ids_and_requests_without_ids_are_never_looked_up(client):
    app, peers = make_app()
    c = await client(app)
    for headers in (jar("not-a-session-id"), jar("0123.node2"), {}):
        resp = await c.get("/counter", headers=headers)
        assert resp.status == 200 and (await resp.json())["count"] == 1
    assert peers.asked == []


async def test_standalone_unknown_ids_mean_no_session_without_any_lookup(client):
    app, peers = make_app(clustered=False)
    peers.hold = Hold("state-transfer")  # not consulted: no cluster
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{ELSEWHERE}.node2"))
    assert resp.status == 200 and (await resp.json())["count"] == 1 and peers.asked == []


def test_missing_lists_unheld_well_formed_random_parts_once_in_order_up_to_the_cap():
    store = SessionStore("node1")
    store.install(state(HELD, "node1", 1))
    ids = [f"{c * 32}.node2" for c in "ABCDEF"]
    requested = ["junk", f"{HELD}.node2", ids[0], f"{'A' * 32}.node3", *ids[1:]]
    assert missing(requested, store) == tuple(c * 32 for c in "ABCDEF"[:MAX_LOOKUP_IDS])
    assert missing([f"{HELD}.node9"], store) == ()


def test_own_or_none_looks_at_the_first_held_session_like_the_request_would():
    store = SessionStore("node1")
    store.install(state(HELD, "node1", 1))
    store.install(state(TAKEN, "node2", 1))
    assert own_or_none([], store) and own_or_none(["junk"], store)
    assert own_or_none([f"{HELD}.node1"], store)
    assert own_or_none([f"{HELD}.node7"], store)  # the route in the store decides, not the id's
    assert not own_or_none([f"{TAKEN}.node2", f"{HELD}.node1"], store)
    assert own_or_none([f"{ELSEWHERE}.node2", f"{HELD}.node1"], store)
    assert not own_or_none([f"{ELSEWHERE}.node2"], store)  # named, but not held here


# -- a takeover: the copy here may miss the old owner's last write ------------------------------
async def test_a_takeover_first_merges_a_newer_copy_a_member_holds(client):
    # node2 died while broadcasting its last write (count 10): node3 got it, this node did not
    app, peers = make_app()
    peers.newer[TAKEN] = state(TAKEN, "node2", 10)
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{TAKEN}.node2"))
    assert resp.status == 200 and (await resp.json())["count"] == 11  # not 10: nothing lost
    assert peers.refreshed == [(TAKEN,)] and peers.asked == []
    assert new_cookie(resp) == f"{TAKEN}.node1"


async def test_a_takeover_a_member_leaves_unanswered_gets_503_and_changes_nothing(client):
    app, peers = make_app()
    peers.refresh_answer = UNKNOWN
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{TAKEN}.node2"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert peers.store.get_state(TAKEN).attributes["count"] == "9"
    assert peers.store.get_state(TAKEN).route == "node2"
    assert app[SESSIONS].refused == {"refresh": 1}


async def test_sessions_routed_here_need_no_refresh(client):
    app, peers = make_app()
    c = await client(app)
    resp = await c.get("/counter", headers=jar(f"{HELD}.node1"))
    assert resp.status == 200 and peers.refreshed == []
