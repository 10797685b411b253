"""Status workers (jkmanager) as the data plane sees them: a worker name → a local answer.

Placeholder until the status worker lands: mapped status paths answer 503.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from balancer.config.model import MemberConfig
from balancer.dataplane import LocalResponse, Request, RouteDecision

if TYPE_CHECKING:
    from balancer.server import Runtime


class StatusEndpoints:
    def __init__(self, version: str, listen: tuple[str, int]) -> None:
        self.version = version
        self.listen = listen
        self.pool_stats: Callable[[MemberConfig], tuple[int, int] | None] | None = None
        self.names: frozenset[str] = frozenset()

    def update(self, runtime: Runtime) -> None:
        self.names = frozenset(runtime.workers.statuses)

    def route(self, name: str, req: Request) -> RouteDecision:
        if name in self.names:
            return LocalResponse(503, b"status worker not available\n")
        return LocalResponse(500)
