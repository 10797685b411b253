"""Exactly once: recording responses, the bounded ledger, and the worker middleware hook."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from replication.ledger import Ledger, RecordedResponse
from replication.replay import (
    REPLAY_HEADER,
    UNVERIFIED,
    Unverified,
    replay_response,
    snapshot_response,
)
from worker import SessionDelta, get_session, setup_sessions
from worker.delta import SessionState
from worker.middleware import SESSIONS
from worker.peers import FOUND, Hold, Lookup
from worker.sessions import SessionStore

T0 = 1_700_000_000.0


def record(body: bytes = b"x", at: float = T0) -> RecordedResponse:
    return RecordedResponse(200, (("Content-Type", "text/plain"),), body, at)


def test_a_response_is_recorded_with_status_body_and_the_headers_a_replay_needs():
    response = web.json_response({"n": 1}, status=201, headers={"X-Other": "no"})
    response.set_cookie("JSESSIONID", "ABC.node1", path="/", httponly=True)
    rec = snapshot_response(response, T0, max_body=1024)
    assert rec is not None and rec.status == 201 and rec.body == b'{"n": 1}'
    headers = dict(rec.headers)
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Set-Cookie"].startswith("JSESSIONID=ABC.node1") and "X-Other" not in headers


def test_streamed_or_oversized_responses_are_not_recorded():
    assert snapshot_response(web.StreamResponse(), T0, 1024) is None
    assert snapshot_response(web.Response(body=b"x" * 2000), T0, 1024) is None


def test_a_replayed_response_repeats_the_record_and_says_so():
    rec = RecordedResponse(303, (("Location", "/app/"), ("Set-Cookie", "a=b; Path=/")), b"", T0)
    response = replay_response(rec)
    assert response.status == 303 and response.headers["Location"] == "/app/"
    assert response.headers.getall("Set-Cookie") == ["a=b; Path=/"]
    assert response.headers[REPLAY_HEADER] == "1"


def test_records_round_trip_through_the_wire_form():
    rec = record(b"\x00binary\xff")
    assert RecordedResponse.from_wire(rec.to_wire(), max_body=64) == rec


def test_the_ledger_forgets_after_its_ttl():
    ledger = Ledger(ttl=10)
    ledger.put("r1", record(at=T0), T0)
    assert ledger.get("r1", T0 + 10) is not None
    assert ledger.get("r1", T0 + 10.1) is None and len(ledger) == 0


def test_the_ledger_keeps_at_most_max_entries_and_max_bytes_oldest_out_first():
    ledger = Ledger(max_entries=2)
    for i in range(3):
        ledger.put(f"r{i}", record(), T0)
    assert [rid for rid, _ in ledger.items(T0)] == ["r1", "r2"]
    ledger = Ledger(max_bytes=100)
    ledger.put("big1", record(b"x" * 60), T0)
    ledger.put("big2", record(b"y" * 60), T0)
    assert [rid for rid, _ in ledger.items(T0)] == ["big2"]


def test_a_record_put_again_keeps_its_place_so_ttl_and_eviction_go_by_its_age():
    # distributed mode: every copy of a session entry a backup is sent carries its newest
    # records, and the backup keeps them all. Moved to the end on each copy (the old code),
    # an old record sat behind younger ones: expire() stopped before it (a replay past the
    # ttl) and max_entries evicted the younger records first.
    ledger = Ledger(ttl=10)
    ledger.put("old", record(at=T0), T0)
    ledger.put("young", record(at=T0 + 5), T0 + 5)
    ledger.put("old", record(at=T0), T0 + 6)  # the next copy still carries it
    assert ledger.get("old", T0 + 11) is None
    assert [rid for rid, _ in ledger.items(T0 + 11)] == ["young"]
    ledger = Ledger(ttl=100, max_entries=2)
    ledger.put("in-entry", record(at=T0), T0)
    ledger.put("fell-out", record(at=T0 + 1), T0 + 1)
    ledger.put("in-entry", record(at=T0), T0 + 2)
    ledger.put("new", record(at=T0 + 2), T0 + 2)  # the oldest goes, not the one put last
    assert [rid for rid, _ in ledger.items(T0 + 3)] == ["fell-out", "new"]


def test_an_equal_record_that_names_its_write_is_attached_in_place():
    ledger = Ledger()
    ledger.put("r1", record(), T0)
    ledger.put("r2", record(), T0)
    ledger.put("r1", record().attached("s1", (3, "n1")), T0)  # type: ignore[arg-type]
    assert [rid for rid, _ in ledger.items(T0)] == ["r1", "r2"]
    assert [rid for rid, _ in ledger.for_session("s1", T0)] == ["r1"]
    ledger.put("r1", record(), T0)  # again without: what is known stays
    assert [rid for rid, _ in ledger.for_session("s1", T0)] == ["r1"]


def test_records_over_max_body_or_already_expired_are_ignored():
    ledger = Ledger(ttl=10, max_body=4)
    ledger.put("long", record(b"12345"), T0)
    ledger.put("old", record(at=T0 - 11), T0)
    assert len(ledger) == 0


# -- the middleware hook -----------------------------------------------------------------------
class Observer:
    """A stand-in for the cluster node: records in a Ledger, replays from it."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.calls: list[tuple[int, str | None]] = []
        self.order: list[str] = []

    def replay(self, request_id: str) -> web.StreamResponse | None:
        rec = self.ledger.get(request_id, T0)
        return None if rec is None else replay_response(rec)

    def committed(
        self, deltas: Sequence[SessionDelta], request_id: str | None, response: web.StreamResponse
    ) -> None:
        self.order.append("committed")
        self.calls.append((len(deltas), request_id))
        rec = snapshot_response(response, T0, 4096)
        if request_id is not None and rec is not None:
            self.ledger.put(request_id, rec, T0)


