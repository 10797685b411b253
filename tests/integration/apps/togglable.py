"""The demo app plus /app/-/unready and /app/-/ready, to flip the worker's readiness."""

from __future__ import annotations

from aiohttp import web

from worker.demo import create_app
from worker.readiness import READINESS


async def unready(request: web.Request) -> web.Response:
    request.app[READINESS].hold("test")
    return web.Response(text="held")


async def ready(request: web.Request) -> web.Response:
    request.app[READINESS].release("test")
    return web.Response(text="released")


def make_app() -> web.Application:
    app = create_app()
    app.router.add_get("/app/-/unready", unready)
    app.router.add_get("/app/-/ready", ready)
    return app
