"""Readiness: may the balancer send this worker traffic? And the `/-/ready` endpoint.

Ready unless something holds it. Holds are named, so the answer says what is being waited for:
replication holds "state-transfer" until it has the cluster's sessions (tomcat-cluster.md
§3.4: a joiner serves no request before state transfer ends; the session middleware refuses
application requests meanwhile, see peers.py), and shutdown holds
"shutting-down" so the balancer's health probe sees 503 while in-flight requests finish.
"""

from __future__ import annotations

from aiohttp import web

from .middleware import INTERNAL_PREFIX, SESSIONS

READY_PATH = INTERNAL_PREFIX + "ready"


class Readiness:
    """A set of named holds; ready when it is empty."""

    def __init__(self) -> None:
        self._holds: set[str] = set()

    @property
    def ready(self) -> bool:
        return not self._holds

    @property
    def waiting_for(self) -> tuple[str, ...]:
        return tuple(sorted(self._holds))

    def hold(self, reason: str) -> None:
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        self._holds.discard(reason)


READINESS: web.AppKey[Readiness] = web.AppKey("pyjk.readiness", Readiness)


def install_ready_endpoint(app: web.Application, readiness: Readiness) -> None:
    """Add `GET /-/ready`: 200 when ready, 503 with what it waits for otherwise."""
    app[READINESS] = readiness

    async def ready(request: web.Request) -> web.Response:
        body: dict[str, object] = {"ready": readiness.ready}
        manager = request.app.get(SESSIONS)
        if manager is not None:
            body["route"] = manager.route
            body["sessions"] = len(manager.store)
        if not readiness.ready:
            body["waiting_for"] = list(readiness.waiting_for)
        return web.json_response(
            body, status=200 if readiness.ready else 503, headers={"Cache-Control": "no-store"}
        )

    app.router.add_get(READY_PATH, ready)