async def bump(request: web.Request) -> web.Response:
    session = await get_session(request)
    assert session is not None
    session["n"] = session.get("n", 0) + 1
    return web.json_response({"n": session["n"]})


async def peek(request: web.Request) -> web.Response:
    session = await get_session(request, create=False)
    return web.json_response({"n": None if session is None else session.get("n")})


async def quiet(request: web.Request) -> web.Response:
    return web.json_response({"quiet": True})


def make_app(observer: Observer) -> web.Application:
    app = web.Application()
    app.router.add_get("/bump", bump)
    app.router.add_get("/peek", peek)
    app.router.add_get("/quiet", quiet)

    async def sink(delta: SessionDelta) -> None:
        observer.order.append("sink")

    manager = setup_sessions(app, route="node1", sink=sink)
    manager.observer = observer
    manager.internal_paths.add("/quiet")
    return app


async def test_a_retried_request_id_gets_the_recorded_answer_without_running_again(
    aiohttp_client,
):
    observer = Observer()
    client = await aiohttp_client(make_app(observer))
    first = await client.get("/bump", headers={"X-Pyjk-Request-Id": "req-1"})
    cookie = first.headers["Set-Cookie"].split(";")[0]
    assert await first.json() == {"n": 1}
    again = await client.get("/bump", headers={"X-Pyjk-Request-Id": "req-1", "Cookie": cookie})
    assert await again.json() == {"n": 1} and again.headers[REPLAY_HEADER] == "1"
    assert again.headers["Set-Cookie"].split(";")[0] == cookie  # the original cookie, too
    peek_resp = await client.get("/peek", headers={"Cookie": cookie})
    assert await peek_resp.json() == {"n": 1}  # the handler did not run a second time
    other = await client.get("/bump", headers={"X-Pyjk-Request-Id": "req-2", "Cookie": cookie})
    assert await other.json() == {"n": 2}


async def test_the_observer_hears_of_commits_before_any_delta_is_shipped(aiohttp_client):
    observer = Observer()
    client = await aiohttp_client(make_app(observer))
    await client.get("/bump")
    await client.get("/peek")  # reads only: nothing committed, nothing told
    assert observer.calls == [(1, None)] and observer.order == ["committed", "sink"]


async def test_internal_paths_have_no_sessions_and_no_replay(aiohttp_client):
    observer = Observer()
    observer.ledger.put("req-q", record(b"recorded"), T0)
    client = await aiohttp_client(make_app(observer))
    resp = await client.get("/quiet", headers={"X-Pyjk-Request-Id": "req-q"})
    assert await resp.json() == {"quiet": True} and "Set-Cookie" not in resp.headers


class BringsRecords:
    """SessionPeers whose lookup brings a session written elsewhere together with the records of
    its writes, as a member's answer does."""

    def __init__(self, store: SessionStore, observer: Observer) -> None:
        self.store, self.observer = store, observer

    def holding_back(self) -> Hold | None:
        return None

    async def find(self, random_parts: Sequence[str]) -> Lookup:
        rp = random_parts[0]
        self.store.install(SessionState(f"{rp}.node3", 1.0, T0, 0.0, {"n": "5"}))
        self.observer.ledger.put("req-5", record(b'{"n": 5}'), T0)  # the write that made n 5
        return FOUND

    async def refresh(self, random_parts: Sequence[str]) -> Lookup:
        return FOUND


