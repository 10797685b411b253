"""The Immutant demo: a cluster singleton counts every second; kill its node and another
continues the count — no reset, no double step.

    pyjk-worker --route node1 --listen 127.0.0.1:8101 --cluster conf/cluster.toml \\
        --app worker.examples.singleton_counter:make_app       (and node2, node3 likewise)
    curl -s 127.0.0.1:8102/counter   →  {"count": 17, "owner": "node1", "epoch": 1, "node": "node2"}

Where the count lives: pyjk has no cluster cache yet (issue 16), so the counter is a session
that never expires, replicated to every member like any session. Each tick reads it, adds one,
commits, and waits for the members' acks (sync mode) before it counts as done: a tick that
finished is on every live member, so the next owner continues from it. The record carries the
epoch of the owner that wrote it; an owner whose epoch is older than the record's stops (a
fenced write), so even a node that missed its handover cannot step the count back. When the
cluster caches land, the counter moves there and this example keeps its interface.

`SINGLETON_COUNTER_TICKS=FILE` appends one JSON line per finished tick (node, epoch, count,
time): the integration test reads it to check that no two nodes ever tick at once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aiohttp import web

from worker.middleware import SESSIONS, SessionManager
from worker.singletons import SingletonContext, singleton

NAME = "counter"
ATTRIBUTE = "pyjk.singleton_counter"  # marks the session that holds the count
PERIOD = 1.0  # s between ticks


def find_record(manager: SessionManager) -> tuple[str | None, dict[str, Any]]:
    """The counter session's id and record (on any node: every member holds a replica)."""
    best: tuple[str | None, dict[str, Any]] = (None, {"count": 0, "epoch": 0, "owner": None})
    for state in manager.store.states():
        text = state.attributes.get(ATTRIBUTE)
        if text is not None:
            record = json.loads(text)
            if record["count"] >= best[1]["count"]:  # two only after a total restart race
                best = (state.id, record)
    return best


async def tick(manager: SessionManager, ctx: SingletonContext) -> bool:
    """One step of the count; False when a newer owner's record fences this one off."""
    now = manager.clock()
    session_id, record = find_record(manager)
    if record["epoch"] > ctx.epoch:
        return False
    view = None if session_id is None else manager.store.begin(session_id, now)
    if view is None:
        view = manager.store.create(now, max_inactive_interval=0)  # never expires
    elif view.route != ctx.route:
        view.change_route(ctx.route)  # this node writes it now (as a session takeover)
    view[ATTRIBUTE] = {"count": record["count"] + 1, "epoch": ctx.epoch, "owner": ctx.route}
    delta = manager.store.commit(view, now)
    if delta is not None:
        await manager.sink(delta)  # sync mode: every live member acked it
    return True


def _log_tick(path: str, ctx: SingletonContext, count: int) -> None:
    line = json.dumps({"node": ctx.route, "epoch": ctx.epoch, "count": count, "t": time.time()})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def make_app() -> web.Application:
    app = web.Application()
    ticks_file = os.environ.get("SINGLETON_COUNTER_TICKS")

    async def count(ctx: SingletonContext) -> None:
        manager = app[SESSIONS]  # set up by the worker before the app starts
        while ctx.active:
            began = time.monotonic()
            if not await tick(manager, ctx):
                return  # fenced: a newer owner wrote the record
            if ticks_file and ctx.active:
                _log_tick(ticks_file, ctx, find_record(manager)[1]["count"])
            await ctx.sleep(max(0.0, PERIOD - (time.monotonic() - began)))

    singleton(app, NAME, count)

    async def show(request: web.Request) -> web.Response:
        manager = request.app[SESSIONS]
        _, record = find_record(manager)
        body = {"count": record["count"], "owner": record["owner"], "epoch": record["epoch"],
                "node": manager.route}  # fmt: skip
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app.router.add_get("/counter", show)
    return app
