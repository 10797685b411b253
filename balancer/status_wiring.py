"""Status workers (jkmanager) as the data plane sees them: a worker name → a local handler.

One ``StatusWorker`` per ``type=status`` worker, kept across reloads (so the per-process CSRF
token of open pages stays valid) and pointed at each new configuration's engines and URI map.
The client address given to its access rules is the TCP peer, unless the peer is a trusted
proxy (``worker.trusted_proxies``): then the right-most X-Forwarded-For entry that is not
itself a trusted proxy, as nginx's real_ip_recursive does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from balancer.config.model import MemberConfig
from balancer.dataplane import LocalHandler, LocalResponse, Request, RouteDecision
from balancer.lb.shm import ProcessRow
from balancer.pair import PairView
from balancer.status import ServerInfo, StatusWorker
from balancer.status.adapter import local_handler
from balancer.status.model import ClusterLimits, ClusterView
from balancer.status.tls_view import TlsView

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from balancer.runtime import Runtime


class StatusEndpoints:
    def __init__(self, version: str, listen: tuple[str, int]) -> None:
        self.server = ServerInfo(listen[0], listen[1], version)
        self.started = time.time()
        self.pool_stats: Callable[[MemberConfig], tuple[int, int] | None] | None = None
        self.is_trusted: Callable[[str], bool] = lambda ip: False
        self.cluster_view: ClusterView | None = None
        self.tls_view: Callable[[], TlsView | None] | None = None
        self.cluster_limits: ClusterLimits | None = None
        self.collectors: tuple[Collector, ...] = ()  # more families for /metrics
        self.processes: Callable[[], Sequence[ProcessRow]] | None = None  # --processes N
        self.csrf: str | None = None  # one token for N processes (else each worker's own)
        self.consume_result: Callable[[int], bool] | None = None  # with csrf: shown-once ids
        self.pair: Callable[[], PairView | None] | None = None  # --cluster (balancer/standby.py)
        self.workers: dict[str, StatusWorker] = {}
        self.handlers: dict[str, LocalHandler] = {}

    def update(self, runtime: Runtime) -> None:
        kept: dict[str, StatusWorker] = {}
        for name, config in runtime.workers.statuses.items():
            old = self.workers.get(name)
            if old is not None and old.config == config:
                old.update_sources(
                    workers=runtime.workers, engines=runtime.engines, uri_map=runtime.uri_map
                )
                kept[name] = old
            else:
                kept[name] = StatusWorker(
                    config,
                    runtime.workers,
                    runtime.engines,
                    runtime.uri_map,
                    self.server,
                    self.started,
                    cluster_view=self.cluster_view,
                    pool_stats=self._pool_stats,
                    tls_view=self.tls_view,
                    cluster_limits=self.cluster_limits,
                    processes=self.processes,
                    pair=self._pair,
                )
                if self.csrf is not None:
                    kept[name].csrf = self.csrf
                    kept[name].consume_result = self.consume_result
        for worker in kept.values():
            worker.collectors = self.collectors
        self.workers = kept
        self.handlers = {
            name: local_handler(worker, client_ip=self.client_ip) for name, worker in kept.items()
        }

    def _pair(self) -> PairView | None:
        return self.pair() if self.pair is not None else None

    def rebuild(self, runtime: Runtime) -> None:
        """New status workers with the current sources (a kept worker keeps the ones it was
        made with): a data-plane process rewires its cluster view at start."""
        self.workers = {}
        self.update(runtime)

    def _pool_stats(self, member: MemberConfig) -> tuple[int, int] | None:
        return self.pool_stats(member) if self.pool_stats is not None else None

    def client_ip(self, req: Request) -> str:
        peer = req.client_ip
        if not self.is_trusted(peer) or not req.xff:
            return peer
        hops = [h.strip() for h in req.xff.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def route(self, name: str, req: Request) -> RouteDecision:
        handler = self.handlers.get(name)
        if handler is not None:
            return handler
        # the URI map was validated against the workers, so this is a wiring bug
        return LocalResponse(500)
