"""The Immutant demo: a cluster singleton counts every second; kill its node and another
continues the count — no reset, no double step.

    pyjk-worker --route node1 --listen 127.0.0.1:8101 --cluster conf/cluster.toml \\
        --app worker.examples.singleton_counter:make_app       (and node2, node3 likewise)
    curl -s 127.0.0.1:8102/counter   →  {"count": 17, "owner": "node1", "epoch": 1, "node": "node2"}

Where the count lives: a distributed cluster cache (worker/caches.py, Immutant's
`:distributed` mode) holds one record `{"count", "epoch", "owner"}` on two nodes (owners = 2).
Each tick is an atomic `update` of that record (compare-and-set at the key's primary, copied
to its backup before it returns): a tick that finished is on two live nodes, so the next owner
continues from it even after kill -9 of the node that wrote last (and of the key's primary).
The record carries the epoch of the owner that wrote it; an owner whose epoch is older than
the record's stops (a fenced write), so even a node that missed its handover cannot step the
count back.

`SINGLETON_COUNTER_TICKS=FILE` appends one JSON line per finished tick (node, epoch, count,
time): the integration test reads it to check that no two nodes ever tick at once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aiohttp import web

from worker.caches import ClusterCache, cluster_cache
from worker.middleware import SESSIONS
from worker.singletons import SingletonContext, singleton

NAME = "counter"
CACHE = "counters"  # the distributed cache that holds the record, under the key NAME
PERIOD = 1.0  # s between ticks
EMPTY = {"count": 0, "epoch": 0, "owner": None}


class Fenced(Exception):
    """A newer owner wrote the record: this one must stop."""


async def tick(cache: ClusterCache, ctx: SingletonContext) -> int:
    """One step of the count; the count written. Fenced when a newer owner's record is there."""

    def step(record: dict[str, Any]) -> dict[str, Any]:
        if record["epoch"] > ctx.epoch:
            raise Fenced(record["epoch"])
        return {"count": record["count"] + 1, "epoch": ctx.epoch, "owner": ctx.route}

    record = await cache.update(NAME, step, default=EMPTY)
    return int(record["count"])


def _log_tick(path: str, ctx: SingletonContext, count: int) -> None:
    line = json.dumps({"node": ctx.route, "epoch": ctx.epoch, "count": count, "t": time.time()})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def make_app() -> web.Application:
    app = web.Application()
    cache = cluster_cache(app, CACHE, mode="distributed", owners=2)
    ticks_file = os.environ.get("SINGLETON_COUNTER_TICKS")

    async def count(ctx: SingletonContext) -> None:
        while ctx.active:
            began = time.monotonic()
            try:
                written = await tick(cache, ctx)
            except Fenced:
                return  # a newer owner wrote the record
            if ticks_file and ctx.active:
                _log_tick(ticks_file, ctx, written)
            await ctx.sleep(max(0.0, PERIOD - (time.monotonic() - began)))

    singleton(app, NAME, count)

    async def show(request: web.Request) -> web.Response:
        record = await cache.get(NAME, EMPTY)
        body = {"count": record["count"], "owner": record["owner"], "epoch": record["epoch"],
                "node": request.app[SESSIONS].route}  # fmt: skip
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app.router.add_get("/counter", show)
    return app
