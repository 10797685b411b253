"""The SessionBackend seam in the middleware (worker/backend.py): an external store's loader
runs before the handler and forgets after it; a store that cannot say or cannot keep a change
gets 503 with Retry-After, never a new empty session and never an acknowledged lost write."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web

from worker import get_session, setup_sessions
from worker.backend import SessionNotSaved
from worker.delta import SessionState
from worker.peers import ABSENT, FOUND, UNKNOWN, Lookup

RP = "0123456789ABCDEF0123456789ABCDEF"


class FakeLoader:
    """A store that holds one session (count 5), or cannot be reached."""

    def __init__(self, manager, reachable: bool = True) -> None:
        self.manager, self.reachable = manager, reachable
        self.released: list[list[str]] = []

    async def load(self, session_ids: Sequence[str], request_id: str | None) -> Lookup:
        if not self.reachable:
            return UNKNOWN
        if any(i.startswith(RP) for i in session_ids):
            now = time.time()  # a load is an access (the store keeps the idle time)
            state = SessionState(f"{RP}.n1", now, now, 60.0, {"count": "5"})
            self.manager.store.install(state)
            return FOUND
        return ABSENT

    def release(self, random_parts: Sequence[str]) -> None:
        self.released.append(list(random_parts))
        for rp in random_parts:
            self.manager.store.forget(rp)


async def count(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["count"] = session.get("count", 0) + 1
    return web.json_response({"count": session["count"]})


def make_app(reachable: bool = True, saves: bool = True):
    app = web.Application()
    manager = setup_sessions(app, route="n1")
    loader = FakeLoader(manager, reachable)
    manager.loader = loader

    async def sink(delta) -> None:
        if not saves:
            raise SessionNotSaved("store down")

    manager.sink = sink
    app.router.add_get("/count", count)
    return app, manager, loader


async def test_the_session_comes_from_the_store_and_is_forgotten_after(aiohttp_client):
    app, manager, loader = make_app()
    client = await aiohttp_client(app)
    resp = await client.get("/count", headers={"Cookie": f"JSESSIONID={RP}.n1"})
    assert (resp.status, await resp.json()) == (200, {"count": 6})
    assert loader.released == [[RP]]
    assert len(manager.store) == 0  # only requests in flight hold sessions here


async def test_a_store_that_cannot_say_gets_503_and_no_new_session(aiohttp_client):
    app, manager, _ = make_app(reachable=False)
    client = await aiohttp_client(app)
    resp = await client.get("/count", headers={"Cookie": f"JSESSIONID={RP}.n1"})
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in resp.headers
    assert manager.refused["store"] == 1


async def test_a_change_the_store_did_not_keep_is_not_acknowledged(aiohttp_client):
    app, manager, _ = make_app(saves=False)
    client = await aiohttp_client(app)
    resp = await client.get("/count", headers={"Cookie": f"JSESSIONID={RP}.n1"})
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in resp.headers
    assert len(manager.store) == 0  # the unsaved change is not kept here either
    resp = await client.get("/count")  # a new visitor: its new session could not be saved
    assert resp.status == 503 and "Set-Cookie" not in resp.headers
    assert manager.refused["store"] == 2


def test_a_missing_redis_password_file_stops_the_worker_with_a_clear_error(tmp_path, capsys):
    from worker.__main__ import main

    config = tmp_path / "cluster.toml"
    config.write_text('[store]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n'
                      'password_file = "missing.pw"\n')  # fmt: skip
    assert main(["--route", "n1", "--listen", "127.0.0.1:0", "--cluster", str(config)]) == 2
    err = capsys.readouterr().err
    assert "store.password_file" in err and "missing.pw" in err


def test_singletons_with_a_redis_store_are_refused_at_start(tmp_path, capsys):
    from worker.__main__ import main

    config = tmp_path / "cluster.toml"
    config.write_text('[store]\nkind = "redis"\nurl = "redis://127.0.0.1:1"\n')
    argv = ["--route", "n1", "--listen", "127.0.0.1:0", "--cluster", str(config)]
    assert main([*argv, "--failover", "group1"]) == 2
    assert "need the built-in cluster" in capsys.readouterr().err
