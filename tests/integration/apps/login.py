"""The demo app plus ``POST /app/login``: rotates the session id, then records the login.

``logins`` counts how often the login ran for the session: a retry answered from the
exactly-once ledger leaves it at 1.
"""

from __future__ import annotations

from aiohttp import web

from worker import get_session, rotate_session_id
from worker.demo import create_app


async def login(request: web.Request) -> web.Response:
    await get_session(request)
    session = await rotate_session_id(request)
    session["user"] = "alice"
    session["logins"] = session.get("logins", 0) + 1
    return web.json_response(
        {"session": session.id, "count": session.get("count", 0), "logins": session["logins"]}
    )


def make_app() -> web.Application:
    app = create_app()
    app.router.add_post("/app/login", login)
    return app
