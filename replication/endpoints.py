"""HTTP endpoints of the cluster: `GET /cluster-manager`, and a test-only fault switch.

`/cluster-manager` lists the cluster as this node sees it, itself included:
`{"cluster", "self", "members": [{"id", "route", "host", "port", "state", "age_s",
"live_sessions"}, ...], "sessions", "sessions_limit", "counters": {...}, ...}`; `live_sessions`
counts the live sessions whose route names that member; `sessions` is every session this node
holds (replicas included) and `sessions_limit` its max_active_sessions, where it starts to refuse
new ones (503 `X-Pyjk-Refusal: sessions-full`). It answers only a loopback client that did not
come through a proxy (no Forwarded / X-Forwarded-For), or any client with
`Authorization: Bearer <manager_token>` when a token is configured; everyone else gets 403
(front-door-security.md: admin pages stay on loopback by default).

`POST /-/cluster/faults {"cut": true|false}` exists only when the worker was started with
PYJK_CLUSTER_FAULTS=1, and only for loopback clients: it cuts this node off (every frame and
heartbeat in or out is dropped) so tests can partition a node and heal it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web

from worker.admin import allowed as _allowed
from worker.admin import loopback as _loopback

from .session_entry import SESSIONS_CACHE

if TYPE_CHECKING:
    from .node import ClusterNode

MANAGER_PATH = "/cluster-manager"
FAULTS_PATH = "/-/cluster/faults"


def listing(node: ClusterNode) -> dict[str, Any]:
    now = node.clock()
    if node.dist is not None:  # distributed: the sessions are the entries held here
        per_route = node.dist.per_route()
    else:
        per_route = Counter(s.route for s in node.store.states() if not s.idle_too_long(now))
    me = node.me
    members = [
        {"id": me.id, "route": me.route, "host": me.host, "port": me.port, "state": "self",
         "age_s": round(now - me.start, 3), "live_sessions": per_route[me.route]},
    ]  # fmt: skip
    for m in node.membership.members():
        i = m.info
        # distributed: this node holds every session of its own route (their primary) but
        # only those of another route it backs up, so it cannot count theirs: null
        live = per_route[i.route] if node.dist is None else None
        members.append(
            {"id": i.id, "route": i.route, "host": i.host, "port": i.port, "state": m.state,
             "age_s": round(now - i.start, 3), "live_sessions": live}
        )  # fmt: skip
    return {
        "cluster": node.config.name,
        "self": me.id,
        "members": members,
        "ready": node.readiness.ready,
        "waiting_for": list(node.readiness.waiting_for),
        "send_mode": node.config.send_mode,
        "sealed": node.key is not None,
        "seq": node.replicator.seq,
        "digest": node.replicator.digest_hash(),  # fresh, not the heartbeat's (<= 1 s old)
        "sessions": len(node.store) if node.dist is None else sum(per_route.values()),
        # replicated: every session here; distributed: the sessions this node owns and backs
        "session_store": {"mode": "replicated"} if node.dist is None else node.dist.describe(),
        # every node holds every session: at the limit the whole cluster refuses new visitors
        "sessions_limit": node.store.max_active_sessions,
        "counters": dict(sorted((node.counters + refused(node)).items())),
        "singletons": [] if node.singletons is None else node.singletons.listing(),
        # each cache: mode, entries, owned (primary here) vs backup, rebalance state
        "caches": []
        if node.caches is None
        else [
            c
            for c in node.caches.describe()
            if c["name"] != SESSIONS_CACHE  # session_store
        ],
    }


def refused(node: ClusterNode) -> Counter[str]:
    """The session middleware's 503s by reason, as `requests_refused_<reason>` counters."""
    return Counter(
        {f"requests_refused_{k.replace('-', '_')}": v for k, v in node.manager.refused.items()}
    )


def install_endpoints(app: web.Application, node: ClusterNode) -> None:
    node.manager.internal_paths.add(MANAGER_PATH)

    async def manager(request: web.Request) -> web.Response:
        if not _allowed(request, node.config.manager_token):
            raise web.HTTPForbidden(text="cluster-manager: loopback or token only\n")
        return web.json_response(listing(node), headers={"Cache-Control": "no-store"})

    app.router.add_get(MANAGER_PATH, manager)
    if not node.faults_enabled:
        return

    async def faults(request: web.Request) -> web.Response:
        if not _loopback(request):
            raise web.HTTPForbidden(text="faults: loopback only\n")
        body = await request.json()
        if type(body) is not dict or type(body.get("cut")) is not bool:
            raise web.HTTPBadRequest(text='expected {"cut": true|false}\n')
        node.faults.cut = body["cut"]
        return web.json_response({"cut": node.faults.cut})

    app.router.add_post(FAULTS_PATH, faults)
