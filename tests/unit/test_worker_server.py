"""The worker's wiring without a process: app preparation and the expiry sweep."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web

from tests.support.procs import free_port, until
from worker import SessionDelta, SessionStore, setup_sessions
from worker.middleware import SESSIONS
from worker.readiness import READINESS
from worker.server import WorkerOptions, WorkerSetupError, prepare_app, serve, sweep_once
from worker.singletons import SingletonContext, singleton


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_prepare_app_enables_sessions_with_the_cli_settings_and_readiness():
    app = web.Application()
    manager, readiness = prepare_app(
        app, WorkerOptions(route="node3", cookie_name="SID", max_inactive=60)
    )
    assert app[SESSIONS] is manager and app[READINESS] is readiness
    assert (manager.route, manager.cookie_name) == ("node3", "SID")
    assert manager.store.max_inactive_interval == 60.0
    assert readiness.ready


def test_prepare_app_keeps_sessions_the_app_set_up_itself():
    app = web.Application()
    own = setup_sessions(app, route="node1", cookie_name="MINE")
    manager, _ = prepare_app(app, WorkerOptions(route="node1"))
    assert manager is own


def test_prepare_app_refuses_an_app_set_up_for_another_route():
    app = web.Application()
    setup_sessions(app, route="node1")
    with pytest.raises(WorkerSetupError, match=r"'node1'.*--route is 'node2'"):
        prepare_app(app, WorkerOptions(route="node2"))


def test_prepare_app_turns_bad_settings_into_a_setup_error():
    with pytest.raises(WorkerSetupError, match="cookie_name"):
        prepare_app(web.Application(), WorkerOptions(route="node1", cookie_name="a;b"))


async def test_sweep_expires_idle_sessions_and_ships_invalidations_for_its_own():
    clock, shipped = Clock(), []

    async def sink(delta: SessionDelta) -> None:
        shipped.append(delta)

    store = SessionStore("node1", max_inactive_interval=60)
    manager = setup_sessions(web.Application(), route="node1", store=store, sink=sink, clock=clock)
    own = store.create(clock.now)
    store.commit(own, clock.now)
    replica = "A" * 32 + ".node2"
    store.apply(SessionDelta(replica, clock.now, created=clock.now, max_inactive=60.0))

    clock.now += 61
    assert await sweep_once(manager) == [own.id]
    assert shipped == [SessionDelta(own.id, clock.now, invalidated=True)]
    clock.now += 60  # past the replica's grace (2 x 60 s): dropped locally, not announced
    assert await sweep_once(manager) == [replica]
    assert len(shipped) == 1 and len(store) == 0


async def test_worker_metrics_are_served_outside_sessions_and_an_apps_own_route_wins(
    aiohttp_client,
):
    from prometheus_client.parser import text_string_to_metric_families

    from worker import setup_sessions
    from worker.metrics import install_metrics

    app = web.Application()
    manager = setup_sessions(app, route="n1")
    install_metrics(app, manager)
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "Set-Cookie" not in resp.headers  # no session for the scrape
    names = {f.name for f in text_string_to_metric_families(await resp.text())}
    assert {"pyjk_worker_sessions", "pyjk_worker_sessions_created", "process_cpu_seconds"} <= names

    own = web.Application()

    async def mine(request: web.Request) -> web.Response:
        return web.Response(text="the app's own")

    own.router.add_get("/metrics", mine)
    install_metrics(own, setup_sessions(own, route="n1"))  # no RuntimeError: skipped
    client = await aiohttp_client(own)
    assert await (await client.get("/metrics")).text() == "the app's own"


_EVENTS: list[str] = []


def singleton_app() -> web.Application:
    """An app with one local singleton (no cluster: this node runs it)."""
    app = web.Application()

    async def daemon(ctx: SingletonContext) -> None:
        _EVENTS.append("started")
        await ctx.sleep(60)

    async def stop(ctx: SingletonContext) -> None:
        _EVENTS.append("stopped")

    singleton(app, "local-daemon", daemon, stop)
    return app


async def test_an_abnormal_exit_still_stops_the_local_singletons():
    """Review finding: without a cluster the local singletons were closed only on SIGTERM;
    a serve() that ended otherwise (here: cancelled) left their stop unrun."""
    _EVENTS.clear()
    options = WorkerOptions(route="node1", port=free_port(),
                            app=f"{__name__}:singleton_app")  # fmt: skip
    task = asyncio.create_task(serve(options))
    await until(lambda: _EVENTS == ["started"], 10, what="the local singleton")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert _EVENTS == ["started", "stopped"]
