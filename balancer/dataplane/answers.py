"""The router's answers remembered by raw path: the exchange's first look, at C level.

Most requests repeat a few paths, and what a path is routed to (a ``ProxyTo`` or a local
answer) depends on the path and the configuration alone. ``RouteAnswers`` keeps those answers
and calls its ``router`` only on a miss; the router decides what may be kept (``remember``:
not an answer that depends on more than the path, such as a status page) and empties the table
whenever the configuration changes (``clear``: a reloaded configuration must never be served
from an old table; server.py clears it where it swaps the runtime).

``ProxyServer`` takes a ``RouteAnswers`` as its router like any callable. Compiled
(answers.pxd), the exchange calls ``answer`` at C level and a hit costs one dict lookup, where
the balancer's router was a Python function run for every request (~2k instructions;
docs/benchmarks.md, issue 12, session 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from balancer.dataplane.request import Request
    from balancer.dataplane.routes import RouteDecision, Router


class RouteAnswers:
    """A router with a table of its answers by raw path in front of it."""

    __slots__ = ("answers", "hits", "limit", "path_limit", "plain_to_router", "router")

    def __init__(self, router: Router, *, limit: int = 4096, path_limit: int = 256) -> None:
        self.router = router
        self.answers: dict[bytes, RouteDecision] = {}
        self.hits = 0  # requests answered from the table: the router did not see them
        self.limit = limit  # answers kept at most (the table is emptied when full)
        self.path_limit = path_limit  # longer paths are not kept
        # Plain (not TLS) requests always go to the router: --https-redirect answers them all
        # with a redirect, whatever their path.
        self.plain_to_router = False

    def __call__(self, req: Request) -> RouteDecision:
        return self.answer(req)

    def answer(self, req: Request) -> RouteDecision:
        if req.secure or not self.plain_to_router:
            hit = self.answers.get(req.path)
            if hit is not None:
                self.hits += 1
                return hit
        return self.router(req)

    def remember(self, path: bytes, answer: RouteDecision) -> None:
        """Keep ``answer`` for every later request of ``path`` (until ``clear``)."""
        if len(path) <= self.path_limit:
            answers = self.answers
            if len(answers) >= self.limit:
                answers.clear()
            answers[path] = answer

    def clear(self) -> None:
        self.answers = {}
