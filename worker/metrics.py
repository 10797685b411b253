"""A worker's ``GET /metrics``: its sessions, plus whatever the cluster adds, for Prometheus.

Families here: sessions live by kind (``own``: routed to this node; ``replica``: held for
another node), the session limit, sessions created and expired, takeovers (failovers that
renamed a session to this node) and requests the session middleware refused (503) by reason.
A clustered worker adds replication's families (``replication/metrics.py``) through
``extra``; both add prometheus-client's ``process_*``/``python_*``. Read access as for
``/cluster-manager``: loopback without proxy headers, or the bearer token (worker/admin.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pyjk.metrics import CONTENT_TYPE, render, standard_collectors

from .admin import allowed
from .middleware import SessionManager

__all__ = ["METRICS_PATH", "SessionCollector", "install_metrics"]

log = logging.getLogger("pyjk.worker")

METRICS_PATH = "/metrics"


class SessionCollector(Collector):
    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        manager = self.manager
        store = manager.store
        now = manager.clock()
        own = replica = 0
        for state in store.states():
            if state.idle_too_long(now):
                continue
            if state.route == store.route:
                own += 1
            else:
                replica += 1
        live = GaugeMetricFamily(
            "pyjk_worker_sessions",
            "live sessions held here: own (routed to this node) or replica (another node's)",
            labels=["kind"],
        )
        live.add_metric(["own"], own)
        live.add_metric(["replica"], replica)
        yield live
        yield GaugeMetricFamily(
            "pyjk_worker_sessions_max",
            "max_active_sessions: sessions this node may hold before it answers 503",
            store.max_active_sessions,
        )
        yield CounterMetricFamily(
            "pyjk_worker_sessions_created", "sessions created here", store.created_total
        )
        yield CounterMetricFamily(
            "pyjk_worker_sessions_expired",
            "sessions removed here after idling past their limit",
            store.expired_total,
        )
        yield CounterMetricFamily(
            "pyjk_worker_session_takeovers",
            "sessions of another route renamed to this node (a failover reached it)",
            manager.takeovers,
        )
        refused = CounterMetricFamily(
            "pyjk_worker_requests_refused",
            "requests the session middleware answered 503 (state transfer, resync, lookup)",
            labels=["reason"],
        )
        for reason, n in sorted(manager.refused.items()):
            refused.add_metric([reason], n)
        yield refused


def install_metrics(
    app: web.Application,
    manager: SessionManager,
    extra: Sequence[Collector] = (),
    token: str = "",
) -> None:
    """``GET /metrics`` on ``app`` (before it starts); outside sessions, like /-/ready.

    An app that serves ``/metrics`` itself keeps it (and its sessions): pyjk's is left out,
    with a warning, rather than failing the start."""
    if any(r.canonical == METRICS_PATH for r in app.router.resources()):
        log.warning("the app serves %s itself: pyjk's worker metrics are not installed",
                    METRICS_PATH)  # fmt: skip
        return
    collectors = (SessionCollector(manager), *extra, *standard_collectors())
    manager.internal_paths.add(METRICS_PATH)

    async def metrics(request: web.Request) -> web.Response:
        if not allowed(request, token):
            raise web.HTTPForbidden(text="metrics: loopback or token only\n")
        return web.Response(
            body=render(collectors),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    app.router.add_get(METRICS_PATH, metrics)
