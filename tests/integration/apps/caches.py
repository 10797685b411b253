"""A test app with one cache per mode and plain HTTP endpoints over them.

GET /c/{cache}/{key} → {"value", "found"}; POST /c/{cache}/{key} (JSON body) puts;
POST /c/{cache}/{key}/incr adds one (update); POST /c/{cache}/{key}/delete deletes;
GET /c/{cache}/-/held → the keys this node's own table holds (live), to count copies;
GET /c/{cache}/-/owners/{key} → the member ids that own the key, the primary first;
POST /s → a 1-attribute session write (bench/cluster_caches.py compares its bytes).
"""

from __future__ import annotations

import json

from aiohttp import web

from worker.caches import ClusterCache, cluster_cache
from worker.middleware import get_session

MODES = {"dist": ("distributed", 2), "repl": ("replicated", 2), "inval": ("invalidated", 2)}


def make_app() -> web.Application:
    app = web.Application()
    caches = {n: cluster_cache(app, n, mode=m, owners=o) for n, (m, o) in MODES.items()}

    def cache_of(request: web.Request) -> ClusterCache:
        name = request.match_info["cache"]
        if name not in caches:
            raise web.HTTPNotFound()
        return caches[name]

    async def get(request: web.Request) -> web.Response:
        marker = object()
        value = await cache_of(request).get(request.match_info["key"], marker)
        found = value is not marker
        return web.json_response({"value": value if found else None, "found": found})

    async def put(request: web.Request) -> web.Response:
        await cache_of(request).put(request.match_info["key"], json.loads(await request.read()))
        return web.json_response({"ok": True})

    async def incr(request: web.Request) -> web.Response:
        n = await cache_of(request).update(request.match_info["key"], lambda n: n + 1, default=0)
        return web.json_response({"value": n})

    async def delete(request: web.Request) -> web.Response:
        return web.json_response(
            {"deleted": await cache_of(request).delete(request.match_info["key"])}
        )

    async def held(request: web.Request) -> web.Response:
        table = cache_of(request).backend.table  # type: ignore[attr-defined]
        return web.json_response(sorted(k for k, e in table.items() if e.text is not None))

    async def session_write(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"n": session["n"]})

    async def session_read(request: web.Request) -> web.Response:
        session = await get_session(request, create=False)  # reads only: no write
        return web.json_response({"n": None if session is None else session.get("n")})

    async def owners(request: web.Request) -> web.Response:
        backend = cache_of(request).backend
        return web.json_response(list(backend.owners_of(request.match_info["key"])))  # type: ignore[attr-defined]

    app.router.add_post("/s", session_write)
    app.router.add_get("/s", session_read)
    app.router.add_get("/c/{cache}/-/owners/{key}", owners)
    app.router.add_get("/c/{cache}/-/held", held)
    app.router.add_get("/c/{cache}/{key}", get)
    app.router.add_post("/c/{cache}/{key}", put)
    app.router.add_post("/c/{cache}/{key}/incr", incr)
    app.router.add_post("/c/{cache}/{key}/delete", delete)
    return app