async def test_a_retry_whose_session_a_lookup_brings_in_is_answered_from_its_record(
    aiohttp_client,
):
    # node3 ran req-5 and died before answering; the retry reaches this node, which lacks the
    # session: the lookup brings n=5 and req-5's record, so req-5 must not run again (n=6)
    observer = Observer()
    app = make_app(observer)
    manager = app[SESSIONS]
    manager.peers = BringsRecords(manager.store, observer)
    client = await aiohttp_client(app)
    cookie = f"JSESSIONID={'AB' * 16}.node3"
    retry = await client.get("/bump", headers={"X-Pyjk-Request-Id": "req-5", "Cookie": cookie})
    assert await retry.read() == b'{"n": 5}' and retry.headers[REPLAY_HEADER] == "1"
    assert manager.store.get_state("AB" * 16).attributes["n"] == "5"  # not run a second time
    nxt = await client.get("/bump", headers={"X-Pyjk-Request-Id": "req-6", "Cookie": cookie})
    assert await nxt.json() == {"n": 6}


async def test_an_unverified_requests_cache_refusal_stays_with_that_request() -> None:
    unverified = Unverified()

    async def request(request_id: str, readable: bool) -> str | None:
        unverified.serving(request_id)  # the store's load
        if readable:
            unverified.discard(request_id)  # its retry record was read
        else:
            unverified.add(request_id)  # its retry record could not be read
        return unverified.cache_refusal()  # the handler's cache write asks

    assert await asyncio.create_task(request("r-1", False)) == UNVERIFIED
    assert await asyncio.create_task(request("r-2", True)) is None
    # two requests served one after the other in one task (one context): the second one's
    # writes are its own business, not the first one's refusal
    assert await request("r-1", False) == UNVERIFIED
    assert await request("r-2", True) is None
    assert unverified.refusal("r-1") == UNVERIFIED  # in doubt, asked outside its context
    assert await asyncio.create_task(request("r-1", True)) is None  # its record read now


async def test_an_unverified_requests_mark_is_not_consumed_and_reaches_its_background_tasks():
    # The old code kept one global mark per request id, removed by the commit's refusal: a
    # task the handler spawned then wrote after the commit while the request got 503 (its
    # retry ran the handler, and that write, again).
    unverified = Unverified()
    committed = asyncio.Event()

    async def audit() -> str | None:  # the handler's fire-and-forget task
        await committed.wait()
        return unverified.cache_refusal()

    async def request() -> tuple[str | None, str | None, asyncio.Task[str | None]]:
        unverified.serving("r-1")
        unverified.add("r-1")
        background = asyncio.create_task(audit())
        at_commit = unverified.refusal("r-1")
        committed.set()
        return at_commit, unverified.refusal("r-1"), background

    at_commit, again, background = await asyncio.create_task(request())
    assert at_commit == again == UNVERIFIED
    assert await background == UNVERIFIED


async def test_two_attempts_of_one_request_id_on_one_node_decide_each_for_itself():
    unverified = Unverified()
    unheard, heard = asyncio.Event(), asyncio.Event()

    async def first() -> str | None:  # its lookup goes unanswered
        unverified.serving("r-1")
        unverified.add("r-1")
        unheard.set()
        await heard.wait()
        return unverified.refusal("r-1")

    async def second() -> str | None:  # a concurrent attempt whose lookup is answered
        await unheard.wait()
        unverified.serving("r-1")
        unverified.discard("r-1")
        heard.set()
        return unverified.refusal("r-1")

    assert await asyncio.gather(first(), second()) == [UNVERIFIED, None]
    assert not unverified.in_doubt("r-1")  # read since: its next attempt needs no second ask


async def test_a_request_whose_one_lookup_went_unheard_stays_unverified_when_another_is_heard():
    unverified = Unverified()

    async def request() -> str | None:
        unverified.serving("r-1")
        unverified.add("r-1")  # the records kept aside by the session's owners: unheard
        unverified.discard("r-1")  # its own record entry (rid/): answered, absent
        return unverified.cache_refusal()

    assert await asyncio.create_task(request()) == UNVERIFIED
    assert unverified.in_doubt("r-1")
